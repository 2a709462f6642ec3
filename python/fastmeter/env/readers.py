"""Where the environment is read from, and how a missing item is reported.

The sysfs and procfs roots are overridable (FASTMETER_SYSFS_ROOT, FASTMETER_PROCFS_ROOT) so tests point the
real readers at fake trees instead of patching file access.
"""

from __future__ import annotations

import os
from pathlib import Path

UNAVAILABLE_PREFIX = "unavailable: "


def sysfs_root() -> Path:
    """The sysfs mount to read (FASTMETER_SYSFS_ROOT, default /sys)."""
    return Path(os.environ.get("FASTMETER_SYSFS_ROOT", "/sys"))


def procfs_root() -> Path:
    """The procfs mount to read (FASTMETER_PROCFS_ROOT, default /proc)."""
    return Path(os.environ.get("FASTMETER_PROCFS_ROOT", "/proc"))


def unavailable(why: str) -> str:
    """The value of an item that could not be read: a string that says why."""
    return UNAVAILABLE_PREFIX + why


def is_unavailable(value: object) -> bool:
    return isinstance(value, str) and value.startswith(UNAVAILABLE_PREFIX)


def read_text(path: Path) -> str:
    """The stripped contents of a small text file; raises OSError when it cannot be read."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().strip()


def read_or_unavailable(path: Path) -> str:
    """The stripped contents of `path`, or "unavailable: <why>" naming the path and the OS error."""
    try:
        return read_text(path)
    except OSError as exc:
        return unavailable(f"cannot read {path}: {exc.strerror or exc}")


def parse_cpu_list(text: str) -> list[int]:
    """Expand a kernel CPU/node list such as "0-3,8,10-11" into sorted ids.

    >>> parse_cpu_list("0-2,5")
    [0, 1, 2, 5]
    """
    ids: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            ids.update(range(int(lo), int(hi) + 1))
        else:
            ids.add(int(lo))
    return sorted(ids)
