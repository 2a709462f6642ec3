"""Per-GPU telemetry figures against hand-computed holds, and `fastmeter show` printing them for a real trace."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from fastmeter.analysis.telemetry_summary import TelemetryAccumulator
from fastmeter.cli import main
from fastmeter.telemetry import telemetry_table
from tests.emulators.nvml import FakeNvml, GpuSpec

S = 1_000_000_000


def _table(rows: list[tuple[int, str, str, float]]):
    series = list(dict.fromkeys((c, m) for _, c, m, _ in rows))
    return telemetry_table(
        series,
        np.array([r[0] for r in rows]),
        np.array([series.index((r[1], r[2])) for r in rows]),
        np.array([r[3] for r in rows]),
    )


def test_holds_give_busy_time_temperature_and_throttled_time() -> None:
    rows = []
    util = [20.0, 80.0, 80.0, 0.0, 50.0]  # held for 1 s each from t = 0..4 s, last one ends the record
    temp = [40.0, 44.0, 47.0, 52.0, 50.0]
    reasons = [0x1, 0x4, 0x44, 0x2, 0x0]  # idle, power cap, power cap + HW thermal, app clocks, none
    for k in range(5):
        rows += [
            (k * S, "gpu0", "gpu_util_pct", util[k]),
            (k * S, "gpu0", "gpu_temp_c", temp[k]),
            (k * S, "gpu0", "clocks_event_reasons", float(reasons[k])),
            (k * S, "gpu0", "power_limit_w", 700.0),
        ]
    acc = TelemetryAccumulator(0, 4 * S)
    table = _table(rows)
    for b in table.to_batches(max_chunksize=3):  # split batches: holds carry across them
        acc.add(b)
    (g,) = acc.gpus({"gpu0": 360.0})
    assert g.busy_s == (20 + 80 + 80 + 0) / 100  # the last reading (t = 4 s) holds for no time inside the span
    assert g.mean_util_pct == 45.0
    assert g.mean_temp_c == (40 + 44 + 47 + 52) / 4 and g.max_temp_c == 52.0
    assert g.throttled_s == 2.0  # the two polls with throttling bits; idle and app clocks are not throttling
    assert g.power_limit_w_min == g.power_limit_w_max == 700.0
    assert g.j_per_busy_s == 360.0 / 1.8
    assert math.isnan(g.mean_sm_clock_mhz)  # not reported: unknown, not 0


def test_a_gpu_never_busy_has_no_energy_per_busy_second() -> None:
    acc = TelemetryAccumulator(0, 2 * S)
    acc.add(_table([(0, "gpu0", "gpu_util_pct", 0.0), (2 * S, "gpu0", "gpu_util_pct", 0.0)]))
    (g,) = acc.gpus({"gpu0": 10.0})
    assert g.busy_s == 0.0 and math.isnan(g.j_per_busy_s)


def test_show_prints_the_telemetry_table(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(utilization=(40, 10), temperature_c=55, telemetry=("clocks_event_reasons 0x4",))])
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(main, ["trace", "--source", "nvml", "--duration", "0.5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["show", str(out)])
    assert r.exit_code == 0, r.output
    assert "telemetry     20 Hz" in r.output and "gpu_throttled" in r.output
    energy_j = float(re.search(r"^gpu0\s+([\d.]+)", r.output, re.M).group(1))
    row = re.search(r"^gpu0\s+40\.0\s+([\d.]+)\s+55\.0\s+55\s+([\d.]+)\s+1980\s+700\s+([\d.]+)$", r.output, re.M)
    assert row, r.output
    busy_s, throttled_s, j_per_busy = (float(x) for x in row.groups())
    # Throttled (0x4) and 40% busy at every poll: both are holds over the same record, rounded as printed.
    assert throttled_s > 0.4 and abs(busy_s - 0.4 * throttled_s) <= 0.006
    assert abs(j_per_busy - energy_j / busy_s) <= 0.05 * j_per_busy


def test_validity_names_throttling_between_polls_and_temperature_drift() -> None:
    from fastmeter.telemetry import telemetry_validity
    from fastmeter.validity import MAX_TEMPERATURE_DRIFT_C

    rows = []
    for k in range(6):  # no poll sees a throttle reason, but the power-cap counter grows by 3 ms between two polls
        rows += [
            (k * S, "gpu0", "clocks_event_reasons", 1.0),
            (k * S, "gpu0", "throttle_power_cap_ns", 3e6 if k >= 3 else 0.0),
            (k * S, "gpu0", "gpu_temp_c", 40.0 + 3.0 * k),  # 40 -> 55 C
        ]
    v = telemetry_validity(_table(rows), 0, 5 * S)
    reasons = {r.code: r for r in v.reasons}
    assert v.verdict.value == "degraded" and set(reasons) == {"gpu_throttled", "gpu_temperature_drift"}
    assert "power_cap" in reasons["gpu_throttled"].message and "3.0 ms" in reasons["gpu_throttled"].message
    first_past = min(k for k in range(6) if 3.0 * k > MAX_TEMPERATURE_DRIFT_C)
    assert reasons["gpu_temperature_drift"].t_ns == first_past * S
    # The same record over a span before the counter moved and within the drift threshold: clean.
    assert telemetry_validity(_table(rows), 0, 2 * S).reasons == ()
