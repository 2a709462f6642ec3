#include "fastmeter/sources/source.h"

namespace fastmeter {

std::unique_ptr<Source> make_nvml_source(const SourceOptions&) {
  throw SourceError("unavailable", "the nvml source is not implemented yet");
}

}  // namespace fastmeter
