"""A fake Linux powercap tree for the "rapl" source, laid out like the kernel's.

Zones are real directories under ``<base>/devices/intel-rapl`` (subzones nested in their package), and the
class directory ``<base>/powercap`` holds one symlink per zone, as ``/sys/class/powercap`` does. Point the source
at it with ``FASTMETER_POWERCAP_ROOT=<fake.root>``.

``set_energy_uj`` rewrites a counter in place (same inode), so a source that opened the file once sees the new
value on its next pread, just as with sysfs.

Permission: the kernel makes ``energy_uj`` root-only. ``deny_energy_uj`` sets mode 000; since root ignores file
modes, probe such a tree with ``tests.emulators.unprivileged.probe_unprivileged`` (see there).
"""

from __future__ import annotations

import os
from pathlib import Path

# 2^32 ticks of 61.035 uJ (ESU 14), as a typical Intel package reports it.
DEFAULT_MAX_ENERGY_RANGE_UJ = 262143328850


class FakePowercap:
    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.devices = self.base / "devices" / "intel-rapl"
        self.root = self.base / "powercap"
        self.devices.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self._dirs: dict[str, Path] = {}

    def _zone(
        self,
        dir_name: str,
        parent: str | None,
        name: str,
        energy_uj: int,
        max_energy_range_uj: int,
        enabled: int,
        has_energy: bool,
    ) -> str:
        where = self._dirs[parent] if parent else self.devices
        d = where / dir_name
        d.mkdir()
        (d / "name").write_text(name + "\n")
        (d / "enabled").write_text(f"{enabled}\n")
        (d / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        if has_energy:
            (d / "energy_uj").write_text(f"{energy_uj}\n")
        (self.root / dir_name).symlink_to(os.path.relpath(d, self.root))
        self._dirs[dir_name] = d
        return dir_name

    def add_package(
        self,
        index: int,
        package: int | None = None,
        energy_uj: int = 0,
        max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
        die: int | None = None,
        enabled: int = 1,
        mmio: bool = False,
        has_energy: bool = True,
    ) -> str:
        """Top-level zone intel-rapl:<index> (or intel-rapl-mmio:<index>) named package-<package>[-die-<die>]."""
        pkg = index if package is None else package
        name = f"package-{pkg}" + (f"-die-{die}" if die is not None else "")
        prefix = "intel-rapl-mmio" if mmio else "intel-rapl"
        return self._zone(
            f"{prefix}:{index}", None, name, energy_uj, max_energy_range_uj, enabled, has_energy
        )

    def add_subzone(
        self,
        parent: str,
        sub: int,
        name: str,
        energy_uj: int = 0,
        max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
        enabled: int = 1,
    ) -> str:
        """Subzone <parent>:<sub> named core, uncore or dram."""
        return self._zone(f"{parent}:{sub}", parent, name, energy_uj, max_energy_range_uj, enabled, True)

    def add_psys(
        self, index: int, energy_uj: int = 0, max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ
    ) -> str:
        return self._zone(f"intel-rapl:{index}", None, "psys", energy_uj, max_energy_range_uj, 1, True)

    def energy_uj_path(self, dir_name: str) -> Path:
        return self._dirs[dir_name] / "energy_uj"

    def set_energy_uj(self, dir_name: str, energy_uj: int) -> None:
        """Rewrite the counter in place (the inode stays, as sysfs's does)."""
        with open(self.energy_uj_path(dir_name), "r+") as f:
            f.truncate(0)
            f.write(f"{energy_uj}\n")

    def deny_energy_uj(self, dir_name: str) -> None:
        self.energy_uj_path(dir_name).chmod(0o000)
