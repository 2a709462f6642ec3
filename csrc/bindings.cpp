// The only file that includes pybind11: the boundary between the plain C++ core and Python.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cmath>

#include "fastmeter/clock.h"
#include "fastmeter/integrate.h"
#include "fastmeter/meter.h"
#include "fastmeter/sources/source.h"
// --- calibrate: optional CUDA load (owner: calibrate) ---
#ifdef FASTMETER_HAVE_CUDA
#include <stdexcept>

#include "fastmeter/calibrate/spin.h"
#endif
// --- end calibrate ---

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

using SourceSpecs = std::vector<std::pair<std::string, SourceOptions>>;

std::unique_ptr<Meter> make_meter(const SourceSpecs& sources, int64_t period_ns, int64_t spin_ns,
                                  size_t ring_capacity) {
  SamplerConfig cfg;
  cfg.period_ns = period_ns;
  cfg.spin_ns = spin_ns < 0 ? Sampler::default_spin_ns(period_ns) : spin_ns;
  cfg.ring_capacity = ring_capacity;
  py::gil_scoped_release nogil;
  return std::make_unique<Meter>(sources, cfg);
}

// Samples [from, to) as numpy columns: one copy from the native record straight into numpy's buffers, GIL released.
py::tuple meter_samples(Meter& m, size_t from, size_t to) {
  size_t count;
  {
    py::gil_scoped_release nogil;
    count = m.sample_count();
  }
  if (to > count) to = count;
  if (from > to) from = to;
  const auto n = static_cast<py::ssize_t>(to - from);
  py::array_t<int64_t> t(n);
  py::array_t<uint32_t> ch(n);
  py::array_t<double> e(n), p(n);
  int64_t* tp = t.mutable_data();
  uint32_t* cp = ch.mutable_data();
  double* ep = e.mutable_data();
  double* pp = p.mutable_data();
  {
    py::gil_scoped_release nogil;
    m.copy_samples(from, to, tp, cp, ep, pp);
  }
  return py::make_tuple(t, ch, e, p);
}

py::dict stats_dict(const SamplerStats& s) {
  py::dict d;
  d["polls"] = s.polls;
  d["elapsed_s"] = s.elapsed_s;
  d["rate_hz"] = s.rate_hz;
  d["jitter_p50_us"] = s.jitter_p50_us;
  d["jitter_p99_us"] = s.jitter_p99_us;
  d["jitter_max_us"] = s.jitter_max_us;
  d["missed"] = s.missed;
  d["dropped"] = s.dropped;
  return d;
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

  static py::handle meter_error = py::exception<MeterError>(m, "MeterError", PyExc_RuntimeError).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const MeterError& e) {
      PyErr_SetString(meter_error.ptr(), e.what());
    }
  });

  using nogil = py::call_guard<py::gil_scoped_release>;
  py::class_<Meter>(m, "Meter")
      .def(py::init(&make_meter), py::arg("sources"), py::arg("period_ns"), py::arg("spin_ns") = -1,
           py::arg("ring_capacity") = size_t{1} << 20)
      .def("start", &Meter::start, nogil())
      .def("stop", &Meter::stop, nogil())
      .def_property_readonly("running", &Meter::running)
      .def_property_readonly("stopped", &Meter::stopped)
      .def_property_readonly("channels",
                             [](const Meter& self) {
                               py::list out;
                               for (const auto& c : self.channels()) out.append(channel_dict(c));
                               return out;
                             })
      .def("totals", &Meter::totals, nogil())
      .def(
          "energy_between",
          [](Meter& self, int64_t t0, int64_t t1, int64_t wait_final_ns) {
            SpanEnergy s;
            {
              py::gil_scoped_release nogil;
              s = self.energy_between(t0, t1, wait_final_ns);
            }
            return py::make_tuple(s.energy_j, s.final);
          },
          py::arg("t0_ns"), py::arg("t1_ns"), py::arg("wait_final_ns") = 0,
          "Per-channel (energy_j, final) between two CLOCK_MONOTONIC instants.")
      .def("sample_count", &Meter::sample_count, nogil())
      .def("samples", &meter_samples, py::arg("start") = 0, py::arg("stop") = SIZE_MAX,
           "Columns (t_ns, channel, energy_j, power_w) of samples [start, stop) as numpy arrays.")
      .def("stats", [](const Meter& self) { return stats_dict(self.stats()); })
      .def("channel_error", &Meter::channel_error)
      .def("update_periods_s", &Meter::update_periods_s, nogil())
      .def_property_readonly("start_ns", &Meter::start_ns)
      .def_property_readonly("stop_ns", &Meter::stop_ns)
      .def_property_readonly("period_ns", &Meter::period_ns)
      .def_property_readonly("anchor", [](const Meter& self) {
        const ClockAnchor a = self.anchor();
        return py::make_tuple(a.monotonic_ns, a.realtime_ns);
      });

  m.def("monotonic_ns", &monotonic_ns, "CLOCK_MONOTONIC in ns (same clock as time.monotonic_ns()).");
  m.def("source_names", &source_names);
  m.def("probe", &probe, py::arg("name"), py::arg("options") = SourceOptions{},
        "Open a source, read every channel once, close it. Returns {t_ns, channels, readings}.");
  m.def("counter_delta", &counter_delta, py::arg("prev"), py::arg("cur"), py::arg("range"));
  // --- calibrate: optional CUDA load (owner: calibrate) ---
#ifdef FASTMETER_HAVE_CUDA
  m.def(
      "calibrate_spin_ns",
      [](int device, std::int64_t duration_ns) {
        std::string err;
        {
          py::gil_scoped_release release;
          err = calibrate::spin_ns(device, duration_ns);
        }
        if (!err.empty()) throw std::runtime_error("CUDA calibration load: " + err);
      },
      py::arg("device"), py::arg("duration_ns"), "Busy every SM of one GPU for duration_ns (calibration load).");
#endif
  // --- end calibrate ---
}
