// The only file that includes pybind11: the boundary between the plain C++ core and Python.
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
}
