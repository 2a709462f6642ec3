"""CPU fingerprint read from fake sysfs/procfs trees (FASTMETER_SYSFS_ROOT / FASTMETER_PROCFS_ROOT)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastmeter.env.cpu import collect_cpu, parse_cpu_model
from fastmeter.env.readers import is_unavailable, parse_cpu_list


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def build_cpu_tree(
    root: Path, *, sockets: int, cores: int, threads: int, governors: list[str] | None
) -> None:
    """A host with `sockets` x `cores` x `threads` logical CPUs, one NUMA node per socket, and one cpufreq
    policy per governor given (policy i at 1000*(i+1) MHz)."""
    cpu_dir = root / "sys/devices/system/cpu"
    n = sockets * cores * threads
    _write(cpu_dir / "online", f"0-{n - 1}")
    for cpu in range(n):
        socket, rest = divmod(cpu, cores * threads)
        _write(cpu_dir / f"cpu{cpu}/topology/physical_package_id", str(socket))
        _write(cpu_dir / f"cpu{cpu}/topology/core_id", str(rest % cores))
    _write(cpu_dir / "smt/control", "on" if threads > 1 else "off")
    for i, governor in enumerate(governors or []):
        _write(cpu_dir / f"cpufreq/policy{i}/scaling_governor", governor)
        _write(cpu_dir / f"cpufreq/policy{i}/scaling_cur_freq", str(1_000_000 * (i + 1)))
    _write(root / "sys/devices/system/node/online", f"0-{sockets - 1}" if sockets > 1 else "0")
    _write(root / "proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Fake Xeon 9999\n")


@pytest.fixture
def host_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FASTMETER_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("FASTMETER_PROCFS_ROOT", str(tmp_path / "proc"))
    return tmp_path


def test_topology_governors_and_frequencies_from_fake_tree(host_root: Path) -> None:
    build_cpu_tree(host_root, sockets=2, cores=4, threads=2, governors=["performance", "powersave"])
    controlled, observed = collect_cpu()
    assert controlled == {
        "model": "Fake Xeon 9999",
        "sockets": 2,
        "cores": 8,
        "logical_cpus": 16,
        "smt": "on",
        "numa_nodes": 2,
        "governors": {"policy0": "performance", "policy1": "powersave"},
    }
    assert observed == {"frequency_khz": {"policy0": 1_000_000, "policy1": 2_000_000}}


def test_policies_sorted_numerically(host_root: Path) -> None:
    build_cpu_tree(host_root, sockets=1, cores=1, threads=1, governors=["performance"] * 11)
    controlled, _ = collect_cpu()
    assert list(controlled["governors"]) == [f"policy{i}" for i in range(11)]


def test_smt_inferred_when_control_file_missing(host_root: Path) -> None:
    build_cpu_tree(host_root, sockets=1, cores=2, threads=2, governors=None)
    (host_root / "sys/devices/system/cpu/smt/control").unlink()
    controlled, _ = collect_cpu()
    assert (controlled["cores"], controlled["logical_cpus"], controlled["smt"]) == (2, 4, "on")


def test_missing_cpufreq_and_cpuinfo_say_why(host_root: Path) -> None:
    build_cpu_tree(host_root, sockets=1, cores=2, threads=1, governors=None)
    (host_root / "proc/cpuinfo").unlink()
    controlled, observed = collect_cpu()
    assert controlled["governors"].startswith("unavailable: cannot list ")
    assert "cpufreq" in controlled["governors"]
    assert observed["frequency_khz"] == controlled["governors"]
    assert is_unavailable(controlled["model"]) and "cpuinfo" in controlled["model"]
    assert controlled["cores"] == 2


def test_empty_sysfs_reports_every_item_unavailable(host_root: Path) -> None:
    controlled, _ = collect_cpu()
    for key in ("sockets", "cores", "logical_cpus", "smt", "numa_nodes", "governors", "model"):
        assert is_unavailable(controlled[key]), key


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", [0]), ("0-3", [0, 1, 2, 3]), ("0-1,4,6-7\n", [0, 1, 4, 6, 7]), ("", [])],
)
def test_parse_cpu_list(text: str, expected: list[int]) -> None:
    assert parse_cpu_list(text) == expected


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (
            "processor\t: 0\nmodel name\t: AMD EPYC 9654\nprocessor\t: 1\nmodel name\t: AMD EPYC 9654\n",
            "AMD EPYC 9654",
        ),
        ("processor\t: 0\nBogoMIPS\t: 50.00\nHardware\t: Qualcomm Fake\n", "Qualcomm Fake"),
        (
            "Processor\t: AArch64 Processor rev 4 (aarch64)\nprocessor\t: 0\n",
            "AArch64 Processor rev 4 (aarch64)",
        ),
        ("processor\t: 0\nBogoMIPS\t: 50.00\n", None),
    ],
)
def test_parse_cpu_model(cpuinfo: str, expected: str | None) -> None:
    assert parse_cpu_model(cpuinfo) == expected
