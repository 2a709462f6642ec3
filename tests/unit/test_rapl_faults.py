"""RAPL under faults, on the fake powercap tree and fake MSR files: one bad read is skipped and counted (no energy
lost or invented), only a counter that keeps failing dies, and auto mode keeps the zones this user may read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from fastmeter import Meter
from tests.emulators.msr import INTEL_PKG, INTEL_UNIT, FakeMsr, unit_register
from tests.emulators.powercap import FakePowercap
from tests.emulators.unprivileged import NOBODY, probe_unprivileged, world_readable_dir

RANGE_UJ = 1_000_000
HANG_GUARD_S = 20.0  # only against a hang: the waits below end on poll counts, not on time


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = FakePowercap(tmp_path)
    monkeypatch.setenv("FASTMETER_POWERCAP_ROOT", str(f.root))
    return f


def wait_polls(m: Meter, channel: str, n: int) -> None:
    """Return once the sampler has polled `channel` n more times."""
    start = m.stats()["channels"][channel]["polls"]
    give_up = time.monotonic() + HANG_GUARD_S
    while m.stats()["channels"][channel]["polls"] < start + n:
        assert time.monotonic() < give_up, "the sampler stopped polling"
        time.sleep(0.002)


@pytest.mark.parametrize(
    "bad",
    ["", "12a\n", "garbage\n", "-5\n", str(2**64) + "\n", f"{RANGE_UJ + 1}\n", "999999999999\n"],
    ids=["short", "trailing-junk", "garbage", "negative", "overflow", "just-above-range", "far-above-range"],
)
def test_one_bad_read_is_skipped_counted_and_adds_no_energy(fake, bad):
    fake.add_package(0, energy_uj=1_000, max_energy_range_uj=RANGE_UJ)
    fake.add_package(1, energy_uj=7_000, max_energy_range_uj=RANGE_UJ)
    with Meter(sources="rapl", period_us=1000, spin_us=0) as m:
        wait_polls(m, "cpu0-package", 3)
        fake.energy_uj_path("intel-rapl:0").write_text(bad)
        wait_polls(m, "cpu0-package", 3)
        fake.set_energy_uj("intel-rapl:0", 4_000)
        fake.set_energy_uj("intel-rapl:1", 7_500)
        wait_polls(m, "cpu0-package", 3)
    s = m.stats()
    assert s["errors"] == {}
    assert s["channels"]["cpu0-package"]["read_errors"] >= 1
    # The bad value is never differenced: the energy is exactly the counter's progress between good reads.
    assert m.totals()["cpu0-package"] == pytest.approx((4_000 - 1_000) * 1e-6, rel=1e-12)
    assert m.totals()["cpu1-package"] == pytest.approx(500e-6, rel=1e-12)


def test_a_counter_that_keeps_failing_dies_with_the_reason(fake):
    fake.add_package(0, energy_uj=1_000, max_energy_range_uj=RANGE_UJ)
    fake.add_package(1, energy_uj=1_000, max_energy_range_uj=RANGE_UJ)
    with Meter(sources="rapl", period_us=2000, spin_us=0) as m:
        wait_polls(m, "cpu0-package", 2)
        fake.energy_uj_path("intel-rapl:0").write_text("garbage\n")
        give_up = time.monotonic() + HANG_GUARD_S
        while not m.stats()["errors"]:
            assert time.monotonic() < give_up, "a counter failing every read never failed the channel"
            time.sleep(0.01)
        fake.set_energy_uj("intel-rapl:1", 3_000)
        wait_polls(m, "cpu1-package", 3)
    s = m.stats()
    err = s["errors"]["cpu0-package"]
    assert "reads in a row failed over" in err and "not a number" in err
    assert s["channels"]["cpu0-package"]["read_errors"] >= 3
    assert "cpu1-package" not in s["errors"]  # the other zone is unaffected
    assert m.totals()["cpu1-package"] == pytest.approx(2_000e-6, rel=1e-12)


def test_msr_short_read_is_skipped_not_fatal(tmp_path, monkeypatch):
    fake = FakeMsr(tmp_path)
    fake.write_cpuinfo("intel", 6, 0x97)
    fake.add_cpu(0, 0, {INTEL_UNIT: unit_register(14), INTEL_PKG: 100})
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)
    with Meter(sources="rapl-msr", period_us=1000, spin_us=0) as m:
        wait_polls(m, "cpu0-package", 3)
        size = os.path.getsize(fake.msr_path(0))
        os.truncate(fake.msr_path(0), INTEL_PKG + 4)  # the package register now reads short (4 of 8 bytes)
        wait_polls(m, "cpu0-package", 3)
        os.truncate(fake.msr_path(0), size)
        fake.set_register(0, INTEL_PKG, 300)
        wait_polls(m, "cpu0-package", 3)
    s = m.stats()
    assert s["errors"] == {}
    assert s["channels"]["cpu0-package"]["read_errors"] >= 1
    assert m.totals()["cpu0-package"] == pytest.approx(200 * 2.0**-14, rel=1e-12)


def denied_package_tree() -> tuple[FakePowercap, object]:
    base = world_readable_dir()
    fake = FakePowercap(base)
    p0 = fake.add_package(0, energy_uj=10)
    fake.add_subzone(p0, 0, "core", energy_uj=11)
    fake.add_subzone(p0, 1, "dram", energy_uj=12)
    fake.deny_energy_uj(p0)
    fake.deny_energy_uj(f"{p0}:0")
    return fake, base


def test_skip_denied_keeps_the_readable_zones_and_names_the_others():
    fake, base = denied_package_tree()
    env = {"FASTMETER_POWERCAP_ROOT": str(fake.root)}
    try:
        partial = probe_unprivileged("rapl", {"skip_denied": "1"}, env)
        strict = probe_unprivileged("rapl", {}, env)
    finally:
        shutil.rmtree(base)
    assert partial["ok"] is True and partial["channels"] == ["cpu0-dram"]
    left = partial["left_out"]
    assert [line.split(": ", 1)[0] for line in left] == ["intel-rapl:0 (package-0)", "intel-rapl:0:0 (core)"]
    assert all("Permission denied" in line and "sudo chmod o+r" in line for line in left)
    # Asked for by name, the source stays all or nothing.
    assert strict["ok"] is False and strict["kind"] == "permission"


_AUTO_CHILD = f"""
import json, os
from fastmeter import Meter
from fastmeter.sources import permission_warnings
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid({NOBODY})
    os.setuid({NOBODY})
