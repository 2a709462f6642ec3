"""The "rapl" source (powercap sysfs) against a fake powercap tree: discovery, naming, totals, values, errors."""

from __future__ import annotations

import shutil

import pytest

from fastmeter import _core
from fastmeter.reference.counters import counter_delta
from tests.emulators.powercap import DEFAULT_MAX_ENERGY_RANGE_UJ, FakePowercap
from tests.emulators.unprivileged import probe_unprivileged, world_readable_dir


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = FakePowercap(tmp_path)
    monkeypatch.setenv("FASTMETER_POWERCAP_ROOT", str(f.root))
    return f


def by_name(probe: dict) -> dict[str, tuple[dict, dict]]:
    return {c["name"]: (c, r) for c, r in zip(probe["channels"], probe["readings"])}


def server(fake: FakePowercap) -> None:
    """Two sockets, each with core and dram subzones; no psys (a typical Xeon server)."""
    p0 = fake.add_package(0, energy_uj=1_000_001)
    fake.add_subzone(p0, 0, "core", energy_uj=500_002)
    fake.add_subzone(p0, 1, "dram", energy_uj=300_003, max_energy_range_uj=65_712_999_613)
    p1 = fake.add_package(1, energy_uj=2_000_004)
    fake.add_subzone(p1, 0, "core", energy_uj=700_005)
    fake.add_subzone(p1, 1, "dram", energy_uj=400_006, max_energy_range_uj=65_712_999_613)


def test_server_discovery_names_units_and_values(fake):
    server(fake)
    p = _core.probe("rapl", {})
    names = [c["name"] for c in p["channels"]]
    assert names == ["cpu0-package", "cpu0-core", "cpu0-dram", "cpu1-package", "cpu1-core", "cpu1-dram"]
    ch = by_name(p)
    expected = {
        "cpu0-package": ("package", "intel-rapl:0", 1_000_001, DEFAULT_MAX_ENERGY_RANGE_UJ, True),
        "cpu0-core": ("core", "intel-rapl:0:0", 500_002, DEFAULT_MAX_ENERGY_RANGE_UJ, False),
        "cpu0-dram": ("dram", "intel-rapl:0:1", 300_003, 65_712_999_613, True),
        "cpu1-package": ("package", "intel-rapl:1", 2_000_004, DEFAULT_MAX_ENERGY_RANGE_UJ, True),
        "cpu1-core": ("core", "intel-rapl:1:0", 700_005, DEFAULT_MAX_ENERGY_RANGE_UJ, False),
        "cpu1-dram": ("dram", "intel-rapl:1:1", 400_006, 65_712_999_613, True),
    }
    for name, (domain, device, raw, range_uj, in_total) in expected.items():
        c, r = ch[name]
        assert (c["domain"], c["device"], c["in_total"]) == (domain, device, in_total), name
        assert c["has_counter"] and not c["has_power"]
        assert c["counter_unit_j"] == 1e-6
        assert c["counter_range"] == range_uj
        assert r == {"counter_raw": raw, "power_w": None, "failed": False, "error": ""}


def test_psys_covers_packages_and_dram(fake):
    p0 = fake.add_package(0, energy_uj=10)
    fake.add_subzone(p0, 0, "core", energy_uj=11)
    fake.add_subzone(p0, 1, "uncore", energy_uj=12)
    fake.add_subzone(p0, 2, "dram", energy_uj=13)
    fake.add_psys(1, energy_uj=14)
    ch = by_name(_core.probe("rapl", {}))
    assert list(ch) == ["cpu0-package", "cpu0-core", "cpu0-uncore", "cpu0-dram", "psys"]
    in_total = {n: c["in_total"] for n, (c, _) in ch.items()}
    assert in_total == {
        "cpu0-package": False,
        "cpu0-core": False,
        "cpu0-uncore": False,
        "cpu0-dram": False,
        "psys": True,
    }
    assert ch["psys"][0]["domain"] == "psys" and ch["psys"][0]["device"] == "intel-rapl:1"
    assert [r["counter_raw"] for _, r in ch.values()] == [10, 11, 12, 13, 14]


def test_enabled_zero_is_still_measured(fake):
    # `enabled` is the PL1 power-limit switch, not the counter's: the energy counts either way.
    p0 = fake.add_package(0, energy_uj=42, enabled=0)
    fake.add_subzone(p0, 0, "dram", energy_uj=43, enabled=0)
    ch = by_name(_core.probe("rapl", {}))
    assert {n: r["counter_raw"] for n, (_, r) in ch.items()} == {"cpu0-package": 42, "cpu0-dram": 43}


def test_mmio_duplicate_of_a_package_is_skipped(fake):
    fake.add_package(0, energy_uj=5)
    fake.add_package(0, energy_uj=999, mmio=True)
    p = _core.probe("rapl", {})
    assert [(c["name"], c["device"]) for c in p["channels"]] == [("cpu0-package", "intel-rapl:0")]
    assert p["readings"][0]["counter_raw"] == 5


