"""Value checks of the bench config: each knows the type it accepts, how to say so, and the caps that keep a typo
from eating the machine. A check converts a raw TOML (or flag) value or raises Invalid with what is allowed; the
caller adds where the value came from (file and key, or flag)."""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Caps: far above any real benchmark, low enough that a slip of the finger fails at once instead of at run time.
# Prompts are built in memory, one per request: `input_tokens = 100000000` took 1.9 GB before it was capped.
MAX_PROMPT_TOKENS = 1_000_000
# Sent to the server as a JSON integer and stored in requests.arrow as int64; no model generates more per request.
MAX_OUTPUT_TOKENS = 1_000_000
# Every request keeps a record (timestamps, chunk times) in memory until the run ends.
MAX_REQUESTS = 10_000_000
# Each concurrent request holds an open connection (a file descriptor).
MAX_CONCURRENCY = 100_000
# A week: longer runs belong in separate run directories (a crash would lose less).
MAX_SECONDS = 7 * 24 * 3600.0
# The sampler's period: 50 µs is the fastest it keeps (docs/architecture.md); 10 s is slower than any sensor update.
MIN_PERIOD_US = 50
MAX_PERIOD_US = 10_000_000
MAX_SEED = 2**63 - 1

_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]+$")


class Invalid(ValueError):
    """A value is not allowed; the message says what is (the caller prefixes where it came from)."""


@dataclass(frozen=True)
class Check(ABC):
    """Base: `metavar` for help text, `allowed` as words ("an integer from 1 to 10")."""

    metavar: str
    allowed: str

    @abstractmethod
    def __call__(self, v: Any) -> Any:
        """The value, converted, or raise `Invalid`."""

    def fail(self, v: Any) -> Invalid:
        got = repr(v)
        return Invalid(f"must be {self.allowed}; got {got if len(got) <= 60 else got[:57] + '...'}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Int(Check):
    lo: int = 0
    hi: int | None = None

    def __call__(self, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < self.lo or (self.hi is not None and v > self.hi):
            raise self.fail(v)
        return v


def integer(lo: int, hi: int | None = None, why: str = "") -> Int:
    text = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    return Int("INT", text + (f" ({why})" if why else ""), lo, hi)


@dataclass(frozen=True)
class Number(Check):
    """A finite number in [lo, hi] (lo excluded when `lo_open`); "inf" (or a TOML inf) only when `allow_inf`."""

    lo: float = 0.0
    lo_open: bool = False
    hi: float | None = None
    allow_inf: bool = False

    def __call__(self, v: Any) -> float:
        if self.allow_inf and (v == "inf" or (isinstance(v, float) and v == math.inf)):
            return math.inf
        if not _is_number(v) or abs(v) > 1e300 or not math.isfinite(v):  # TOML integers have no size limit
            raise self.fail(v)
        if (v <= self.lo if self.lo_open else v < self.lo) or (self.hi is not None and v > self.hi):
            raise self.fail(v)
        return float(v)


def number(lo: float = 0.0, *, lo_open: bool = False, hi: float | None = None, allow_inf: bool = False,
           why: str = "") -> Number:
    text = f"a finite number {'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
    text += ' or "inf"' if allow_inf else ""
    return Number("NUMBER", text + (f" ({why})" if why else ""), lo, lo_open, hi, allow_inf)


@dataclass(frozen=True)
class Choice(Check):
    values: tuple[str, ...] = ()

    def __call__(self, v: Any) -> str:
        if not isinstance(v, str) or v not in self.values:
            raise self.fail(v)
        return v


def choice(*values: str) -> Choice:
    return Choice("|".join(values), f"one of {', '.join(values)}", values)


@dataclass(frozen=True)
class Text(Check):
    def __call__(self, v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.fail(v)
        return v


TEXT = Text("TEXT", "a non-empty string")
PATH = Text("PATH", "a file or directory path")


@dataclass(frozen=True)
class Bool(Check):
    def __call__(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise self.fail(v)
        return v


BOOL = Bool("BOOL", "true or false")


@dataclass(frozen=True)
class Url(Check):
    def __call__(self, v: Any) -> str:
        if not isinstance(v, str):
            raise self.fail(v)
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 (raises ValueError on a port that is not a number in 0..65535)
        except ValueError:
            raise self.fail(v) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(v)
        return v


URL = Url("URL", "an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000")


@dataclass(frozen=True)
class Table(Check):
    def __call__(self, v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(v)
        return v


TABLE = Table("TABLE", "a table (TOML: { key = value, ... })")


@dataclass(frozen=True)
class ListOf(Check):
    """A list (non-empty unless `allow_empty`); each item checked by `item` (its error names the index)."""

    item: Check = TEXT
    allow_empty: bool = False

    def __call__(self, v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list) or not (v or self.allow_empty):
            raise self.fail(v)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(self.item(x))
            except Invalid as exc:
                raise Invalid(f"[{i}] {exc}") from None
        return tuple(out)


def list_of(item: Check, plural: str, allow_empty: bool = False) -> ListOf:
    size = "a list" if allow_empty else "a non-empty list"
    return ListOf("LIST", f"{size} of {plural} (a flag takes them comma-separated)", item, allow_empty)


@dataclass(frozen=True)
class Gpu(Check):
    """A GPU index (a non-negative integer, also as text: flags arrive as text) or an NVML UUID (GPU-... / MIG-...)."""

    def __call__(self, v: Any) -> int | str:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if isinstance(v, str) and _GPU_UUID.match(v.strip()):
            return v.strip()
        raise self.fail(v)


GPU = Gpu("GPU", "a GPU index (an integer >= 0) or a GPU UUID (GPU-...)")


# --- server launch (fastmeter.launch) ---
@dataclass(frozen=True)
class TextTable(Check):
    """A table of text values (environment variables: NAME = "value")."""

    def __call__(self, v: Any) -> dict[str, str]:
        if not isinstance(v, dict) or not all(isinstance(k, str) and k and isinstance(x, str) for k, x in v.items()):
            raise self.fail(v)
        return dict(v)


TEXT_TABLE = TextTable("TABLE", 'a table of strings (TOML: { NAME = "value", ... })')


@dataclass(frozen=True)
class Nested(Check):
    """A sub-table (e.g. [server.container]) checked key by key into `cls`, a frozen dataclass whose fields carry an
    `option` (config_types.opt) like the top-level tables; a key left unset (or None in a dumped config) keeps its
    default."""

    cls: type | None = None

    def __call__(self, v: Any) -> Any:
        import dataclasses

        if not isinstance(v, dict) or self.cls is None:
            raise self.fail(v)
        fields = {f.name: f for f in dataclasses.fields(self.cls)}
        unknown = sorted(str(k) for k in v if k not in fields)
        if unknown:
            raise Invalid(f"has unknown key {unknown[0]!r}; allowed keys: {', '.join(fields)}")
        values = {}
        for key, f in fields.items():
            if v.get(key) is None:
                if f.default is dataclasses.MISSING:
                    raise Invalid(f"needs key {key!r} ({f.metadata['option'].help})")
                continue
            try:
                values[key] = f.metadata["option"].check(v[key])
            except Invalid as exc:
                raise Invalid(f".{key} {exc}") from None
        return self.cls(**values)


# --- end server launch ---
