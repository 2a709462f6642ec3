#include "fastmeter/sources/source.h"

namespace fastmeter {

std::unique_ptr<Source> make_rapl_source(const SourceOptions&) {
  throw SourceError("unavailable", "the rapl source is not implemented yet");
}

}  // namespace fastmeter