def test_mmio_only_package_is_used_and_zones_without_counter_skipped(fake):
    fake.add_package(0, energy_uj=77, mmio=True)
    fake.add_package(1, has_energy=False)  # power-limit-only zone: no energy_uj
    p = _core.probe("rapl", {})
    assert [(c["name"], c["device"]) for c in p["channels"]] == [("cpu0-package", "intel-rapl-mmio:0")]
    assert p["readings"][0]["counter_raw"] == 77


def test_multi_die_packages_get_die_in_name(fake):
    d0 = fake.add_package(0, package=0, die=0, energy_uj=1)
    fake.add_package(1, package=0, die=1, energy_uj=2)
    fake.add_subzone(d0, 0, "dram", energy_uj=3)
    names = [c["name"] for c in _core.probe("rapl", {})["channels"]]
    assert sorted(names) == ["cpu0-die0-dram", "cpu0-die0-package", "cpu0-die1-package"]


def test_package_selection(fake):
    server(fake)
    fake.add_psys(2, energy_uj=9)
    names = [c["name"] for c in _core.probe("rapl", {"packages": "1"})["channels"]]
    assert names == ["cpu1-package", "cpu1-core", "cpu1-dram"]
    p = _core.probe("rapl", {"packages": " 0 , psys"})
    assert [(c["name"], c["in_total"]) for c in p["channels"]] == [
        ("cpu0-package", False),
        ("cpu0-core", False),
        ("cpu0-dram", False),
        ("psys", True),
    ]


@pytest.mark.parametrize(
    ("packages", "needle"),
    [("3", "package 3 not found"), ("0,x", "item 'x'"), ("0,", "item ''"), ("psys", "no psys zone")],
)
def test_bad_package_selection_is_a_config_error(fake, packages, needle):
    server(fake)
    with pytest.raises(_core.SourceError) as e:
        _core.probe("rapl", {"packages": packages})
    message, kind = e.value.args
    assert kind == "config"
    assert needle in message


def test_counter_text_is_parsed_exactly(fake):
    top = 2**64 - 1
    fake.add_package(0, energy_uj=0, max_energy_range_uj=top)
    fake.energy_uj_path("intel-rapl:0").write_text(f"  {top}\t\n")
    p = _core.probe("rapl", {})
    assert p["readings"][0]["counter_raw"] == top
    assert p["channels"][0]["counter_range"] == top


@pytest.mark.parametrize("text", ["", "12a\n", "-5\n", str(2**64) + "\n"])
def test_unparsable_counter_zone_is_skipped(fake, text):
    fake.add_package(0, energy_uj=1)
    fake.add_package(1, energy_uj=2)
    fake.energy_uj_path("intel-rapl:0").write_text(text)
    p = _core.probe("rapl", {})
    assert [(c["name"], r["counter_raw"]) for c, r in zip(p["channels"], p["readings"])] == [
        ("cpu1-package", 2)
    ]


def test_no_zones_is_unavailable_and_says_why(fake, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("FASTMETER_POWERCAP_ROOT", str(empty))
    with pytest.raises(_core.SourceError) as e:
        _core.probe("rapl", {})
    message, kind = e.value.args
    assert kind == "unavailable"
    assert f"no powercap RAPL zones (intel-rapl:*) under {empty}" in message
    assert "container" in message


def test_missing_max_energy_range_is_unavailable(fake):
    fake.add_package(0, energy_uj=1)
    (fake.root / "intel-rapl:0" / "max_energy_range_uj").unlink()
    with pytest.raises(_core.SourceError) as e:
        _core.probe("rapl", {})
    assert e.value.args[1] == "unavailable"
    assert "max_energy_range_uj" in e.value.args[0]


def test_unreadable_energy_uj_is_a_permission_error_with_the_fix():
    base = world_readable_dir()
    try:
        fake = FakePowercap(base)
        fake.add_package(0, energy_uj=1)
        fake.deny_energy_uj("intel-rapl:0")
        out = probe_unprivileged("rapl", {}, {"FASTMETER_POWERCAP_ROOT": str(fake.root)})
    finally:
        shutil.rmtree(base)
    assert out["ok"] is False
    assert out["kind"] == "permission"
    file = f"{fake.root}/intel-rapl:0/energy_uj"
    assert f"cannot read {file}: Permission denied" in out["message"]
    assert f"sudo chmod o+r {file}" in out["message"]
    assert "CVE-2020-8694" in out["message"] and "root" in out["message"]


def test_counter_progress_and_wraparound_between_reads(fake):
    range_uj = 1_000_000
    fake.add_package(0, energy_uj=999_000, max_energy_range_uj=range_uj)
    first = _core.probe("rapl", {})["readings"][0]["counter_raw"]
    fake.set_energy_uj("intel-rapl:0", 999_750)  # +750 uJ
    second = _core.probe("rapl", {})["readings"][0]["counter_raw"]
    fake.set_energy_uj("intel-rapl:0", 1_250)  # wrapped: +250 to the top, then +1250
    third = _core.probe("rapl", {})["readings"][0]["counter_raw"]
    assert (first, second, third) == (999_000, 999_750, 1_250)
    assert _core.counter_delta(first, second, range_uj) == 750
    assert _core.counter_delta(second, third, range_uj) == 1_500  # = cur + range - prev (FACTS.md)
    assert counter_delta(second, third, range_uj) == 1_500
