#include "fastmeter/sources/source.h"

namespace fastmeter {

std::unique_ptr<Source> make_msr_source(const SourceOptions&) {
  throw SourceError("unavailable", "the msr source is not implemented yet");
}

}  // namespace fastmeter
