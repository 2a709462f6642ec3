#include "fastmeter/telemetry_parse.h"

#include <limits>

namespace fastmeter {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// One unsigned decimal after optional blanks; false at the end of the line or on overflow.
bool next_u64(std::string_view s, size_t* pos, uint64_t* out) {
  size_t i = *pos;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
  uint64_t v = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    const auto d = static_cast<uint64_t>(s[i] - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *pos = i;
  *out = v;
  return true;
}

}  // namespace

bool parse_proc_stat_cpu(std::string_view text, CpuTicks* out) noexcept {
  if (text.substr(0, 4) != "cpu ") return false;
  const std::string_view line = text.substr(0, text.find('\n'));
  size_t pos = 4;
  uint64_t v[8] = {};
  int n = 0;
  while (n < 8 && next_u64(line, &pos, &v[n])) ++n;
  if (n < 4) return false;
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) {
    if (total > std::numeric_limits<uint64_t>::max() - v[i]) return false;
    total += v[i];
  }
  const uint64_t idle = v[3] + (n > 4 ? v[4] : 0);
  out->total = total;
  out->busy = total - idle;
  return true;
}

double cpu_busy_pct(const CpuTicks& prev, const CpuTicks& cur) noexcept {
  if (cur.total <= prev.total || cur.busy < prev.busy) return kNaN;
  const uint64_t dt = cur.total - prev.total, db = cur.busy - prev.busy;
  if (db > dt) return kNaN;  // idle went backwards while total grew: a reset, not a measurement
  return 100.0 * static_cast<double>(db) / static_cast<double>(dt);
}

double parse_cpufreq_mhz(std::string_view text) noexcept {
  size_t pos = 0;
  uint64_t khz = 0;
  if (!next_u64(text, &pos, &khz)) return kNaN;
  for (; pos < text.size(); ++pos)
    if (!is_space(text[pos])) return kNaN;
  return static_cast<double>(khz) * 1e-3;
}

}  // namespace fastmeter
