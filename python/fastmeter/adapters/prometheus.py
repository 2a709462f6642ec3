"""Scrape a server's Prometheus /metrics into rows (t_ns, name, labels, value) on CLOCK_MONOTONIC ns.

``parse_exposition`` is the pure parser (Prometheus text format 0.0.4, which OpenMetrics text also satisfies
for the lines we read): ``# HELP`` / ``# TYPE`` / other comments are skipped; a sample is
``name{label="value",...} value [timestamp]``; label values unescape ``\\\\``, ``\\"`` and ``\\n``; values may be
``+Inf``, ``-Inf`` or ``NaN``. Histograms and summaries arrive as their ``_bucket``/``_sum``/``_count`` samples and
are kept as such (the ``le``/``quantile`` label stays in ``labels``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastmeter.adapters.http import HttpClient, TransportError
from fastmeter.errors import FastmeterError
from fastmeter.timeouts import within

# Metric-name prefixes of the servers we know: vLLM, TGI, SGLang, llama.cpp.
DEFAULT_PREFIXES = ("vllm:", "tgi_", "sglang:", "llamacpp:")
# A scrape that takes longer than this is abandoned (counted as an error): a stuck server must not hang the run's
# end. /metrics of a busy vLLM answers in milliseconds; 2 s leaves room for a loaded host.
DEFAULT_SCRAPE_TIMEOUT_S = 2.0

_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

if TYPE_CHECKING:
    from typing_extensions import Self


class ExpositionError(FastmeterError, ValueError):
    """A /metrics line does not follow the Prometheus text format."""


@dataclass(frozen=True, slots=True)
class MetricRow:
    t_ns: int
    name: str
    labels: dict[str, str]
    value: float


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Parse a whole exposition; returns (sample name, labels, value) in document order."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        try:
            out.append(_parse_sample(line))
        except (ValueError, IndexError) as exc:
            raise ExpositionError(f"/metrics line {lineno} is not a valid sample ({exc}): {raw[:200]!r}") from None
    return out


def _parse_sample(line: str) -> tuple[str, dict[str, str], float]:
    brace = line.find("{")
    space = _first_space(line)
    labels: dict[str, str] = {}
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        pos = _parse_labels(line, brace + 1, labels)
        rest = line[pos:]
    else:
        if space == -1:
            raise ValueError("no value")
        name, rest = line[:space], line[space:]
    if not name or not _is_name(name):
        raise ValueError(f"bad metric name {name!r}")
    fields = rest.split()
    if not 1 <= len(fields) <= 2:
        raise ValueError("expected a value and an optional timestamp")
    return name, labels, float(fields[0])  # float() reads +Inf, -Inf, NaN and exponents


def _first_space(line: str) -> int:
    for i, ch in enumerate(line):
        if ch in " \t":
            return i
    return -1


def _is_name(name: str) -> bool:
    first = name[0]
    if not (first.isascii() and (first.isalpha() or first in "_:")):
        return False
    return all(ch.isascii() and (ch.isalnum() or ch in "_:") for ch in name)


def _parse_labels(line: str, pos: int, labels: dict[str, str]) -> int:
    """Parse ``k="v",...}`` starting at ``pos``; return the index after the closing brace."""
    n = len(line)
    while True:
        while pos < n and line[pos] in " \t":
            pos += 1
        if line[pos] == "}":
            return pos + 1
        eq = line.index("=", pos)
        key = line[pos:eq].strip()
        if not key or not _is_name(key):
            raise ValueError(f"bad label name {key!r}")
        pos = eq + 1
        while line[pos] in " \t":
            pos += 1
        if line[pos] != '"':
            raise ValueError(f"label {key} value is not quoted")
        pos += 1
        chars: list[str] = []
        while line[pos] != '"':
            ch = line[pos]
            if ch == "\\":
                pos += 1
                ch = _ESCAPES.get(line[pos], "\\" + line[pos])
            chars.append(ch)
            pos += 1
        labels[key] = "".join(chars)
        pos += 1
        while line[pos] in " \t":
            pos += 1
        if line[pos] == ",":
            pos += 1
        elif line[pos] != "}":
            raise ValueError(f"expected ',' or '}}' after label {key}")


def family_of(sample_name: str) -> str:
    """``vllm:e2e_request_latency_seconds_bucket`` -> ``vllm:e2e_request_latency_seconds``."""
    for suffix in _SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


def select(
    samples: Iterable[tuple[str, dict[str, str], float]],
    t_ns: int,
    prefixes: tuple[str, ...] = DEFAULT_PREFIXES,
    names: frozenset[str] | None = None,
) -> list[MetricRow]:
    """Keep samples whose name starts with one of ``prefixes``, or whose sample or family name is in ``names``."""
    rows = []
    for name, labels, value in samples:
        wanted = name.startswith(prefixes) or (names is not None and (name in names or family_of(name) in names))
        if wanted:
            rows.append(MetricRow(t_ns, name, labels, value))
    return rows


class PrometheusScraper:
    """Background scrape every ``interval_s`` on absolute deadlines; use as ``async with`` around a load run.

    A failed scrape (server busy, connection refused, no answer within ``timeout_s``) is counted in ``errors``
    with its message kept in ``last_error``; the run goes on. ``t_ns`` is taken when the response body has arrived.
    Every scrape, the final one included, is bounded by ``timeout_s``.
    """

    def __init__(
        self,
        client: HttpClient,
        path: str = "/metrics",
        interval_s: float = 1.0,
        prefixes: tuple[str, ...] = DEFAULT_PREFIXES,
        names: frozenset[str] | None = None,
        timeout_s: float = DEFAULT_SCRAPE_TIMEOUT_S,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"scrape interval_s must be > 0, got {interval_s}")
        if not timeout_s > 0:
            raise ValueError(f"scrape timeout_s must be > 0, got {timeout_s}")
        self._timeout_s = timeout_s
        self._client = client
        self._path = path
        self._interval_ns = int(interval_s * 1e9)
        self._prefixes = prefixes
        self._names = names
        self._task: asyncio.Task[None] | None = None
        self.rows: list[MetricRow] = []
        self.scrapes = 0
        self.errors = 0
        self.last_error = ""

    async def scrape_once(self) -> None:
        try:
            status, body = await within(self._client.get(self._path), self._timeout_s)
            t_ns = time.monotonic_ns()
            if status != 200:
                raise TransportError(f"{self._path} answered HTTP {status}")
            samples = parse_exposition(body.decode("utf-8", "replace"))
            self.rows.extend(select(samples, t_ns, self._prefixes, self._names))
            self.scrapes += 1
        except asyncio.TimeoutError:
            self.errors += 1
            self.last_error = f"{self._path} did not answer within {self._timeout_s:g} s"
        except (TransportError, ExpositionError) as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    async def _loop(self) -> None:
        deadline = time.monotonic_ns()
        while True:
            await self.scrape_once()
            deadline += self._interval_ns
            now = time.monotonic_ns()
            if deadline < now:  # a slow scrape: skip missed ticks instead of bursting to catch up
                deadline += ((now - deadline) // self._interval_ns + 1) * self._interval_ns
            await asyncio.sleep((deadline - now) / 1e9)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self.scrape_once()  # one last sample so the run's end is covered
