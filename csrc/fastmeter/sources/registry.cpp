#include <cstdlib>

#include "fastmeter/sources/source.h"
#include "fastmeter/telemetry.h"

namespace fastmeter {

const std::vector<std::string>& source_names() {
  static const std::vector<std::string> names = {"nvml", "rapl", "rapl-msr", "synthetic"};
  return names;
}

std::unique_ptr<Source> open_source(const std::string& name, const SourceOptions& options) {
  if (name == "nvml") return make_nvml_source(options);
  if (name == "rapl") return make_rapl_source(options);
  if (name == "rapl-msr") return make_msr_source(options);
  if (name == "synthetic") return make_synthetic_source(options);
  std::string valid;
  for (const auto& n : source_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw SourceError("config", "unknown source '" + name + "'; valid sources: " + valid);
}

std::unique_ptr<TelemetryProbe> Source::open_telemetry() { return nullptr; }

std::string option_or(const SourceOptions& options, const std::string& key, const std::string& fallback) {
  const auto it = options.find(key);
  return it == options.end() ? fallback : it->second;
}

std::string env_or(const char* var, const std::string& fallback) {
  const char* v = std::getenv(var);
  return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}

}  // namespace fastmeter
