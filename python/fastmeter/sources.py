"""Which power sources exist on this machine, and how their channels are named."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fastmeter import _core
from fastmeter.errors import ConfigError

SOURCE_NAMES: tuple[str, ...] = tuple(_core.source_names())
HARDWARE_SOURCES: tuple[str, ...] = tuple(n for n in SOURCE_NAMES if n != "synthetic")


@dataclass(frozen=True)
class Channel:
    """One measured quantity: "gpu0", "cpu0-package", "cpu0-dram", "psys", "synthetic0"."""

    name: str
    device: str
    domain: str
    has_counter: bool
    has_power: bool
    in_total: bool  # False when another channel already covers this energy (subzones, packages under psys)

    @classmethod
    def from_core(cls, d: Mapping[str, object]) -> Channel:
        return cls(
            name=str(d["name"]),
            device=str(d["device"]),
            domain=str(d["domain"]),
            has_counter=bool(d["has_counter"]),
            has_power=bool(d["has_power"]),
            in_total=bool(d["in_total"]),
        )


@dataclass(frozen=True)
class SourceInfo:
    name: str
    available: bool
    reason: str  # why not, with the fix; "" when available
    kind: str = ""  # "unavailable" | "permission" | "config" when not available
    channels: list[Channel] = field(default_factory=list)
    power_w: dict[str, float | None] = field(default_factory=dict)  # one reading per channel, when available
    # Parts an available source leaves out, one line each with the reason and fix (RAPL zones this user may not
    # read in "auto" mode).
    left_out: list[str] = field(default_factory=list)


def check_source_name(name: str) -> None:
    if name not in SOURCE_NAMES:
        raise ConfigError(f"unknown source {name!r}; valid sources: {', '.join(SOURCE_NAMES)}")


def probe_source(name: str, options: Mapping[str, str] | None = None) -> SourceInfo:
    """Open one source, read it once, close it."""
    check_source_name(name)
    try:
        r = _core.probe(name, {k: str(v) for k, v in (options or {}).items()})
    except _core.SourceError as e:
        message, kind = e.args
        return SourceInfo(name, False, str(message), str(kind))
    chans = [Channel.from_core(c) for c in r["channels"]]
    power = {c.name: rd["power_w"] for c, rd in zip(chans, r["readings"])}
    left_out = [str(x) for x in r["left_out"]]
    return SourceInfo(name, True, "", "permission" if left_out else "", chans, power, left_out)


def auto_options(name: str, options: Mapping[str, str] | None) -> dict[str, str]:
    """Options a source gets in "auto" mode. rapl leaves out the zones this user may not read and names them
    (e.g. dram stays measured when the package zone is root-only) instead of dropping the whole source; a source
    asked for by name keeps failing on any unreadable zone, because hardware asked for is hardware required."""
    out = {k: str(v) for k, v in (options or {}).items()}
    if name == "rapl":
        out.setdefault("skip_denied", "1")
    return out


def available_sources(options: Mapping[str, Mapping[str, str]] | None = None) -> list[SourceInfo]:
    """Every source fastmeter knows, available or not and why."""
    options = options or {}
    return [probe_source(n, options.get(n)) for n in SOURCE_NAMES]


def permission_warnings(skipped: list[SourceInfo]) -> list[str]:
    """Hardware that is present but not readable by this user (RAPL since CVE-2020-8694) would silently drop out
    of an "auto" measurement: one line each, with the fix (a partly readable source: one line per part left out)."""
    out: list[str] = []
    for i in skipped:
        if i.kind != "permission":
            continue
        if i.available:
            out += [f"{i.name} is measured without {part}" for part in i.left_out]
        else:
            out.append(f"{i.name} is not measured: {i.reason}")
    return out
