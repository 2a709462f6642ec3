"""The "rapl-msr" source against a fake msr tree: register sets, units, totals, values, selection, errors."""

from __future__ import annotations

import shutil

import pytest

from fastmeter import _core
from fastmeter.reference.counters import counter_delta
from tests.emulators.msr import (
    AMD_UNIT,
    INTEL_DRAM,
    INTEL_PKG,
    INTEL_PP0,
    INTEL_PP1,
    INTEL_PSYS,
    INTEL_UNIT,
    FakeMsr,
    unit_register,
)
from tests.emulators.unprivileged import probe_unprivileged, world_readable_dir

ALDER_LAKE, SAPPHIRE_RAPIDS = 0x97, 0x8F
HIGH = 0xABCD_0000_0000  # bits above 31 are not part of the energy field


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = FakeMsr(tmp_path)
    for k, v in f.env().items():
        monkeypatch.setenv(k, v)
    return f


def rows(probe: dict) -> dict[str, tuple]:
    return {
        c["name"]: (c["domain"], c["in_total"], c["counter_unit_j"], c["counter_range"], r["counter_raw"])
        for c, r in zip(probe["channels"], probe["readings"])
    }


def intel_client(fake: FakeMsr, esu: int = 14) -> None:
    """One package (cpus 0-3) with every Intel RAPL domain, PSYS included (a laptop/desktop part)."""
    fake.write_cpuinfo("intel", 6, ALDER_LAKE, cpus=4)
    regs = {
        INTEL_UNIT: unit_register(esu),
        INTEL_PKG: HIGH | 1_000,
        INTEL_DRAM: HIGH | 2_000,
        INTEL_PP0: HIGH | 3_000,
        INTEL_PP1: HIGH | 4_000,
        INTEL_PSYS: HIGH | 5_000,
    }
    fake.add_cpu(0, 0, regs)
    for cpu in (1, 2, 3):
        fake.add_cpu(cpu, 0, {INTEL_UNIT: 0})  # never opened: only the first CPU of a package is read


def intel_server(fake: FakeMsr, model: int = SAPPHIRE_RAPIDS, esu: int = 14) -> None:
    """Two packages, CPUs interleaved (0,2 in package 0; 1,3 in package 1); package, core and DRAM only."""
    fake.write_cpuinfo("intel", 6, model, cpus=4)
    for cpu, pkg in ((3, 1), (2, 0), (1, 1), (0, 0)):
        base = 10_000 * (pkg + 1)
        # PP1 (0x641) and PSYS (0x64D) lie past the end of the file: read as unsupported.
        regs = {
            INTEL_UNIT: unit_register(esu),
            INTEL_PKG: base + 1,
            INTEL_DRAM: base + 2,
            INTEL_PP0: base + 3,
        }
        fake.add_cpu(cpu, pkg, regs if cpu < 2 else None)


def test_intel_client_full_register_set(fake):
    intel_client(fake, esu=14)
    p = _core.probe("rapl-msr", {})
    u = 2.0**-14
    assert rows(p) == {
        "cpu0-package": ("package", False, u, 2**32, 1_000),
        "cpu0-core": ("core", False, u, 2**32, 3_000),
        "cpu0-uncore": ("uncore", False, u, 2**32, 4_000),
        "cpu0-dram": ("dram", False, u, 2**32, 2_000),
        "psys": ("psys", True, u, 2**32, 5_000),
    }
    assert p["channels"][0]["device"] == "msr 0x611 on cpu0"
    assert all(c["has_counter"] and not c["has_power"] for c in p["channels"])


def test_intel_server_two_packages_and_fixed_dram_unit(fake):
    intel_server(fake, model=SAPPHIRE_RAPIDS, esu=14)
    p = _core.probe("rapl-msr", {})
    u, dram_u = 2.0**-14, 2.0**-16
    assert rows(p) == {
        "cpu0-package": ("package", True, u, 2**32, 10_001),
        "cpu0-core": ("core", False, u, 2**32, 10_003),
        "cpu0-dram": ("dram", True, dram_u, 2**32, 10_002),
        "cpu1-package": ("package", True, u, 2**32, 20_001),
        "cpu1-core": ("core", False, u, 2**32, 20_003),
        "cpu1-dram": ("dram", True, dram_u, 2**32, 20_002),
    }
    assert [c["device"] for c in p["channels"]][3] == "msr 0x611 on cpu1"


def test_dram_unit_follows_esu_off_the_server_list_and_can_be_overridden(fake):
    intel_server(fake, model=ALDER_LAKE, esu=14)
    units = {c["name"]: c["counter_unit_j"] for c in _core.probe("rapl-msr", {})["channels"]}
    assert units["cpu0-dram"] == 2.0**-14
    units = {c["name"]: c["counter_unit_j"] for c in _core.probe("rapl-msr", {"dram_esu": "15"})["channels"]}
    assert units["cpu0-dram"] == 2.0**-15 and units["cpu0-package"] == 2.0**-14


@pytest.mark.parametrize("esu", [14, 16, 0, 31])
def test_esu_decoding(fake, esu):
    fake.write_cpuinfo("intel", 6, ALDER_LAKE)
    # Set every bit outside 12:8 too: only ESU may reach the unit.
    fake.add_cpu(0, 0, {INTEL_UNIT: ~(0x1F << 8) & (2**64 - 1) | (esu << 8), INTEL_PKG: 7})
    c = _core.probe("rapl-msr", {})["channels"]
    assert [(x["name"], x["counter_unit_j"]) for x in c] == [("cpu0-package", 2.0**-esu)]


