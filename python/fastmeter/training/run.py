"""A training run recorded into a run directory: the meter's samples stream to samples.arrow while training goes
(`fastmeter show DIR/samples.arrow` reads them), and at the end steps.arrow, epochs.arrow, observations.arrow and
training.json are written (docs/format.md, "Training run directories").

    with TrainingRun("runs/cnn", sources="auto", targets={"val_acc": 0.9}) as run:
        for epoch in range(n):
            with run.epoch():
                for batch in loader:
                    with run.step(items=len(batch)):
                        ...
            run.observe("val_acc", evaluate())
    run.summary["targets"][0]["energy_j"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import fastmeter
from fastmeter.assess import meter_validity
from fastmeter.bench.run_files import open_run_recorder, write_run_json
from fastmeter.env import collect_fingerprint
from fastmeter.meter import Meter
from fastmeter.training.steps import Interval, StepMeter
from fastmeter.training.tables import epochs_table, observations_table, steps_table, write_table
from fastmeter.training.target import Target
from fastmeter.validity import combine

TRAINING_FORMAT_VERSION = 1
TRAINING_JSON = "training.json"


class TrainingRun(StepMeter):
    """A `StepMeter` that owns its meter and writes a run directory. Arguments after `run_dir` are the
    `Meter`'s (sources, period_us, source_options...) plus `targets`, `rank` and `force` (replace fastmeter's
    files in an existing directory)."""

    def __init__(
        self,
        run_dir: str | Path,
        sources: str | Iterable[str] = "auto",
        period_us: int = 1000,
        *,
        targets: Mapping[str, float | tuple[float, str]] | list[Target] | None = None,
        rank: int = 0,
        force: bool = False,
        **meter_options: Any,
    ) -> None:
        meter = Meter(sources, period_us, **meter_options)
        super().__init__(meter, targets=targets, rank=rank)
        self.meter: Meter = meter
        self.run_dir = Path(run_dir)
        self.summary: dict[str, Any] = {}
        # Noise and permission warnings about this run (a library does not print them): also in training.json.
        self.warnings: list[str] = []
        # The metadata every run directory's samples.arrow carries (fingerprint, sampler, channels). No calibration:
        # step energies are read on the uncorrected curve, and the file must not claim otherwise.
        self._recorder = open_run_recorder(
            meter,
            self.run_dir,
            collect_fingerprint(),
            None,
            force=force,
            notify=lambda _, text: self.warnings.append(text),
        )

    def __enter__(self) -> TrainingRun:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def open(self) -> TrainingRun:
        """Start the meter and the samples stream; the training's start (energy-to-target's origin) is now."""
        self._recorder.start()
        self.start(self.meter.start_ns)
        return self

    def finish(self) -> dict[str, Any]:
        """Close what is open (a step or epoch cut short by an exception keeps its energy up to now), stop the
        meter, write every file and return the summary (also in training.json). Safe to call twice. samples.arrow
        is finished first, so a failure after it leaves the trace complete."""
        if self.summary:
            return self.summary
        if self._step is not None:
            self.end_step()
        if self._epoch is not None:
            self.end_epoch(resolve=False)
        end_ns = fastmeter.Meter.now_ns()
        try:
            whole = self.meter.span(self.meter.start_ns, end_ns)  # waits (bounded) for the counters to pass the end
            validity = combine([meter_validity(self.meter, (self.meter.start_ns, end_ns)), whole.validity])
        finally:
            self._recorder.close({"validity": meter_validity(self.meter).to_dict()})
        steps, epochs = self.intervals()
        targets = [self.energy_to_target(t.metric) for t in self.targets]
        write_table(self.run_dir / "steps.arrow", steps_table(steps))
        write_table(self.run_dir / "epochs.arrow", epochs_table(epochs))
        write_table(self.run_dir / "observations.arrow", observations_table(self.observations))
        own = [s for s in steps if s.rank == self.rank], [e for e in epochs if e.rank == self.rank]
        self.summary = {
            "format_version": TRAINING_FORMAT_VERSION,
            "fastmeter_version": fastmeter.__version__,
            "span_ns": [self.meter.start_ns, end_ns],
            "realtime_anchor": list(self.meter.realtime_anchor),
            "sampler": {"period_us": self.meter.period_us, "sources": self.meter.sources},
            "counted_channels": [c.name for c in self.meter.channels if c.in_total],
            "energy_j": whole.total_j,
            "energy_bound_j": whole.total_bound_j,
            "energy_by_channel_j": whole.energy_j,
            "ranks": sorted({self.rank, *self._others}),
            **_step_totals(*own),
            "targets": [t.to_dict() for t in targets],
            "validity": validity.to_dict(),
            "warnings": self.warnings,
        }
        write_run_json(self.run_dir, self.summary, TRAINING_JSON)
        return self.summary


def _step_totals(steps: list[Interval], epochs: list[Interval]) -> dict[str, Any]:
    """This rank's steps, epochs, items and joules per item over the steps whose energy is known (unknown ones
    are counted separately, never as 0). Other ranks' steps overlap these in time: summing them would count the
    node's energy twice."""
    known = [s for s in steps if not math.isnan(s.energy_j)]
    items = [s.items for s in known]
    steps_j = math.fsum(s.energy_j for s in known)
    n_items = sum(items) if known and all(i is not None for i in items) else None  # type: ignore[misc]
    return {
        "steps": len(steps),
        "epochs": len(epochs),
        "steps_energy_j": steps_j if known else math.nan,
        "steps_unknown": len(steps) - len(known),
        "items": n_items,
        "energy_per_item_j": steps_j / n_items if n_items else math.nan,
    }
