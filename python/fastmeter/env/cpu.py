"""CPU part of the fingerprint: model, topology, SMT, NUMA nodes, cpufreq governor and frequency per policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastmeter.env.readers import (
    parse_cpu_list,
    procfs_root,
    read_or_unavailable,
    read_text,
    sysfs_root,
    unavailable,
)


def parse_cpu_model(cpuinfo: str) -> str | None:
    """The first "model name" in /proc/cpuinfo text (x86), else "Hardware"/"Processor" (some Arm kernels)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "processor"):
        value = fields.get(key, "")
        # On x86 "processor" is the CPU index: a bare number is not a model.
        if value and not value.isdigit():
            return value
    return None


def _model() -> str:
    path = procfs_root() / "cpuinfo"
    try:
        model = parse_cpu_model(read_text(path))
    except OSError as exc:
        return unavailable(f"cannot read {path}: {exc.strerror or exc}")
    return model if model is not None else unavailable(f"no 'model name' line in {path}")


def _topology(cpu_dir: Path) -> dict[str, Any]:
    """Sockets, physical cores, logical CPUs and SMT state from sysfs topology files."""
    online_path = cpu_dir / "online"
    try:
        online = parse_cpu_list(read_text(online_path))
    except (OSError, ValueError) as exc:
        why = unavailable(f"cannot read {online_path}: {exc}")
        return {"sockets": why, "cores": why, "logical_cpus": why, "smt": why}
    packages: set[str] = set()
    cores: set[tuple[str, str]] = set()
    topo_error = None
    for cpu in online:
        topo = cpu_dir / f"cpu{cpu}" / "topology"
        try:
            package = read_text(topo / "physical_package_id")
            cores.add((package, read_text(topo / "core_id")))
            packages.add(package)
        except OSError as exc:
            topo_error = unavailable(f"cannot read {topo}: {exc.strerror or exc}")
            break
    smt_control = cpu_dir / "smt" / "control"
    try:
        smt = read_text(smt_control)
    except OSError:
        # Older kernels lack smt/control: infer SMT from more logical CPUs than cores.
        smt = topo_error or ("on" if len(online) > len(cores) else "off")
    return {
        "sockets": topo_error or len(packages),
        "cores": topo_error or len(cores),
        "logical_cpus": len(online),
        "smt": smt,
    }


def _policies(cpu_dir: Path) -> list[Path] | str:
    cpufreq = cpu_dir / "cpufreq"
    try:
        policies = [p for p in cpufreq.iterdir() if p.name.startswith("policy")]
    except OSError as exc:
        return unavailable(f"cannot list {cpufreq}: {exc.strerror or exc} (no cpufreq driver, e.g. in a VM)")
    if not policies:
        return unavailable(f"no cpufreq policies under {cpufreq} (no cpufreq driver, e.g. in a VM)")
    return sorted(policies, key=lambda p: int(p.name[len("policy") :] or 0))


def _numa_nodes() -> int | str:
    path = sysfs_root() / "devices" / "system" / "node" / "online"
    try:
        return len(parse_cpu_list(read_text(path)))
    except (OSError, ValueError) as exc:
        return unavailable(f"cannot read {path}: {exc}")


def collect_cpu() -> tuple[dict[str, Any], dict[str, Any]]:
    """(controlled, observed) CPU items: governors are controlled, current frequencies observed."""
    cpu_dir = sysfs_root() / "devices" / "system" / "cpu"
    policies = _policies(cpu_dir)
    if isinstance(policies, str):
        governors: dict[str, str] | str = policies
        frequency_khz: dict[str, Any] | str = policies
    else:
        governors = {p.name: read_or_unavailable(p / "scaling_governor") for p in policies}
        frequency_khz = {}
        for p in policies:
            text = read_or_unavailable(p / "scaling_cur_freq")
            frequency_khz[p.name] = int(text) if text.isdigit() else text
    controlled = {
        "model": _model(),
        **_topology(cpu_dir),
        "numa_nodes": _numa_nodes(),
        "governors": governors,
    }
    return controlled, {"frequency_khz": frequency_khz}
