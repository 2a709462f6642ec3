// The only file that includes pybind11: the boundary between the plain C++ core and Python.
#include <pybind11/numpy.h>  // integrate kernels block
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>

#include "fastmeter/clock.h"
#include "fastmeter/integrate.h"
#include "fastmeter/sources/source.h"

namespace py = pybind11;
using namespace fastmeter;

namespace {

py::dict channel_dict(const ChannelInfo& c) {
  py::dict d;
  d["name"] = c.name;
  d["device"] = c.device;
  d["domain"] = c.domain;
  d["has_counter"] = c.has_counter;
  d["counter_unit_j"] = c.counter_unit_j;
  d["counter_range"] = c.counter_range;
  d["has_power"] = c.has_power;
  d["in_total"] = c.in_total;
  return d;
}

// Open a source, read it once, close it: for `available_sources()` and for tests of a single source.
py::dict probe(const std::string& name, const SourceOptions& options) {
  std::unique_ptr<Source> src;
  {
    py::gil_scoped_release nogil;
    src = open_source(name, options);
  }
  std::vector<Reading> r(src->channels().size());
  int64_t t_ns;
  {
    py::gil_scoped_release nogil;
    t_ns = monotonic_ns();
    src->read(r.data());
  }
  py::list chans, reads;
  for (size_t i = 0; i < r.size(); ++i) {
    chans.append(channel_dict(src->channels()[i]));
    py::dict d;
    d["counter_raw"] = (r[i].flags & kReadCounter) ? py::object(py::int_(r[i].counter_raw)) : py::object(py::none());
    d["power_w"] = (r[i].flags & kReadPower) ? py::object(py::float_(r[i].power_w)) : py::object(py::none());
    d["failed"] = (r[i].flags & kReadFailed) != 0;
    d["error"] = (r[i].flags & kReadFailed) ? src->error_text(r[i].error_code) : std::string();
    reads.append(d);
  }
  py::dict out;
  out["t_ns"] = t_ns;
  out["channels"] = chans;
  out["readings"] = reads;
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastmeter native core: sources, sampler thread, ring buffer, energy integration";

  // Raised with args (message, kind); kind is "unavailable", "permission" or "config".
  static py::handle source_error = py::exception<SourceError>(m, "SourceError", PyExc_RuntimeError).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const SourceError& e) {
      py::tuple args = py::make_tuple(e.what(), e.kind());
      PyErr_SetObject(source_error.ptr(), args.ptr());
    }
  });

  m.def("monotonic_ns", &monotonic_ns, "CLOCK_MONOTONIC in ns (same clock as time.monotonic_ns()).");
  m.def("source_names", &source_names);
  m.def("probe", &probe, py::arg("name"), py::arg("options") = SourceOptions{},
        "Open a source, read every channel once, close it. Returns {t_ns, channels, readings}.");
  m.def("counter_delta", &counter_delta, py::arg("prev"), py::arg("cur"), py::arg("range"));

  // ---- integrate kernels on whole arrays, for tests against python/fastmeter/reference (integrate helper) ----
  using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
  using U64 = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
  using U32 = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;
  using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
  using B8 = py::array_t<bool, py::array::c_style | py::array::forcecast>;
  auto same_length = [](py::ssize_t n, std::initializer_list<py::ssize_t> others) {
    for (py::ssize_t o : others)
      if (o != n) throw std::invalid_argument("integrate kernels: all input arrays must have the same length");
  };
  m.def(
      "accumulate",
      [same_length](I64 t_ns, U64 counter_raw, F64 power_w, U32 flags, double unit_j, uint64_t range,
                    bool has_counter) {
        const py::ssize_t n = t_ns.size();
        same_length(n, {counter_raw.size(), power_w.size(), flags.size()});
        ChannelInfo info;
        info.has_counter = has_counter;
        info.counter_unit_j = unit_j;
        info.counter_range = range;
        ChannelAccumulator acc(info);
        F64 energy_j(n);
        B8 counter(n), changed(n);
        for (py::ssize_t i = 0; i < n; ++i) {
          Reading r;
          r.counter_raw = counter_raw.at(i);
          r.power_w = power_w.at(i);
          r.flags = flags.at(i);
          const ChannelAccumulator::Step s = acc.push(t_ns.at(i), r);
          energy_j.mutable_at(i) = s.energy_j;
          counter.mutable_at(i) = s.counter;
          changed.mutable_at(i) = s.changed;
        }
        return py::make_tuple(energy_j, counter, changed);
      },
      py::arg("t_ns"), py::arg("counter_raw"), py::arg("power_w"), py::arg("flags"), py::arg("unit_j"),
      py::arg("range"), py::arg("has_counter"), "ChannelAccumulator over a polled stream: (energy_j, counter, changed).");
  m.def(
      "build_knots",
      [same_length](I64 t_ns, F64 energy_j, F64 power_w, B8 counter, B8 changed, int64_t power_window_ns) {
        const py::ssize_t n = t_ns.size();
        same_length(n, {energy_j.size(), power_w.size(), counter.size(), changed.size()});
        KnotBuilder kb(power_window_ns);
        for (py::ssize_t i = 0; i < n; ++i)
          kb.push(t_ns.at(i), energy_j.at(i), power_w.at(i), counter.at(i), changed.at(i));
        const std::vector<Knot>& k = kb.knots();
        const auto m_k = static_cast<py::ssize_t>(k.size());
        I64 kt(m_k);
        F64 ke(m_k), kp(m_k);
        for (py::ssize_t i = 0; i < m_k; ++i) {
          const Knot& x = k[static_cast<size_t>(i)];
          kt.mutable_at(i) = x.t_ns;
          ke.mutable_at(i) = x.energy_j;
          kp.mutable_at(i) = x.power_w;
        }
        return py::make_tuple(kt, ke, kp, kb.observed_update_period_s());
      },
      py::arg("t_ns"), py::arg("energy_j"), py::arg("power_w"), py::arg("counter"), py::arg("changed"),
      py::arg("power_window_ns") = kNvmlPowerWindowNs,
      "KnotBuilder over a sample stream: (knot_t_ns, knot_energy_j, knot_power_w, observed_update_period_s).");
  m.def(
      "energy_at",
      [same_length](I64 knot_t_ns, F64 knot_energy_j, F64 knot_power_w, I64 t_ns) {
        const py::ssize_t n = knot_t_ns.size();
        same_length(n, {knot_energy_j.size(), knot_power_w.size()});
        std::vector<Knot> k(static_cast<size_t>(n));
        for (py::ssize_t i = 0; i < n; ++i) {
          if (i > 0 && knot_t_ns.at(i) < knot_t_ns.at(i - 1))
            throw std::invalid_argument("energy_at: knot_t_ns must be sorted ascending");
          k[static_cast<size_t>(i)] = {knot_t_ns.at(i), knot_energy_j.at(i), knot_power_w.at(i)};
        }
        F64 out(t_ns.size());
        for (py::ssize_t i = 0; i < t_ns.size(); ++i) out.mutable_at(i) = energy_at(k.data(), k.size(), t_ns.at(i));
        return out;
      },
      py::arg("knot_t_ns"), py::arg("knot_energy_j"), py::arg("knot_power_w"), py::arg("t_ns"),
      "Cumulative energy on the knot curve at each query instant.");
  // ---- end integrate kernels block ----
}
