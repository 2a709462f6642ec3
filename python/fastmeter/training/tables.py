"""The training files of a run directory: steps.arrow, epochs.arrow, observations.arrow (docs/format.md,
"Training run directories")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from fastmeter.errors import FastmeterError
from fastmeter.io.stream import OutputError, replace_durably
from fastmeter.training.steps import Interval
from fastmeter.training.target import Observation

_INTERVAL_FIELDS = [
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("t0_ns", pa.int64(), nullable=False),
    pa.field("t1_ns", pa.int64(), nullable=False),
    pa.field("items", pa.int64()),
    pa.field("energy_j", pa.float64()),  # NaN: unknown (see verdict and reason_codes)
    pa.field("bound_j", pa.float64()),
    pa.field("verdict", pa.string()),
    pa.field("reason_codes", pa.list_(pa.string())),
    pa.field("energy_by_channel_j", pa.map_(pa.string(), pa.float64())),  # NaN: that channel's energy is unknown
]
STEPS_SCHEMA = pa.schema(
    [pa.field("step", pa.int64(), nullable=False), pa.field("epoch", pa.int64(), nullable=False), *_INTERVAL_FIELDS]
)
EPOCHS_SCHEMA = pa.schema(
    [pa.field("epoch", pa.int64(), nullable=False), pa.field("steps", pa.int64(), nullable=False), *_INTERVAL_FIELDS]
)
OBSERVATIONS_SCHEMA = pa.schema(
    [
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("epoch", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)


def _common(rows: Sequence[Interval]) -> dict[str, list[object]]:
    return {
        "rank": [r.rank for r in rows],
        "t0_ns": [r.t0_ns for r in rows],
        "t1_ns": [r.t1_ns for r in rows],
        "items": [r.items for r in rows],
        "energy_j": [r.energy_j for r in rows],
        "bound_j": [r.bound_j for r in rows],
        "verdict": [None if r.validity is None else r.validity.verdict.value for r in rows],
        "reason_codes": [None if r.validity is None else [x.code for x in r.validity.reasons] for r in rows],
        "energy_by_channel_j": [
            None if r.energy_by_channel_j is None else list(r.energy_by_channel_j.items()) for r in rows
        ],
    }


def steps_table(rows: Sequence[Interval]) -> pa.Table:
    cols = {"step": [r.index for r in rows], "epoch": [r.epoch for r in rows], **_common(rows)}
    return pa.Table.from_pydict(cols, schema=STEPS_SCHEMA)


def epochs_table(rows: Sequence[Interval]) -> pa.Table:
    cols = {"epoch": [r.index for r in rows], "steps": [r.steps for r in rows], **_common(rows)}
    return pa.Table.from_pydict(cols, schema=EPOCHS_SCHEMA)


def observations_table(rows: Sequence[Observation]) -> pa.Table:
    cols = {
        "t_ns": [o.t_ns for o in rows],
        "step": [o.step for o in rows],
        "epoch": [o.epoch for o in rows],
        "metric": [o.metric for o in rows],
        "value": [o.value for o in rows],
    }
    return pa.Table.from_pydict(cols, schema=OBSERVATIONS_SCHEMA)


def write_table(path: Path, table: pa.Table) -> Path:
    """An Arrow IPC file, written whole, fsynced and renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        replace_durably(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"writing {path} failed: {e.strerror or e}; the other files of the run are kept") from None
    return path


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """One of the files above, its columns checked: a missing or damaged file is one error naming it."""
    try:
        with pa.OSFile(str(path)) as f:
            table = pa.ipc.open_file(f).read_all()
    except FileNotFoundError:
        raise FastmeterError(f"{path} is missing; pass a run directory written by fastmeter.training") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise FastmeterError(f"{path} is corrupt (not an Arrow IPC file: {e}); re-run the training") from None
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise FastmeterError(f"{path} lacks columns {', '.join(missing)}; it was not written by fastmeter.training")
    return table.select(schema.names)
