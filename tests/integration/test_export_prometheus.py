"""`fastmeter export`: the Prometheus endpoint scraped over HTTP on 127.0.0.1 and read with prometheus-client's own
parser, over a meter reading the NVML emulator (analytic truth)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import fastmeter
from fastmeter.assess import meter_validity
from fastmeter.errors import ConfigError
from fastmeter.export import Exporter
from fastmeter.export.server import parse_listen
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Square

GPU_IS_LOST = 15


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}} of one scrape."""
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _gpu(name: str) -> tuple[tuple[str, str], ...]:
    return (("channel", name), ("domain", "gpu"))


def test_counters_power_validity_and_health_against_the_truth(fake_nvml: FakeNvml) -> None:
    gpus = fake_nvml.configure(
        [GpuSpec(waveform=Constant(150.0)), GpuSpec(waveform=Square(50.0, 350.0, 0.1, 0.5), counter_refresh_ms=20.0)]
    )
    m = fastmeter.Meter("nvml", 1000)
    with m, Exporter(m, lambda: meter_validity(m), "127.0.0.1", 0) as ex:
        scrapes = []
        for _ in range(4):
            time.sleep(0.4)
            scrapes.append(scrape(ex.url))
        m.stop()
        last = scrape(ex.url)
    # Counters never go backwards, and the last one (after the stop) is the meter's energy from start to stop.
    for ch in ("gpu0", "gpu1"):
        values = [s["fastmeter_energy_joules_total"][_gpu(ch)] for s in [*scrapes, last]]
        assert all(b >= a for a, b in zip(values, values[1:])) and values[0] > 0
    span = m.span(m.start_ns, m.stop_ns)
    for ch, g in zip(("gpu0", "gpu1"), gpus):
        truth = g.energy_j(m.start_ns, m.stop_ns)
        assert abs(last["fastmeter_energy_joules_total"][_gpu(ch)] - truth) <= span.bound_j[ch]
    # Power: the last second's average. Constant 150 W is 150 W whatever the window; the square wave's 0.1 s
    # period fits 10 times into the second, so its average is the duty-weighted mean, 200 W, within a period's share.
    for s in scrapes[2:]:
        assert s["fastmeter_power_watts"][_gpu("gpu0")] == pytest.approx(150.0, rel=0.01)
        assert s["fastmeter_power_watts"][_gpu("gpu1")] == pytest.approx(200.0, abs=0.1 * 300.0)
    # Validity: the emulator is named by FASTMETER_NVML_LIBRARY, so the verdict is synthetic, with that reason.
    verdict = {dict(k)["verdict"]: v for k, v in last["fastmeter_verdict"].items()}
    assert verdict == {"measured": 0.0, "degraded": 0.0, "synthetic": 1.0, "invalid": 0.0}
    # Every reason of the record's validity is exported (a loaded host may add poll_gap to emulated_source).
    exported = {(dict(k)["code"], dict(k)["channel"]) for k in last["fastmeter_validity_reason"]}
    assert exported == {(r.code, r.channel or "") for r in meter_validity(m).reasons}
    assert ("emulated_source", "") in exported
    assert set(last["fastmeter_channel_failed"].values()) == {0.0}
    # Sampler health.
    samples = [s["fastmeter_sampler_samples_total"][()] for s in scrapes]
    assert all(b > a for a, b in zip(samples, samples[1:]))
    assert scrapes[-1]["fastmeter_sampler_rate_hz"][()] > 100
    assert last["fastmeter_sampler_dropped_samples_total"][()] == 0


def test_a_lost_gpu_shows_as_failed_and_invalid(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure(
        [GpuSpec(waveform=Constant(100.0)), GpuSpec(waveform=Constant(300.0), fail_after_calls=(60, 15))]
    )
    m = fastmeter.Meter("nvml", 1000)
    with m, Exporter(m, lambda: meter_validity(m), "127.0.0.1", 0) as ex:
        deadline = time.monotonic() + 10
        while m.failed_at_ns["gpu1"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        s = scrape(ex.url)
    assert s["fastmeter_channel_failed"] == {_gpu("gpu0"): 0.0, _gpu("gpu1"): 1.0}
    assert s["fastmeter_verdict"][(("verdict", "invalid"),)] == 1.0
    assert (("channel", "gpu1"), ("code", "channel_failed"), ("verdict", "invalid")) in s["fastmeter_validity_reason"]


@pytest.mark.parametrize("text", ["9464", "localhost", "127.0.0.1:http", "127.0.0.1:70000", ":9464"])
def test_listen_must_be_host_and_port(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen(text)


def test_cli_serves_until_its_duration_and_refuses_a_bad_address(fake_nvml: FakeNvml) -> None:
    cmd = [sys.executable, "-m", "fastmeter.cli", "export", "--source", "nvml"]
    bad = subprocess.run([*cmd, "--listen", "nowhere"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("Error: --listen 'nowhere' is not HOST:PORT")
    with subprocess.Popen([*cmd, "--listen", "127.0.0.1:0", "--duration", "3"], stderr=subprocess.PIPE, text=True) as p:
        assert p.stderr is not None
        line = ""
        while "serving" not in line:
            line = p.stderr.readline()
            assert line, "export exited before serving"
        s = scrape(line.split()[1])
        assert s["fastmeter_energy_joules_total"][_gpu("gpu0")] >= 0
        assert p.wait(timeout=60) == 0
