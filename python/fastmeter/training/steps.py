"""Per-step and per-epoch energy of a training loop, and energy-to-target.

    steps = StepMeter(meter, targets={"val_acc": 0.9})
    for epoch in range(n):
        with steps.epoch():
            for batch in loader:
                with steps.step(items=len(batch)):
                    ...
        steps.observe("val_acc", evaluate())
    steps.energy_to_target("val_acc").energy_j

Marking a boundary reads the clock: nothing waits for the sensors inside the loop. Energies are resolved in
bulk (`resolve()`, which epoch ends and `finish()` call) from the meter's one curve, so a step shorter than the
counter's update period still gets its share of the curve rather than stalling the loop until the counter moves.
Without a meter (the other ranks of a node, `fastmeter.integrations.ddp`) only the boundaries are recorded; the
rank that meters the node resolves them (`add_rank`).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from fastmeter.errors import ConfigError, MeterStateError, SpanError
from fastmeter.training.target import (
    Observation,
    Target,
    TargetResult,
    first_reaching,
    not_reached,
    targets_from,
)
from fastmeter.validity import Reason, Validity, Verdict

if TYPE_CHECKING:
    from fastmeter.meter import Meter


@dataclass(slots=True)  # one per step: a long run holds millions
class Interval:
    """One step or epoch: boundaries on CLOCK_MONOTONIC ns, then (once resolved) its energy. `index` is the
    step's global index (0-based, across epochs) or the epoch's; `epoch` is the epoch a step ran in."""

    rank: int
    index: int
    epoch: int
    t0_ns: int
    t1_ns: int | None = None
    items: int | None = None
    steps: int = 0  # epochs: steps that ended inside the epoch
    energy_j: float = math.nan
    bound_j: float = math.nan
    validity: Validity | None = None  # None until resolved
    energy_by_channel_j: dict[str, float] | None = None  # every channel, counted in the total or not

    @property
    def duration_s(self) -> float:
        return math.nan if self.t1_ns is None else (self.t1_ns - self.t0_ns) * 1e-9


@dataclass
class _Marks:
    steps: list[Interval] = field(default_factory=list)
    epochs: list[Interval] = field(default_factory=list)


class StepMeter:
    """Step and epoch boundaries (and metric observations) of one training process, energies from `meter`.

    meter: a running `fastmeter.Meter`, or None on a process that only records boundaries (DDP ranks other than
        the node's local rank 0).
    targets: {"val_acc": 0.9} (reached at >= 0.9), {"val_loss": (0.2, "min")}, or `Target` objects.
    rank: this process's rank, written with its rows.
    """

    def __init__(
        self,
        meter: Meter | None,
        *,
        targets: Mapping[str, float | tuple[float, str]] | list[Target] | None = None,
        rank: int = 0,
    ) -> None:
        self.meter = meter
        self.rank = int(rank)
        self.targets = targets_from(targets)
        if len({t.metric for t in self.targets}) != len(self.targets):
            raise ConfigError("each metric may have one target; give the others a separate StepMeter")
        self.start_ns: int | None = None
        self.observations: list[Observation] = []
        self._own = _Marks()
        self._others: dict[int, _Marks] = {}
        self._unresolved: list[Interval] = []  # closed, energy not read yet: resolve() empties it
        self._step: Interval | None = None
        self._epoch: Interval | None = None
        self._steps_done = 0

    # --- boundaries ------------------------------------------------------------------------------------------
    def start(self, t_ns: int | None = None) -> None:
        """The training's start: energy-to-target counts from here. Implied by the first step or epoch."""
        if self.start_ns is None:
            self.start_ns = time.monotonic_ns() if t_ns is None else int(t_ns)

    def begin_step(self, t_ns: int | None = None) -> None:
        if self._step is not None:
            raise MeterStateError(
                f"step {self._step.index} is still open; end it (end_step, or leave its `with steps.step()`) "
                "before beginning the next"
            )
        t = time.monotonic_ns() if t_ns is None else int(t_ns)
        self.start(t)
        self._step = Interval(self.rank, self._steps_done, self.current_epoch, t)

    def end_step(self, items: int | None = None, t_ns: int | None = None) -> Interval:
        """Close the open step; `items`: samples (or tokens) it processed, for J/item."""
        s = self._step
        if s is None:
            raise MeterStateError("end_step() without begin_step(): no step is open")
        if items is not None and (isinstance(items, bool) or not isinstance(items, numbers.Integral) or items < 0):
            raise ConfigError(f"items={items!r} must be a whole number >= 0 (samples or tokens in the step), or None")
        s.t1_ns = time.monotonic_ns() if t_ns is None else int(t_ns)
        s.items = None if items is None else int(items)
        self._step = None
        self._steps_done += 1
        self._own.steps.append(s)
        self._unresolved.append(s)
        if self._epoch is not None:
            self._epoch.steps += 1
        return s

    @contextmanager
    def step(self, items: int | None = None) -> Iterator[None]:
        """`with steps.step(items=n): ...` — a step that raised is still recorded (its energy was spent)."""
        self.begin_step()
        try:
            yield
        finally:
            self.end_step(items)

    def begin_epoch(self, t_ns: int | None = None) -> None:
        if self._epoch is not None:
            raise MeterStateError(f"epoch {self._epoch.index} is still open; end it before beginning the next")
        t = time.monotonic_ns() if t_ns is None else int(t_ns)
        self.start(t)
        self._epoch = Interval(self.rank, len(self._own.epochs), len(self._own.epochs), t)

    def end_epoch(self, t_ns: int | None = None, resolve: bool = True) -> Interval:
        """Close the open epoch and (by default) resolve the energies recorded so far."""
        e = self._epoch
        if e is None:
            raise MeterStateError("end_epoch() without begin_epoch(): no epoch is open")
        e.t1_ns = time.monotonic_ns() if t_ns is None else int(t_ns)
        items = [s.items for s in self._own.steps[len(self._own.steps) - e.steps :]]
        e.items = sum(items) if items and None not in items else None  # type: ignore[arg-type]  # partial: unknown
        self._epoch = None
        self._own.epochs.append(e)
        self._unresolved.append(e)
        if resolve:
            self.resolve()
        return e

    @contextmanager
    def epoch(self) -> Iterator[None]:
        self.begin_epoch()
        try:
            yield
        finally:
            self.end_epoch()

    @property
    def steps_done(self) -> int:
        return self._steps_done

    @property
    def current_epoch(self) -> int:
        return self._epoch.index if self._epoch is not None else max(len(self._own.epochs) - 1, 0)

    # --- metrics ---------------------------------------------------------------------------------------------
    def observe(self, metric: str, value: float, *, step: int | None = None, t_ns: int | None = None) -> None:
        """A metric value seen now (or at t_ns), after `step` training steps (default: the steps ended so far)."""
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"a metric needs a name, got {metric!r}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"metric {metric!r} must be a number, got {value!r}") from None
        t = time.monotonic_ns() if t_ns is None else int(t_ns)
        self.start(t)
        s = self._steps_done if step is None else int(step)
        self.observations.append(Observation(t, s, self.current_epoch, str(metric), v))

    def energy_to_target(self, metric: str | None = None) -> TargetResult:
        """Energy from the start to the first observation meeting the target of `metric` (the only target when
        None). Needs this process's meter."""
        target = self._target(metric)
        meter = self._need_meter("energy-to-target")
        t0 = self.start_ns if self.start_ns is not None else time.monotonic_ns()
        hit = first_reaching(target, self.observations)
        if hit is None:
            return not_reached(target, t0, sum(o.metric == target.metric for o in self.observations))
        span = meter.span(t0, hit.t_ns)
        return TargetResult(
            target, True, t0, hit.t_ns, hit.step, hit.epoch, hit.value, span.total_j, span.total_bound_j, span.validity
        )

    def _target(self, metric: str | None) -> Target:
        if not self.targets:
            raise ConfigError("no target was set; pass targets={'metric': value} to the StepMeter")
        if metric is None:
            if len(self.targets) > 1:
                names = ", ".join(t.metric for t in self.targets)
                raise ConfigError(f"several targets are set ({names}); name the metric")
            return self.targets[0]
        for t in self.targets:
            if t.metric == metric:
                return t
        raise ConfigError(f"no target for {metric!r}; targets: {', '.join(t.metric for t in self.targets)}")

    # --- energies --------------------------------------------------------------------------------------------
    def add_rank(self, rank: int, steps: list[Interval], epochs: list[Interval]) -> None:
        """Boundaries recorded by another rank of this node (same CLOCK_MONOTONIC): resolved on this meter."""
        if rank == self.rank:
            raise ConfigError(f"rank {rank} is this process's own; add_rank takes the other ranks' boundaries")
        marks = _Marks([replace(s) for s in steps], [replace(e) for e in epochs])
        self._others[int(rank)] = marks
        self._unresolved += [*marks.steps, *marks.epochs]

    def marks(self) -> tuple[list[Interval], list[Interval]]:
        """This process's closed steps and epochs (what a non-metering rank sends to the metering one)."""
        return list(self._own.steps), list(self._own.epochs)

    def resolve(self) -> None:
        """Energy, error bound and validity of every closed step and epoch not resolved yet (each a span of the
        meter's curve; the newest waits, bounded, for the counters to update past its end)."""
        if self.meter is None:
            return
        pending, self._unresolved = self._unresolved, []
        for iv in pending:
            if iv.t1_ns is None:
                continue
            try:
                span = self.meter.span(iv.t0_ns, iv.t1_ns)
            except SpanError as e:  # e.g. a step that began before the meter started: unknown, not lost
                reason = Reason("outside_record", f"rank {iv.rank}'s interval {iv.index}: {e}", Verdict.INVALID)
                iv.validity = Validity((reason,))
                continue
            iv.energy_j, iv.bound_j, iv.validity = span.total_j, span.total_bound_j, span.validity
            iv.energy_by_channel_j = dict(span.energy_j)

    def intervals(self) -> tuple[list[Interval], list[Interval]]:
        """Every rank's closed steps and epochs, by rank then index (resolved first when a meter is here)."""
        self.resolve()
        ranks = sorted({self.rank, *self._others})
        marks = {self.rank: self._own, **self._others}
        return ([s for r in ranks for s in marks[r].steps], [e for r in ranks for e in marks[r].epochs])

    def _need_meter(self, what: str) -> Meter:
        if self.meter is None:
            raise MeterStateError(
                f"{what} needs the meter; this process only records boundaries (the node's local rank 0 meters it)"
            )
        return self.meter
