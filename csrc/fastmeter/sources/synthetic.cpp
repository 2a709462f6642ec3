// The synthetic source: a documented deterministic waveform, for tests, benchmarks and the no-hardware default.
//
// Channel k (k = 0..channels-1) draws power
//   sine:   P_k(t) = (k + 1) * (base_w + amp_w * sin(2*pi*t / period_s))
//   square: P_k(t) = (k + 1) * (base_w + amp_w if frac(t / period_s) < duty else base_w)
// where t is seconds since t0_ns (CLOCK_MONOTONIC; default: when the source opened).
// It exposes an exact energy counter (the analytic integral, in microjoules) and the exact instant power.
#include <cmath>
#include <string>

#include "fastmeter/clock.h"
#include "fastmeter/sources/source.h"

namespace fastmeter {
namespace {

constexpr double kPi = 3.14159265358979323846;

double parse_double(const SourceOptions& o, const std::string& key, double fallback) {
  const std::string v = option_or(o, key, "");
  if (v.empty()) return fallback;
  try {
    size_t used = 0;
    const double d = std::stod(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
    return d;
  } catch (const std::exception&) {
    throw SourceError("config", "synthetic option " + key + "='" + v + "' is not a number");
  }
}

class SyntheticSource final : public Source {
 public:
  explicit SyntheticSource(const SourceOptions& o)
      : base_w_(parse_double(o, "base_w", 100.0)),
        amp_w_(parse_double(o, "amp_w", 50.0)),
        period_s_(parse_double(o, "period_s", 1.0)),
        duty_(parse_double(o, "duty", 0.3)),
        square_(option_or(o, "waveform", "sine") == "square"),
        t0_ns_(static_cast<int64_t>(parse_double(o, "t0_ns", static_cast<double>(monotonic_ns())))) {
    const std::string wf = option_or(o, "waveform", "sine");
    if (wf != "sine" && wf != "square")
      throw SourceError("config", "synthetic waveform '" + wf + "' is not one of: sine, square");
    if (!(period_s_ > 0)) throw SourceError("config", "synthetic period_s must be > 0");
    if (!(duty_ >= 0 && duty_ <= 1)) throw SourceError("config", "synthetic duty must be within [0, 1]");
    if (base_w_ < 0 || base_w_ - std::fabs(amp_w_) < 0)
      throw SourceError("config", "synthetic base_w - |amp_w| must be >= 0 (power cannot be negative)");
    const int n = static_cast<int>(parse_double(o, "channels", 1));
    if (n < 1 || n > 64) throw SourceError("config", "synthetic channels must be within 1..64");
    for (int k = 0; k < n; ++k) {
      ChannelInfo c;
      c.name = "synthetic" + std::to_string(k);
      c.device = "synthetic";
      c.domain = "synthetic";
      c.has_counter = true;
      c.counter_unit_j = 1e-6;
      c.has_power = true;
      channels_.push_back(c);
    }
  }

  const char* name() const noexcept override { return "synthetic"; }
  const std::vector<ChannelInfo>& channels() const noexcept override { return channels_; }

  void read(Reading* out) noexcept override {
    const double t = static_cast<double>(monotonic_ns() - t0_ns_) * 1e-9;
    const double p = power_w(t), e = energy_j(t);
    for (size_t k = 0; k < channels_.size(); ++k) {
      const double scale = static_cast<double>(k + 1);
      out[k].counter_raw = static_cast<uint64_t>(std::llround(std::max(0.0, e * scale) * 1e6));
      out[k].power_w = p * scale;
      out[k].flags = kReadCounter | kReadPower;
      out[k].error_code = 0;
    }
  }

  std::string error_text(int) const override { return "synthetic source does not fail"; }

 private:
  double power_w(double t) const {
    if (square_) return base_w_ + (frac(t / period_s_) < duty_ ? amp_w_ : 0.0);
    return base_w_ + amp_w_ * std::sin(2 * kPi * t / period_s_);
  }
  // Exact integral of power_w from 0 to t (t may be negative before t0: energy then counts from t0 backwards).
  double energy_j(double t) const {
    if (square_) {
      const double cycles = std::floor(t / period_s_);
      const double rem = t - cycles * period_s_;
      return base_w_ * t + amp_w_ * (cycles * duty_ * period_s_ + std::min(rem, duty_ * period_s_));
    }
    return base_w_ * t + amp_w_ * period_s_ / (2 * kPi) * (1 - std::cos(2 * kPi * t / period_s_));
  }
  static double frac(double x) { return x - std::floor(x); }

  double base_w_, amp_w_, period_s_, duty_;
  bool square_;
  int64_t t0_ns_;
  std::vector<ChannelInfo> channels_;
};

}  // namespace

std::unique_ptr<Source> make_synthetic_source(const SourceOptions& options) {
  return std::make_unique<SyntheticSource>(options);
}

}  // namespace fastmeter
