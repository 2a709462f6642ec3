// shape_curve on hand-worked cases (also run under sanitizers): knots keep the measurement, energy inside an
// interval follows the predicted power's integral, a zero prediction shapes linearly, and outside the knots the
// curve is flat.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "check.h"
#include "fastmeter/shape.h"

using namespace fastmeter;

static bool near(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::fmax(1.0, std::fabs(b)); }

int main() {
  const std::vector<int64_t> knots = {0, 100000000, 200000000};
  const std::vector<double> energy = {5.0, 15.0, 15.0 + 8.0};
  // 300 W for the first 20 ms, 50 W to 100 ms, then nothing predicted (the second interval is shaped linearly).
  const std::vector<int64_t> pt = {0, 20000000, 100000000};
  const std::vector<double> pw = {300.0, 50.0, 0.0};
  const std::vector<int64_t> q = {-5, 0, 20000000, 60000000, 100000000, 150000000, 250000000};
  std::vector<double> out(q.size(), -1.0);
  ShapeInput in;
  in.knot_t_ns = knots.data();
  in.knot_energy_j = energy.data();
  in.n_knots = knots.size();
  in.power_t_ns = pt.data();
  in.power_w = pw.data();
  in.n_power = pt.size();
  in.query_t_ns = q.data();
  in.n_query = q.size();
  shape_curve(in, out.data());
  CHECK(out[0] == 5.0 && out[1] == 5.0);        // flat before, exact at the first knot
  CHECK(near(out[2], 5.0 + 10.0 * 0.6));        // 300*0.02 of 300*0.02 + 50*0.08 = 60 %
  CHECK(near(out[3], 5.0 + 6.0 + 4.0 * 0.5));  // half of the 50 W part
  CHECK(out[4] == 15.0);                        // the knot itself, untouched
  CHECK(near(out[5], 15.0 + 4.0));              // no prediction: linear in time
  CHECK(out[6] == 23.0);                        // flat after the last knot

  ShapeInput empty = in;
  empty.n_knots = 0;
  CHECK_THROWS(shape_curve(empty, out.data()), std::invalid_argument);
  return 0;
}
