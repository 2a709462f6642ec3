// Activity shaping kernel (shape.h). Each query needs the predicted power's integral from its knot interval's
// left end: both ends are located by binary search, so queries come in any order and cost O(log) each.
#include "fastmeter/shape.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace fastmeter {
namespace {

class PowerIntegral {
 public:
  PowerIntegral(const int64_t* t_ns, const double* w, size_t n) : t_(t_ns), w_(w), n_(n), cum_(n, 0.0) {
    // cum_[j] = integral of the predicted power from t_[0] to t_[j], in W*s.
    for (size_t j = 1; j < n; ++j) cum_[j] = cum_[j - 1] + w_[j - 1] * static_cast<double>(t_[j] - t_[j - 1]) * 1e-9;
  }

  // Integral from t_[0] to t (0 before t_[0]).
  double at(int64_t t) const {
    if (n_ == 0 || t <= t_[0]) return 0.0;
    const size_t j = static_cast<size_t>(std::upper_bound(t_, t_ + n_, t) - t_) - 1;  // t_[j] <= t
    return cum_[j] + w_[j] * static_cast<double>(t - t_[j]) * 1e-9;
  }

 private:
  const int64_t* t_;
  const double* w_;
  size_t n_;
  std::vector<double> cum_;
};

}  // namespace

void shape_curve(const ShapeInput& in, double* out_energy_j) {
  if (in.n_knots == 0) throw std::invalid_argument("shape_curve: needs at least one knot");
  const PowerIntegral integral(in.power_t_ns, in.power_w, in.n_power);
  const int64_t* k = in.knot_t_ns;
  const double* e = in.knot_energy_j;
  const size_t last = in.n_knots - 1;
  for (size_t q = 0; q < in.n_query; ++q) {
    const int64_t t = in.query_t_ns[q];
    if (t <= k[0]) {
      out_energy_j[q] = e[0];
      continue;
    }
    if (t >= k[last]) {
      out_energy_j[q] = e[last];
      continue;
    }
    const size_t i = static_cast<size_t>(std::upper_bound(k, k + in.n_knots, t) - k) - 1;  // k[i] <= t < k[i+1]
    if (t == k[i]) {  // a knot is the measurement itself, untouched by any model
      out_energy_j[q] = e[i];
      continue;
    }
    const double base = integral.at(k[i]);
    const double whole = integral.at(k[i + 1]) - base;
    const double delta = e[i + 1] - e[i];
    const double frac = whole > 0 ? (integral.at(t) - base) / whole
                                  : static_cast<double>(t - k[i]) / static_cast<double>(k[i + 1] - k[i]);
    // Rounding in the integrals must not step outside the interval's two measured values.
    out_energy_j[q] = std::min(e[i + 1], std::max(e[i], e[i] + delta * frac));
  }
}

}  // namespace fastmeter
