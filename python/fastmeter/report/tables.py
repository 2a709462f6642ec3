"""The report's tables as plain rows of strings: headline figures per run, sampler quality, warnings and the
environment fingerprint. The HTML page and the text summary both render these."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastmeter.analysis.trace_summary import jitter_text
from fastmeter.report.load import Report, Run, Sweep

Row = list[str]


def fmt(value: Any, spec: str) -> str:
    """A number with `spec`, or an em dash for a figure the run does not have (null, NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if spec == "d" and isinstance(value, float):  # a count that JSON round-tripped as 3.0
        return format(int(value), "d") if value.is_integer() else format(value, "g")
    return format(value, spec)


# (column header, summary key, format): the headline figures of one run.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("J / output token", "energy_per_output_token_j", ".4g"),
    ("output tokens / J", "output_tokens_per_j", ".4g"),
    ("output tokens / s", "output_tokens_per_s", ".1f"),
    ("avg power W", "avg_power_w", ".1f"),
    ("inferences / kWh", "inferences_per_kwh", ".4g"),
    ("energy J", "energy_j", ".4g"),
    ("TTFT p50 ms", "ttft_ms_p50", ".1f"),
    ("TTFT p99 ms", "ttft_ms_p99", ".1f"),
    ("ITL p50 ms", "itl_ms_p50", ".2f"),
    ("ITL p99 ms", "itl_ms_p99", ".2f"),
    ("e2e p50 ms", "e2e_ms_p50", ".1f"),
    ("e2e p99 ms", "e2e_ms_p99", ".1f"),
    ("idle baseline W", "idle_power_w", ".1f"),
    ("net energy J", "net_energy_j", ".4g"),
    ("requests ok", "requests_ok", "d"),
    ("requests failed", "requests_failed", "d"),
)
ACCURACY = (("accuracy", "accuracy", ".4g"), ("accuracy / kWh", "accuracy_per_kwh", ".4g"))


def headline_columns(report: Report) -> tuple[tuple[str, str, str], ...]:
    """The headline columns, with accuracy only when some run has it."""
    has_accuracy = any(r.summary.get("accuracy") is not None for r in report.runs)
    return HEADLINE + (ACCURACY if has_accuracy else ())


def headline_rows(report: Report) -> tuple[Row, list[Row]]:
    cols = headline_columns(report)
    header = ["run", *(c[0] for c in cols)]
    return header, [[r.label, *(fmt(r.summary.get(key), spec) for _, key, spec in cols)] for r in report.runs]


# The page's summary, as two tables of at most 9 columns: one table of every headline column overflowed a 1400 px
# window (docs/report.md).
SUMMARY_TABLES = (
    ("Energy and throughput", ("J / output token", "output tokens / J", "output tokens / s", "avg power W",
                               "inferences / kWh", "energy J", "idle baseline W", "net energy J", "accuracy",
                               "accuracy / kWh")),
    ("Latency and requests", ("TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "e2e p50 ms", "e2e p99 ms",
                              "requests ok", "requests failed")),
)


def summary_tables(report: Report) -> list[tuple[str, Row, list[Row]]]:
    """(title, header, rows) per summary table: the headline columns split by SUMMARY_TABLES."""
    header, rows = headline_rows(report)
    out = []
    for title, names in SUMMARY_TABLES:
        keep = [0, *(i for i, h in enumerate(header) if h in names)]
        out.append((title, [header[i] for i in keep], [[r[i] for i in keep] for r in rows]))
    return out


def _periods(stats: dict[str, Any]) -> str:
    periods = stats.get("update_period_s") or {}
    return ", ".join(f"{name} {fmt(p and p * 1e3, '.3g')} ms" for name, p in periods.items()) or "—"


def sampler_rows(report: Report) -> tuple[Row, list[Row]]:
    header = ["run", "rate Hz", "period µs", "jitter p50 µs", "jitter p99 µs", "jitter max µs", "dropped",
              "missed", "counter update period", "channel errors", "RSS MiB", "queries p50/p99 µs"]
    rows = []
    for r in report.runs:
        s = r.meta.get("sampler_stats") or {}
        errors = "; ".join(f"{k}: {v}" for k, v in (s.get("errors") or {}).items()) or "none"
        # the period the sampler ran at, as recorded with the samples (a default period is not in the flags)
        period_us = (r.trace.metadata.get("sampler") or {}).get("period_us")
        rows.append([r.label, fmt(s.get("rate_hz"), ".0f"), fmt(period_us, "d"),
                     jitter_text(s.get("jitter_p50_us"), "—"), jitter_text(s.get("jitter_p99_us"), "—"),
                     fmt(s.get("jitter_max_us"), ".0f"),
                     fmt(s.get("dropped"), "d"), fmt(s.get("missed"), "d"), _periods(s), errors,
                     _rss_mib(s), _query_latency(s)])
    return header, rows


