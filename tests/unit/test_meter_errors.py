"""Bad input to the Meter: one clear error each, naming what to do."""

from __future__ import annotations

import time

import pytest

import fastmeter
from fastmeter.errors import ConfigError, MeterStateError, SourceUnavailableError, SpanError


def test_unknown_source_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid sources: nvml, rapl, rapl-msr, synthetic"):
        fastmeter.Meter(sources=("nvml", "bogus"))


@pytest.mark.parametrize("period_us", [0, 49, 10_000_001, 1.5])
def test_period_out_of_range(period_us) -> None:
    with pytest.raises(ConfigError, match="period_us"):
        fastmeter.Meter("synthetic", period_us)


def test_unavailable_source_says_why(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(tmp_path / "missing.so"))
    with pytest.raises(SourceUnavailableError, match="FASTMETER_NVML_LIBRARY"):
        fastmeter.Meter("nvml")


def test_bad_synthetic_option_is_a_clear_error() -> None:
    with pytest.raises(SourceUnavailableError, match="waveform 'saw' is not one of: sine, square"):
        fastmeter.Meter("synthetic", source_options={"synthetic": {"waveform": "saw"}})


def test_use_before_start_and_after_stop() -> None:
    m = fastmeter.Meter("synthetic")
    with pytest.raises(MeterStateError, match="not been started"):
        m.totals()
    with pytest.raises(MeterStateError, match="running meter"):
        m.window()
    with m:
        pass
    with pytest.raises(MeterStateError, match="create a new Meter"):
        m.start()
    with pytest.raises(MeterStateError):
        m.window()


def test_span_outside_the_record() -> None:
    m = fastmeter.Meter("synthetic")
    before = time.monotonic_ns()
    with m:
        time.sleep(0.01)
        with pytest.raises(SpanError, match="before the meter started"):
            m.energy_between(before, m.now_ns())
        with pytest.raises(SpanError, match="ends before it starts"):
            m.energy_between(m.now_ns(), m.start_ns)
        with pytest.raises(SpanError, match="future"):
            m.energy_between(m.start_ns, m.now_ns() + 10**10)
    with pytest.raises(SpanError, match="after the meter stopped"):
        m.energy_between(m.start_ns, time.monotonic_ns())


@pytest.mark.parametrize("wait_final_s", [-0.1, 1.5, float("nan")])
def test_wait_final_beyond_the_one_second_budget_is_refused(wait_final_s: float) -> None:
    with pytest.raises(ConfigError, match="wait_final_s"):
        fastmeter.Meter("synthetic", wait_final_s=wait_final_s)


def test_a_closed_meter_cannot_start_but_its_record_stays_readable() -> None:
    m = fastmeter.Meter("synthetic")
    with m:
        time.sleep(0.01)
    m.close()
    assert m.state == "closed"
    assert m.energy_between(m.start_ns, m.stop_ns)["synthetic0"] > 0
    with pytest.raises(MeterStateError, match="create a new Meter"):
        m.start()