def amd_bytes(esu_byte: int, tail: bytes) -> bytes:
    """Bytes from 0xC0010299 on. The unit, core (0x...29A) and package (0x...29B) registers overlap in a file."""
    return bytes([0x03, esu_byte]) + tail


def test_amd_package_and_first_core(fake):
    fake.write_cpuinfo("amd", 25, 0x11, cpus=16)
    layouts = ((0, 0, 0x10, b"\x0a\x0b\x0c\x0d\x0e\x0f"), (8, 1, 0x2E, b"\x01\x02\x03\x04\x05\x06"))
    for cpu, pkg, esu_byte, tail in layouts:
        fake.add_cpu(cpu, pkg, {})
        fake.write_bytes(cpu, AMD_UNIT, amd_bytes(esu_byte, tail) + bytes(8))
        fake.add_cpu(cpu + 1, pkg, None)
    p = _core.probe("rapl-msr", {})
    # cpu0: ESU = 0x10 & 0x1F = 16; core = bytes 0x10 0a 0b 0c; package = bytes 0a 0b 0c 0d.
    # cpu8: ESU = 0x2E & 0x1F = 14; core = 2e 01 02 03; package = 01 02 03 04.
    assert rows(p) == {
        "cpu0-package": ("package", True, 2.0**-16, 2**32, 0x0D0C0B0A),
        "cpu0-core": ("core", False, 2.0**-16, 2**32, 0x0C0B0A10),
        "cpu1-package": ("package", True, 2.0**-14, 2**32, 0x04030201),
        "cpu1-core": ("core", False, 2.0**-14, 2**32, 0x0302012E),
    }
    assert p["channels"][2]["device"] == "msr 0xC001029B on cpu8"


def test_vendor_option_overrides_cpuinfo(fake):
    fake.write_cpuinfo("intel", 6, ALDER_LAKE)
    fake.add_cpu(0, 0, {})
    fake.write_bytes(0, AMD_UNIT, amd_bytes(0x10, b"\x01\x00\x00\x00\x00\x00") + bytes(8))
    names = [c["name"] for c in _core.probe("rapl-msr", {"vendor": "amd"})["channels"]]
    assert names == ["cpu0-package", "cpu0-core"]


def test_package_selection(fake):
    intel_server(fake)
    assert [c["name"] for c in _core.probe("rapl-msr", {"packages": "1"})["channels"]] == [
        "cpu1-package",
        "cpu1-core",
        "cpu1-dram",
    ]


def test_psys_alone_and_selection_errors(fake):
    intel_client(fake)
    p = _core.probe("rapl-msr", {"packages": "psys"})
    assert rows(p) == {"psys": ("psys", True, 2.0**-14, 2**32, 5_000)}
    for packages, needle in (("2", "package 2 not found"), ("a", "item 'a'")):
        with pytest.raises(_core.SourceError) as e:
            _core.probe("rapl-msr", {"packages": packages})
        assert e.value.args[1] == "config" and needle in e.value.args[0]


def test_counter_progress_and_32_bit_wraparound(fake):
    fake.write_cpuinfo("intel", 6, ALDER_LAKE)
    fake.add_cpu(0, 0, {INTEL_UNIT: unit_register(14), INTEL_PKG: HIGH | (2**32 - 100)})
    first = _core.probe("rapl-msr", {})["readings"][0]["counter_raw"]
    fake.set_register(0, INTEL_PKG, HIGH | 900)  # wrapped: 100 ticks to the top, then 900
    second = _core.probe("rapl-msr", {})["readings"][0]["counter_raw"]
    assert (first, second) == (2**32 - 100, 900)
    assert _core.counter_delta(first, second, 2**32) == counter_delta(first, second, 2**32) == 1_000


@pytest.mark.parametrize(
    ("vendor", "setup", "kind", "needle"),
    [
        ("intel", "no_msr_file", "unavailable", "sudo modprobe msr"),
        ("intel", "empty_msr_file", "unavailable", "RAPL unit register 0x606 is not readable on cpu0"),
        ("via", "ok", "config", "vendor='via' must be intel or amd"),
        (None, "no_cpuinfo", "unavailable", "cannot tell the CPU vendor"),
    ],
)
def test_open_errors(fake, vendor, setup, kind, needle):
    if setup != "no_cpuinfo":
        fake.write_cpuinfo("intel", 6, ALDER_LAKE)
    regs = {"no_msr_file": None, "empty_msr_file": {}}.get(
        setup, {INTEL_UNIT: unit_register(14), INTEL_PKG: 1}
    )
    fake.add_cpu(0, 0, regs)
    with pytest.raises(_core.SourceError) as e:
        _core.probe("rapl-msr", {} if vendor is None else {"vendor": vendor})
    assert e.value.args[1] == kind
    assert needle in e.value.args[0]


def test_unreadable_msr_is_a_permission_error_with_the_fix():
    base = world_readable_dir()
    try:
        fake = FakeMsr(base)
        fake.write_cpuinfo("intel", 6, ALDER_LAKE)
        fake.add_cpu(0, 0, {INTEL_UNIT: unit_register(14), INTEL_PKG: 1})
        fake.deny(0)
        out = probe_unprivileged("rapl-msr", {}, fake.env())
    finally:
        shutil.rmtree(base)
    assert out["ok"] is False and out["kind"] == "permission"
    assert f"cannot open {fake.msr_path(0)}: Permission denied" in out["message"]
    assert "CAP_SYS_RAWIO" in out["message"] and "root" in out["message"]