def _rss_mib(stats: dict[str, Any]) -> str:
    # The sampler's own long-run health: this process's RSS at the end of the run (issue 12: flat for any length).
    rss = stats.get("rss_bytes")
    return fmt(rss / 2**20, ".0f") if isinstance(rss, (int, float)) else "—"


def _query_latency(stats: dict[str, Any]) -> str:
    if not stats.get("queries"):
        return "—"
    return f"{fmt(stats.get('query_p50_us'), '.0f')}/{fmt(stats.get('query_p99_us'), '.0f')}"


# Share of sampling deadlines that may be skipped before the report says so (a loaded host delays some polls; the
# energy stays right because the counter is cumulative, but the time resolution of per-request energy suffers).
MISSED_WARN_FRACTION = 0.01

_Check = Callable[[Run], str | None]


def _dropped(r: Run) -> str | None:
    n = (r.meta.get("sampler_stats") or {}).get("dropped") or 0
    return f"{n} samples dropped (the ring was full): energy between the gaps is interpolated" if n > 0 else None


def _missed(r: Run) -> str | None:
    s = r.meta.get("sampler_stats") or {}
    missed, polls = s.get("missed") or 0, s.get("polls") or 0
    due = missed + polls
    if due and missed / due > MISSED_WARN_FRACTION:
        return (f"{missed} of {due} sampling deadlines skipped ({missed / due:.1%}): polls overran their period "
                f"(a busy host or a slow sensor)")
    return None


def _interrupted(r: Run) -> str | None:
    if r.meta.get("interrupted"):
        return "interrupted: figures cover only what was measured before the stop (provisional)"
    return None if r.trace.complete else "samples.arrow was never finished (the recorder died): provisional"


def _channel_errors(r: Run) -> str | None:
    errors = (r.meta.get("sampler_stats") or {}).get("errors") or {}
    return "; ".join(f"channel {k} failed: {v}" for k, v in errors.items()) or None


def _failed(r: Run) -> str | None:
    n = r.summary.get("requests_failed") or 0
    return f"{n} requests failed (their energy is reported separately, not per token)" if n > 0 else None


def _negative_net(r: Run) -> str | None:
    net = r.summary.get("net_energy_j")
    if net is not None and net < 0:
        return "net energy is negative: the idle baseline exceeds the loaded average (a short or noisy baseline)"
    return None


CHECKS: tuple[_Check, ...] = (_interrupted, _dropped, _missed, _channel_errors, _failed, _negative_net)


def warnings(run: Run) -> list[str]:
    return [w for check in CHECKS if (w := check(run))]


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """Nested fingerprint sections as dotted keys; lists of dicts (GPU devices) as key[i]."""
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
        out = {}
        for i, v in enumerate(node):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    if isinstance(node, list):
        return {prefix: ", ".join(map(str, node)) or "none"}
    return {prefix: "—" if node is None else str(node)}


def fingerprint_rows(report: Report, section: str) -> tuple[Row, list[tuple[Row, bool]]]:
    """One row per fingerprint key of `section` ("controlled" or "observed"), one column per run; the flag says
    whether the runs differ in that key."""
    flat = [_flatten(((r.meta.get("fingerprint") or {}).get(section)) or {}) for r in report.runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    rows = []
    for k in keys:
        values = [f.get(k, "—") for f in flat]
        rows.append(([k, *values], len(set(values)) > 1))
    return ["key", *(r.label for r in report.runs)], rows


def sweep_title(label: str) -> str:
    """"Sweep c16" for a sweep directory named c16, but a directory named like a sweep is not "Sweep sweep"."""
    return label if "sweep" in label.lower() else f"Sweep {label}"


def slo_text(sweep: Sweep) -> str:
    """"TTFT p99 <= 200 ms, ITL p99 <= 50 ms" from sweep.json's slo table, or "none set"."""
    names = {"slo_ttft_p99_ms": "TTFT p99", "slo_itl_p99_ms": "ITL p99"}
    parts = [f"{names.get(k, k)} <= {v:g} ms" for k, v in sweep.slo.items() if v is not None]
    return ", ".join(parts) or "none set"
