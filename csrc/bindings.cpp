// The only file that includes pybind11: the boundary between the plain C++ core and Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>

#include "fastmeter/attribute.h"
#include "fastmeter/attribute_stream.h"
#include "fastmeter/bound.h"
#include "fastmeter/clock.h"
#include "fastmeter/heap.h"
#include "fastmeter/http/response_parser.h"
#include "fastmeter/http/stream_client.h"
#include "fastmeter/integrate.h"
#include "fastmeter/meter.h"
#include "fastmeter/schedule.h"
#include "fastmeter/shape.h"
#include "fastmeter/sources/source.h"
#include "fastmeter/telemetry_parse.h"
// --- calibrate: optional CUDA load ---
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
  out["left_out"] = src->left_out();
  return out;
}

using SourceSpecs = std::vector<std::pair<std::string, SourceOptions>>;

std::unique_ptr<Meter> make_meter(const SourceSpecs& sources, int64_t period_ns, int64_t spin_ns,
                                  size_t ring_capacity, const std::string& schedule, bool realtime,
                                  int64_t guard_ns, int64_t keep_samples_ns, int64_t knot_resolution_ns,
                                  int64_t telemetry_period_ns, const std::string& history_dir) {
  SamplerConfig cfg;
  cfg.period_ns = period_ns;
  cfg.spin_ns = spin_ns < 0 ? Sampler::default_spin_ns(period_ns) : spin_ns;
  cfg.ring_capacity = ring_capacity;
  if (schedule != "fixed" && schedule != "adaptive")
    throw std::invalid_argument("schedule must be 'fixed' or 'adaptive', not '" + schedule + "'");
  cfg.schedule = schedule == "adaptive" ? SamplerConfig::Schedule::kAdaptive : SamplerConfig::Schedule::kFixed;
  cfg.realtime = realtime;
  cfg.guard_ns = guard_ns;
  cfg.telemetry_period_ns = telemetry_period_ns;
  RecordConfig rec;
  rec.keep_samples_ns = keep_samples_ns;
  rec.knot_resolution_ns = knot_resolution_ns;
  rec.history_dir = history_dir;
  py::gil_scoped_release nogil;
  return std::make_unique<Meter>(sources, cfg, rec);
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

py::dict record_stats_dict(const RecordStats& s) {
  py::dict d;
  d["samples_kept"] = s.samples_kept;
  d["samples_dropped_from_ram"] = s.samples_dropped_from_ram;
  d["knots"] = s.knots;
  d["change_points"] = s.change_points;
  d["queries"] = s.queries;
  d["query_p50_us"] = s.query_p50_us;
  d["query_p99_us"] = s.query_p99_us;
  d["telemetry_kept"] = s.telemetry_kept;
  d["telemetry_dropped_from_ram"] = s.telemetry_dropped_from_ram;
  d["samples_bytes"] = s.samples_bytes;
  d["knots_bytes"] = s.knots_bytes;
  d["change_points_bytes"] = s.change_points_bytes;
  d["history_disk_bytes"] = s.history_disk_bytes;
  d["history_ram_bytes"] = s.history_ram_bytes;
  d["history_error"] = s.history_error;
  return d;
}

const char* state_name(MeterState s) {
  switch (s) {
    case MeterState::kNew:
      return "new";
    case MeterState::kRunning:
      return "running";
    case MeterState::kStopping:
      return "stopping";
    case MeterState::kStopped:
      return "stopped";
    case MeterState::kClosed:
      break;
  }
  return "closed";
}

const char* status_name(SpanStatus s) {
  switch (s) {
    case SpanStatus::kFinal:
      return "final";
    case SpanStatus::kProvisional:
      return "provisional";
    case SpanStatus::kUnknown:
      return "unknown";
    case SpanStatus::kFailed:
      break;
  }
  return "failed";
}

py::dict stats_dict(const SamplerStats& s, const std::vector<ChannelInfo>& channels) {
  std::vector<std::string> names;
  for (const auto& c : channels) names.push_back(c.name);
  py::dict d;
  d["polls"] = s.polls;
  d["elapsed_s"] = s.elapsed_s;
  d["rate_hz"] = s.rate_hz;
  d["jitter_p50_us"] = s.jitter_p50_us;
  d["jitter_p99_us"] = s.jitter_p99_us;
  d["jitter_max_us"] = s.jitter_max_us;
  d["missed"] = s.missed;
  d["missed_share"] = s.missed_share;
  d["poll_gap_max_ns"] = s.poll_gap_max_ns;
  d["dropped"] = s.dropped;
  d["sched_policy"] = s.sched_policy;
  py::dict chans;
  for (size_t i = 0; i < s.channels.size(); ++i) {
    py::dict c;
    c["polls"] = s.channels[i].polls;
    c["read_errors"] = s.channels[i].read_errors;
    c["poll_gap_max_ns"] = s.channels[i].poll_gap_max_ns;
    chans[py::str(names[i])] = c;
  }
  d["channels"] = chans;
  py::dict sched;
  for (size_t i = 0; i < s.schedule.size(); ++i) {
    py::dict fields;
    py::dict ch;
    uint64_t misses = 0, relocks = 0;
    for (const FieldSchedule& f : s.schedule[i]) {
      py::dict x;
      x["state"] = track_state_name(f.state);
      x["period_s"] = f.period_ns > 0 ? static_cast<double>(f.period_ns) * 1e-9 : std::nan("");
      x["misses"] = f.misses;
      x["relocks"] = f.relocks;
      misses += f.misses;
      relocks += f.relocks;
      fields[f.field] = x;
      // The channel's headline is its first field: the energy counter where there is one.
      if (!ch.contains("state")) {
        ch["state"] = x["state"];
        ch["period_s"] = x["period_s"];
      }
    }
    ch["misses"] = misses;
    ch["relocks"] = relocks;
    ch["fields"] = fields;
    sched[py::str(names[i])] = ch;
  }
  d["schedule"] = sched;
  d["telemetry_polls"] = s.telemetry_polls;
  d["telemetry_missed"] = s.telemetry_missed;
  d["telemetry_dropped"] = s.telemetry_dropped;
  d["telemetry_read_errors"] = s.telemetry_read_errors;
  d["telemetry_read_p99_us"] = s.telemetry_read_p99_us;
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
  m.attr("POWER_BOUND_MARGIN") = kPowerBoundMargin;
  py::class_<Meter>(m, "Meter")
      .def(py::init(&make_meter), py::arg("sources"), py::arg("period_ns"), py::arg("spin_ns") = -1,
           py::arg("ring_capacity") = size_t{1} << 20, py::arg("schedule") = "fixed", py::arg("realtime") = true,
           py::arg("guard_ns") = 0, py::arg("keep_samples_ns") = RecordConfig{}.keep_samples_ns,
           py::arg("knot_resolution_ns") = RecordConfig{}.knot_resolution_ns, py::arg("telemetry_period_ns") = 0,
           py::arg("history_dir") = "")
      .def("start", &Meter::start, nogil())
      .def("stop", &Meter::stop, nogil())
      .def("close", &Meter::close, nogil())
      .def_property_readonly("state", [](const Meter& self) { return state_name(self.state()); })
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
          [](Meter& self, int64_t t0, int64_t t1, int64_t wait_ns, bool clamp_to_stop) {
            SpanEnergy s;
            {
              py::gil_scoped_release nogil;
              s = self.energy_between(t0, t1, wait_ns, clamp_to_stop);
            }
            py::dict d;
            d["t0_ns"] = s.t0_ns;
            d["t1_ns"] = s.t1_ns;
            d["truncated"] = s.truncated;
            d["energy_j"] = s.energy_j;
            d["bound_j"] = s.bound_j;
            py::list status;
            for (SpanStatus x : s.status) status.append(status_name(x));
            d["status"] = status;
            return d;
          },
          py::arg("t0_ns"), py::arg("t1_ns"), py::arg("wait_ns") = 0, py::arg("clamp_to_stop") = false,
          "Per-channel energy_j, bound_j and status (final/provisional/unknown/failed) between two CLOCK_MONOTONIC "
          "instants, waiting at most wait_ns; clamp_to_stop cuts a span ending after the stop instant.")
      .def(
          "cumulative_at",
          [](Meter& self, size_t channel, py::array_t<int64_t, py::array::c_style | py::array::forcecast> t,
             bool with_bound) -> py::object {
            py::array_t<double> out(t.size()), bound(with_bound ? t.size() : 0);
            const int64_t* tp = t.data();
            double* op = out.mutable_data();
            double* bp = with_bound ? bound.mutable_data() : nullptr;
            const auto n = static_cast<size_t>(t.size());
            {
              py::gil_scoped_release nogil;
              self.cumulative_at(channel, tp, n, op, bp);
            }
            if (with_bound) return py::make_tuple(out, bound);
            return std::move(out);
          },
          py::arg("channel"), py::arg("t_ns"), py::arg("with_bound") = false,
          "Cumulative joules of one channel at each t_ns (numpy int64); with_bound: (values, error bounds).")
      .def("failed_at_ns",
           [](Meter& self) {
             std::vector<int64_t> f;
             {
               py::gil_scoped_release nogil;
               f = self.failed_at_ns();
             }
             py::list out;
             for (int64_t t : f) out.append(t == kNotFailed ? py::object(py::none()) : py::object(py::int_(t)));
             return out;
           })
      .def("sample_count", &Meter::sample_count, nogil())
      .def("samples", &meter_samples, py::arg("start") = 0, py::arg("stop") = SIZE_MAX,
           "Columns (t_ns, channel, energy_j, power_w) of samples [start, stop) as numpy arrays.")
      .def("stats", [](const Meter& self) { return stats_dict(self.stats(), self.channels()); })
      .def("record_stats",
           [](Meter& self) {
             RecordStats s;
             {
               py::gil_scoped_release nogil;
               s = self.record_stats();
             }
             return record_stats_dict(s);
           })
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
  m.def("release_free_heap", &release_free_heap, py::call_guard<py::gil_scoped_release>(),
        "Return the allocator's free memory to the kernel (glibc malloc_trim); True when some was returned.");
  m.def("probe", &probe, py::arg("name"), py::arg("options") = SourceOptions{},
        "Open a source, read every channel once, close it. Returns {t_ns, channels, readings}.");
  m.def("counter_delta", &counter_delta, py::arg("prev"), py::arg("cur"), py::arg("range"));
  m.def(
      "simulate_schedule",
      [](const std::vector<int64_t>& update_t_ns, int64_t start_ns, int64_t end_ns, int64_t poll_ns,
         int64_t guard_ns) {
        if (poll_ns <= 0 || guard_ns <= 0) throw std::invalid_argument("poll_ns and guard_ns must be positive");
        ScheduleRun r;
        {
          py::gil_scoped_release nogil;
          r = simulate_schedule(update_t_ns, start_ns, end_ns, poll_ns, guard_ns);
        }
        return py::make_tuple(r.poll_t_ns, r.states, r.period_ns, r.misses, r.relocks);
      },
      py::arg("update_t_ns"), py::arg("start_ns"), py::arg("end_ns"),
        py::arg("poll_ns"), py::arg("guard_ns"),
        "UpdateTracker on a made-up field: (poll_t_ns, states, period_ns, misses, relocks).");
  // --- calibrate: optional CUDA load ---
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

  // --- attribution (per-request energy) ---
  using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
  using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
  using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
  m.def(
      "attribute",
      [](I64 t_ns, F64 energy_j, I64 start_ns, I64 end_ns, I64 first_token_ns, U8 has_first_token,
         I64 chunk_offsets, I64 chunk_t_ns, I64 chunk_tokens, const std::string& method, double update_period_s,
         std::optional<F64> bound_j) {
        const size_t n = static_cast<size_t>(start_ns.size());
        if (t_ns.size() != energy_j.size() || (bound_j && bound_j->size() != t_ns.size()) || end_ns.size() != start_ns.size() ||
            first_token_ns.size() != start_ns.size() || has_first_token.size() != start_ns.size() ||
            chunk_t_ns.size() != chunk_tokens.size())
          throw std::invalid_argument("attribute: array lengths do not match");
        if (method != "time-share" && method != "token-weighted")
          throw std::invalid_argument("attribute: method must be 'time-share' or 'token-weighted'");
        const bool tokens = method == "token-weighted";
        if (tokens && static_cast<size_t>(chunk_offsets.size()) != n + 1)
          throw std::invalid_argument("attribute: chunk_offsets needs one more entry than there are requests");
        AttributionInput in;
        in.t_ns = t_ns.data();
        in.energy_j = energy_j.data();
        in.bound_j = bound_j ? bound_j->data() : nullptr;
        in.n_points = static_cast<size_t>(t_ns.size());
        in.start_ns = start_ns.data();
        in.end_ns = end_ns.data();
        in.first_token_ns = first_token_ns.data();
        in.has_first_token = has_first_token.data();
        in.n_requests = n;
        in.chunk_offsets = tokens ? chunk_offsets.data() : nullptr;
        in.chunk_t_ns = chunk_t_ns.data();
        in.chunk_tokens = chunk_tokens.data();
        in.n_chunks = static_cast<size_t>(chunk_t_ns.size());
        in.method = tokens ? AttributionMethod::kTokenWeighted : AttributionMethod::kTimeShare;
        in.update_period_s = update_period_s;
        py::array_t<double> energy(n), prefill(n), share_s(n), unc(n);
        AttributionOutput out;
        out.energy_j = energy.mutable_data();
        out.prefill_energy_j = prefill.mutable_data();
        out.attributed_s = share_s.mutable_data();
        out.uncertainty_j = unc.mutable_data();
        {
          py::gil_scoped_release nogil;
          attribute(in, out);
        }
        py::dict d;
        d["energy_j"] = energy;
        d["prefill_energy_j"] = prefill;
        d["attributed_s"] = share_s;
        d["uncertainty_j"] = unc;
        d["idle_j"] = out.idle_j;
        d["idle_s"] = out.idle_s;
        d["total_j"] = out.total_j;
        d["span_s"] = out.span_s;
        return d;
      },
      py::arg("t_ns"), py::arg("energy_j"), py::arg("start_ns"), py::arg("end_ns"), py::arg("first_token_ns"),
      py::arg("has_first_token"), py::arg("chunk_offsets"), py::arg("chunk_t_ns"), py::arg("chunk_tokens"),
      py::arg("method"), py::arg("update_period_s"), py::arg("bound_j") = py::none(),
      "Per-request energy attribution kernel; use fastmeter.attribution.attribute, which validates input.");
  // --- end attribution ---
  // ---- integrate kernels on whole arrays, for tests against python/fastmeter/reference ----
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
        const std::vector<Knot> k = kb.knots().to_vector();
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
  m.def(
      "decimate_knots",
      [same_length](I64 knot_t_ns, F64 knot_energy_j, F64 knot_power_w, B8 anchor, int64_t resolution_ns) {
        const py::ssize_t n = knot_t_ns.size();
        same_length(n, {knot_energy_j.size(), knot_power_w.size(), anchor.size()});
        std::vector<Knot> k(static_cast<size_t>(n));
        std::vector<uint8_t> a(static_cast<size_t>(n));
        for (py::ssize_t i = 0; i < n; ++i) {
          k[static_cast<size_t>(i)] = {knot_t_ns.at(i), knot_energy_j.at(i), knot_power_w.at(i)};
          a[static_cast<size_t>(i)] = anchor.at(i) ? 1 : 0;
        }
        const size_t m = decimate_knots(k.data(), a.data(), k.size(), resolution_ns);
        I64 kt(static_cast<py::ssize_t>(m));
        F64 ke(static_cast<py::ssize_t>(m)), kp(static_cast<py::ssize_t>(m));
        for (size_t i = 0; i < m; ++i) {
          const auto j = static_cast<py::ssize_t>(i);
          kt.mutable_at(j) = k[i].t_ns;
          ke.mutable_at(j) = k[i].energy_j;
          kp.mutable_at(j) = k[i].power_w;
        }
        return py::make_tuple(kt, ke, kp);
      },
      py::arg("knot_t_ns"), py::arg("knot_energy_j"), py::arg("knot_power_w"), py::arg("anchor"),
      py::arg("resolution_ns"), "Knot decimation kernel: the knots it keeps, as (t_ns, energy_j, power_w).");
  // ---- end integrate kernels block ----
  // ---- error bound kernels on whole arrays, for tests against python/fastmeter/reference/bound.py ----
  m.def(
      "energy_range",
      [same_length](I64 t_ns, F64 energy_j, F64 power_w, B8 counter, B8 changed, double unit_j, I64 query_t_ns) {
        const py::ssize_t n = t_ns.size();
        same_length(n, {energy_j.size(), power_w.size(), counter.size(), changed.size()});
        BoundBuilder b(unit_j);
        for (py::ssize_t i = 0; i < n; ++i)
          b.push(t_ns.at(i), energy_j.at(i), power_w.at(i), counter.at(i), changed.at(i));
        F64 lo(query_t_ns.size()), hi(query_t_ns.size());
        for (py::ssize_t i = 0; i < query_t_ns.size(); ++i) {
          const EnergyRange r = b.range_at(query_t_ns.at(i));
          lo.mutable_at(i) = r.lo_j;
          hi.mutable_at(i) = r.hi_j;
        }
        return py::make_tuple(lo, hi, b.max_power_w());
      },
      py::arg("t_ns"), py::arg("energy_j"), py::arg("power_w"), py::arg("counter"), py::arg("changed"),
      py::arg("unit_j"), py::arg("query_t_ns"),
      "BoundBuilder over a sample stream: (lo_j, hi_j) holding the true cumulative energy at each query instant, "
      "and the power limit used.");
  m.def(
      "span_range",
      [same_length](F64 lo0, F64 hi0, F64 lo1, F64 hi1, double pmax_w, I64 t0_ns, I64 t1_ns) {
        const py::ssize_t n = lo0.size();
        same_length(n, {hi0.size(), lo1.size(), hi1.size(), t0_ns.size(), t1_ns.size()});
        F64 lo(n), hi(n);
        for (py::ssize_t i = 0; i < n; ++i) {
          const EnergyRange r =
              span_range({lo0.at(i), hi0.at(i)}, {lo1.at(i), hi1.at(i)}, pmax_w, t0_ns.at(i), t1_ns.at(i));
          lo.mutable_at(i) = r.lo_j;
          hi.mutable_at(i) = r.hi_j;
        }
        return py::make_tuple(lo, hi);
      },
      py::arg("lo0_j"), py::arg("hi0_j"), py::arg("lo1_j"), py::arg("hi1_j"), py::arg("pmax_w"), py::arg("t0_ns"),
      py::arg("t1_ns"), "The range of E(t1) - E(t0) from the ranges at both ends (bound.h span_range).");
  // ---- end error bound kernels ----

  // --- telemetry (telemetry.h): series, what is unavailable, readings by sequence number or by time ---
  auto meter_cls = py::reinterpret_borrow<py::class_<Meter>>(m.attr("Meter"));
  meter_cls.def_property_readonly("telemetry_period_ns", &Meter::telemetry_period_ns)
      .def_property_readonly("telemetry_series",
                             [](const Meter& self) {
                               py::list out;
                               for (const auto& se : self.telemetry_series())
                                 out.append(py::make_tuple(se.channel, se.metric));
                               return out;
                             })
      .def_property_readonly("telemetry_unavailable", &Meter::telemetry_unavailable)
      .def("telemetry_count", &Meter::telemetry_count, nogil())
      .def(
          "telemetry_range",
          [](Meter& self, size_t from, size_t to) {
            size_t count;
            {
              py::gil_scoped_release nogil;
              count = self.telemetry_count();
            }
            to = std::min(to, count);
            from = std::min(from, to);
            const auto n = static_cast<py::ssize_t>(to - from);
            py::array_t<int64_t> t(n);
            py::array_t<uint32_t> series(n);
            py::array_t<double> value(n);
            int64_t* tp = t.mutable_data();
            uint32_t* sp = series.mutable_data();
            double* vp = value.mutable_data();
            {
              py::gil_scoped_release nogil;
              self.copy_telemetry(from, to, tp, sp, vp);
            }
            return py::make_tuple(t, series, value);
          },
          py::arg("start") = 0, py::arg("stop") = SIZE_MAX,
          "Columns (t_ns, series, value) of telemetry readings [start, stop) by sequence number.")
      .def(
          "telemetry_between",
          [](Meter& self, int64_t t0, int64_t t1) {
            std::vector<TelemetryReading> r;
            {
              py::gil_scoped_release nogil;
              r = self.telemetry_between(t0, t1);
            }
            const auto n = static_cast<py::ssize_t>(r.size());
            py::array_t<int64_t> t(n);
            py::array_t<uint32_t> series(n);
            py::array_t<double> value(n);
            for (py::ssize_t i = 0; i < n; ++i) {
              t.mutable_at(i) = r[static_cast<size_t>(i)].t_ns;
              series.mutable_at(i) = r[static_cast<size_t>(i)].series;
              value.mutable_at(i) = r[static_cast<size_t>(i)].value;
            }
            return py::make_tuple(t, series, value);
          },
          py::arg("t0_ns"), py::arg("t1_ns"), "Columns (t_ns, series, value) of readings with t0_ns <= t_ns <= t1_ns.");
  m.def(
      "parse_proc_stat_cpu",
      [](const std::string& text) -> py::object {
        CpuTicks t;
        if (!parse_proc_stat_cpu(text, &t)) return py::none();
        return py::make_tuple(t.busy, t.total);
      },
      py::arg("text"), "(busy, total) ticks of /proc/stat's aggregate cpu line, or None when it is not one.");
  m.def(
      "cpu_busy_pct",
      [](uint64_t prev_busy, uint64_t prev_total, uint64_t busy, uint64_t total) {
        return cpu_busy_pct(CpuTicks{prev_busy, prev_total}, CpuTicks{busy, total});
      },
      py::arg("prev_busy"), py::arg("prev_total"), py::arg("busy"), py::arg("total"));
  m.def(
      "parse_cpufreq_mhz", [](const std::string& text) { return parse_cpufreq_mhz(text); }, py::arg("text"));
  // ---- native HTTP transport ----
  {
    namespace h = fastmeter::http;
    auto events_list = [](const std::vector<h::SseEvent>& evs) {
      py::list out(evs.size());
      for (size_t i = 0; i < evs.size(); ++i) out[i] = py::make_tuple(py::bytes(evs[i].data), evs[i].t_ns);
      return out;
    };
    m.def(
        "http_parse_pieces",
        [events_list](const std::vector<std::string>& pieces, size_t max_line_bytes, size_t max_event_bytes,
                      bool eof) {
          h::ResponseParser p({max_line_bytes, max_event_bytes});
          py::object error = py::none();
          size_t used = 0;
          try {
            for (size_t i = 0; i < pieces.size() && !p.complete(); ++i) {
              used += p.feed(pieces[i].data(), pieces[i].size(), static_cast<int64_t>(i));
            }
            if (eof) p.eof();
          } catch (const h::ParseError& e) {
            error = py::make_tuple(static_cast<int>(e.kind()), e.what());
          }
          py::dict d;
          d["status"] = p.status();
          d["keep_alive"] = p.keep_alive();
          d["complete"] = p.complete();
          d["truncated"] = p.truncated();
          d["done_seen"] = p.done_seen();
          d["reads"] = p.reads();
          d["used"] = used;
          d["events"] = events_list(p.events());
          d["error_body"] = py::bytes(p.error_body());
          d["error"] = error;
          return d;
        },
        py::arg("pieces"), py::arg("max_line_bytes") = h::kDefaultMaxLineBytes,
        py::arg("max_event_bytes") = h::kDefaultMaxEventBytes, py::arg("eof") = false,
        "Run the native response parser over pieces (piece i arrives at t_ns = i): for tests against its twin.");
    py::class_<h::StreamClient>(m, "StreamClient")
        .def(py::init([](const std::string& host, int port, size_t max_connections, size_t max_line_bytes,
                         size_t max_event_bytes, bool realtime) {
               return std::make_unique<h::StreamClient>(host, port, max_connections,
                                                        h::StreamLimits{max_line_bytes, max_event_bytes}, realtime);
             }),
             py::arg("host"), py::arg("port"), py::arg("max_connections"),
             py::arg("max_line_bytes") = h::kDefaultMaxLineBytes,
             py::arg("max_event_bytes") = h::kDefaultMaxEventBytes, py::arg("realtime") = false)
        .def(
            "submit",
            [](h::StreamClient& c, const py::list& jobs) {
              std::vector<h::Job> v;
              v.reserve(jobs.size());
              for (const py::handle& item : jobs) {
                auto t = item.cast<py::tuple>();
                h::Job j;
                j.id = t[0].cast<uint64_t>();
                j.scheduled_ns = t[1].cast<int64_t>();
                j.request = t[2].cast<std::string>();
                j.timeout_ns = t[3].cast<int64_t>();
                j.not_after_ns = t[4].cast<int64_t>();
                v.push_back(std::move(j));
              }
              py::gil_scoped_release nogil;
              c.submit(std::move(v));
            },
            py::arg("jobs"), "Jobs as (id, scheduled_ns or -1, request bytes, timeout_ns or 0, not_after_ns).")
        .def(
            "take",
            [events_list](h::StreamClient& c) {
              std::vector<h::Result> rs;
              {
                py::gil_scoped_release nogil;
                rs = c.take();
              }
              py::list out(rs.size());
              for (size_t i = 0; i < rs.size(); ++i) {
                const h::Result& r = rs[i];
                out[i] = py::make_tuple(r.id, r.sent, r.scheduled_ns, r.send_ns, r.end_ns, r.http_status,
                                        r.content_encoding, static_cast<int>(r.error_kind), r.error,
                                        events_list(r.events), py::bytes(r.error_body), r.done_seen, r.complete,
                                        r.truncated, r.reads);
              }
              return out;
            },
            "Finished requests as tuples (see _core.pyi); never blocks.")
        .def_property_readonly("notify_fd", &h::StreamClient::notify_fd)
        .def_property_readonly("connections_opened", &h::StreamClient::connections_opened)
        .def_property_readonly("thread_cpu_ns", &h::StreamClient::thread_cpu_ns)
        .def_property_readonly("thread_tid", &h::StreamClient::thread_tid)
        .def_property_readonly("sched_policy", &h::StreamClient::sched_policy)
        .def("close", &h::StreamClient::close, nogil());
  }
  // ---- end native HTTP transport ----
  // ---- activity shaping kernel ----
  {
    using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
    using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
    m.def(
        "shape_curve",
        [](I64 knot_t_ns, F64 knot_energy_j, I64 power_t_ns, F64 power_w, I64 query_t_ns) {
          if (knot_t_ns.size() != knot_energy_j.size() || power_t_ns.size() != power_w.size())
            throw std::invalid_argument("shape_curve: array lengths do not match");
          ShapeInput in;
          in.knot_t_ns = knot_t_ns.data();
          in.knot_energy_j = knot_energy_j.data();
          in.n_knots = static_cast<size_t>(knot_t_ns.size());
          in.power_t_ns = power_t_ns.data();
          in.power_w = power_w.data();
          in.n_power = static_cast<size_t>(power_t_ns.size());
          in.query_t_ns = query_t_ns.data();
          in.n_query = static_cast<size_t>(query_t_ns.size());
          F64 out(query_t_ns.size());
          double* dst = out.mutable_data();
          {
            py::gil_scoped_release nogil;
            shape_curve(in, dst);
          }
          return out;
        },
        py::arg("knot_t_ns"), py::arg("knot_energy_j"), py::arg("power_t_ns"), py::arg("power_w"),
        py::arg("query_t_ns"),
        "Measured cumulative energy at the knots, reshaped inside each knot interval by the predicted power; use "
        "fastmeter.activity, which validates input.");
  }
  // ---- end activity shaping kernel ----
  // ---- streaming attribution (attribute_stream.h) ----
  {
    using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
    using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
    using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
    py::class_<AttributionStream>(m, "AttributionStream",
                                  "Attribution over streamed input; use fastmeter.attribution_stream, which validates.")
        .def(py::init([](const std::string& method, double update_period_s) {
               if (method != "time-share" && method != "token-weighted")
                 throw std::invalid_argument("attribute: method must be 'time-share' or 'token-weighted'");
               return std::make_unique<AttributionStream>(
                   method == "token-weighted" ? AttributionMethod::kTokenWeighted : AttributionMethod::kTimeShare,
                   update_period_s);
             }),
             py::arg("method"), py::arg("update_period_s"))
        .def(
            "add_curve",
            [](AttributionStream& s, I64 t_ns, F64 energy_j, std::optional<F64> bound_j) {
              if (t_ns.size() != energy_j.size() || (bound_j && bound_j->size() != t_ns.size()))
                throw std::invalid_argument("attribution stream: curve array lengths do not match");
              s.add_curve(t_ns.data(), energy_j.data(), bound_j ? bound_j->data() : nullptr,
                          static_cast<size_t>(t_ns.size()));
            },
            py::arg("t_ns"), py::arg("energy_j"), py::arg("bound_j") = py::none())
        .def("end_curve", &AttributionStream::end_curve)
        .def(
            "add_requests",
            [](AttributionStream& s, I64 start_ns, I64 end_ns, I64 first_token_ns, U8 has_first_token,
               I64 chunk_offsets, I64 chunk_t_ns, I64 chunk_tokens) {
              const py::ssize_t n = start_ns.size();
              if (end_ns.size() != n || first_token_ns.size() != n || has_first_token.size() != n ||
                  chunk_offsets.size() != n + 1 || chunk_t_ns.size() != chunk_tokens.size())
                throw std::invalid_argument("attribution stream: request array lengths do not match");
              const int64_t* off = chunk_offsets.data();
              if (off[0] != 0 || off[n] != static_cast<int64_t>(chunk_t_ns.size()))
                throw std::invalid_argument("attribution stream: chunk offsets must run from 0 to the chunk count");
              for (py::ssize_t r = 0; r < n; ++r)
                if (off[r + 1] < off[r]) throw std::invalid_argument("attribution stream: chunk offsets decrease");
              s.add_requests(start_ns.data(), end_ns.data(), first_token_ns.data(), has_first_token.data(),
                             static_cast<size_t>(n), off, chunk_t_ns.data(), chunk_tokens.data());
            },
            py::arg("start_ns"), py::arg("end_ns"), py::arg("first_token_ns"), py::arg("has_first_token"),
            py::arg("chunk_offsets"), py::arg("chunk_t_ns"), py::arg("chunk_tokens"))
        .def("end_requests", &AttributionStream::end_requests)
        .def(
            "advance",
            [](AttributionStream& s) {
              StreamResults out;
              {
                py::gil_scoped_release nogil;
                s.advance(out);
              }
              py::dict d;
              d["first_index"] = out.first_index;
              d["energy_j"] = py::array_t<double>(out.energy_j.size(), out.energy_j.data());
              d["prefill_energy_j"] = py::array_t<double>(out.prefill_energy_j.size(), out.prefill_energy_j.data());
              d["attributed_s"] = py::array_t<double>(out.attributed_s.size(), out.attributed_s.data());
              d["uncertainty_j"] = py::array_t<double>(out.uncertainty_j.size(), out.uncertainty_j.data());
              d["outside_span"] = py::array_t<uint8_t>(out.outside_span.size(), out.outside_span.data());
              return d;
            },
            "Sweep what the input so far decides; the results of finished requests, in input order.")
        .def_property_readonly("curve_needed_until_ns", &AttributionStream::curve_needed_until_ns)
        .def_property_readonly("done", &AttributionStream::done)
        .def_property_readonly("requests_held", &AttributionStream::requests_held)
        .def_property_readonly("curve_points_held", &AttributionStream::curve_points_held)
        .def_property_readonly("idle_j", &AttributionStream::idle_j)
        .def_property_readonly("idle_s", &AttributionStream::idle_s)
        .def_property_readonly("total_j", &AttributionStream::total_j)
        .def_property_readonly("span_s", &AttributionStream::span_s);
  }
  // ---- end streaming attribution ----
}