m = Meter(sources="auto")
print(json.dumps({{"sources": m.sources, "channels": m.channel_names,
                  "warnings": permission_warnings(m.skipped_sources)}}))
"""


def test_auto_mode_measures_dram_when_the_package_is_denied_and_says_what_is_left_out(tmp_path):
    fake, base = denied_package_tree()
    env = {
        **os.environ,
        "FASTMETER_POWERCAP_ROOT": str(fake.root),
        "FASTMETER_NVML_LIBRARY": str(tmp_path / "no-libnvidia-ml.so.1"),
        "FASTMETER_MSR_ROOT": str(tmp_path / "no-msr"),
        "FASTMETER_SYSFS_CPU_ROOT": str(tmp_path / "no-cpus"),
        "FASTMETER_CPUINFO": str(tmp_path / "no-cpuinfo"),
    }
    try:
        out = subprocess.run(
            [sys.executable, "-c", _AUTO_CHILD], env=env, capture_output=True, text=True, check=True, cwd="/"
        )
    finally:
        shutil.rmtree(base)
    got = json.loads(out.stdout)
    assert got["sources"] == ["rapl"] and got["channels"] == ["cpu0-dram"]
    rapl_lines = [w for w in got["warnings"] if w.startswith("rapl ")]
    assert len(rapl_lines) == 2
    assert rapl_lines[0].startswith("rapl is measured without intel-rapl:0 (package-0): cannot read")
    assert "CVE-2020-8694" in rapl_lines[0]
