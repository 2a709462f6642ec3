"""Energy-to-target: the joules spent from the start of training until a named metric FIRST reaches a target.

A metric is observed at instants on the meter's clock (`StepMeter.observe`); the target is reached at the first
observation whose value is at least the target (`mode="max"`, e.g. accuracy) or at most it (`mode="min"`, e.g.
loss). The energy is the meter's span from the training's start to that observation's instant, so evaluation work
done to learn the metric counts, as it must be done to know the target was met.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fastmeter.errors import ConfigError
from fastmeter.validity import Reason, Validity, Verdict

MODES = ("max", "min")


@dataclass(frozen=True)
class Target:
    """`metric` reaches `value` when an observation is >= value (mode "max") or <= value (mode "min")."""

    metric: str
    value: float
    mode: str = "max"

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"a target needs a metric name, got {self.metric!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise ConfigError(f"target for {self.metric!r} must be a finite number, got {self.value!r}")
        if self.mode not in MODES:
            raise ConfigError(f"target mode {self.mode!r} for {self.metric!r} is not one of {', '.join(MODES)}")

    def reached_by(self, observed: float) -> bool:
        """NaN (a diverged loss, a metric not computed) never reaches a target."""
        return observed >= self.value if self.mode == "max" else observed <= self.value


def targets_from(spec: Mapping[str, float | tuple[float, str]] | Iterable[Target] | None) -> list[Target]:
    """{"val_acc": 0.9, "val_loss": (0.2, "min")} or Target objects -> [Target]."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        out = []
        for name, v in spec.items():
            value, mode = v if isinstance(v, tuple) else (v, "max")
            out.append(Target(name, value, mode))
        return out
    return list(spec)


@dataclass(frozen=True)
class Observation:
    """A metric value seen at t_ns, after `step` training steps (what Lightning's and HF's global_step count)
    in epoch `epoch` (0-based; the epoch in progress, or the last one ended)."""

    t_ns: int
    step: int
    epoch: int
    metric: str
    value: float


@dataclass(frozen=True)
class TargetResult:
    """Energy to reach `target`: from t0_ns (the training's start) to t1_ns (the first observation that met the
    target). Unreached: energy_j, bound_j and the observation fields are NaN/None, with a `target_not_reached`
    reason."""

    target: Target
    reached: bool
    t0_ns: int
    t1_ns: int | None
    step: int | None
    epoch: int | None
    observed: float
    energy_j: float
    bound_j: float
    validity: Validity

    @property
    def duration_s(self) -> float:
        return math.nan if self.t1_ns is None else (self.t1_ns - self.t0_ns) * 1e-9

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.target.metric,
            "target": self.target.value,
            "mode": self.target.mode,
            "reached": self.reached,
            "t0_ns": self.t0_ns,
            "t1_ns": self.t1_ns,
            "step": self.step,
            "epoch": self.epoch,
            "observed": self.observed,
            "energy_j": self.energy_j,
            "bound_j": self.bound_j,
            "duration_s": self.duration_s,
            "validity": self.validity.to_dict(),
        }


def first_reaching(target: Target, observations: Iterable[Observation]) -> Observation | None:
    """The earliest observation (by t_ns) of the target's metric that meets it."""
    hits = (o for o in observations if o.metric == target.metric and target.reached_by(o.value))
    return min(hits, key=lambda o: o.t_ns, default=None)


def not_reached(target: Target, t0_ns: int, seen: int) -> TargetResult:
    what = f"{seen} observations of {target.metric!r}" if seen else f"no observation of {target.metric!r}"
    sign = ">=" if target.mode == "max" else "<="
    reason = Reason(
        "target_not_reached",
        f"{target.metric} never reached {sign} {target.value:g} ({what}): its energy-to-target is unknown",
        Verdict.INVALID,
    )
    return TargetResult(target, False, t0_ns, None, None, None, math.nan, math.nan, math.nan, Validity((reason,)))
