"""One round of bench_batches in a fresh interpreter (pynvml inside Zeus finds the emulator only through
LD_LIBRARY_PATH at load time): `batches` batches of `work_ms` each, every one recorded both by fastmeter's
`BatchRecorder` (a Meter polling at 1 kHz) and by a Zeus window, interleaved so both see the same work.

Each tool's cost per batch inside the loop is the time spent in its own calls (fastmeter: entering and leaving
`rec.batch()`; Zeus: `begin_window` + `end_window`); fastmeter's answers come after the loop, from one
`rec.table()` (timed on its second call: the first pays pyarrow's one-time import of pandas). Prints one JSON
line: {"fastmeter": [[t0_ns, t1_ns, energy_j, bound_j]], "zeus": [[t0_ns, t1_ns, energy_j]], "fastmeter_call_ns":
[...], "zeus_call_ns": [...], "table_ns": int}; the parent computes the truth of each window from the emulator's
model. With spec["alone"] = "fastmeter" or "zeus" only that tool runs, for its cost inside the loop without the
other's threads in the process ("nothing": two no-op calls in their places, the floor): {"call_ns": [...]}.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import fastmeter
from fastmeter.tasks import BatchRecorder

now_ns = time.monotonic_ns


def busy(ms: float) -> None:
    """The batch's work: busy, as a host feeding a device is."""
    end = now_ns() + int(ms * 1e6)
    while now_ns() < end:
        pass


def alone(spec: dict) -> dict:
    """One tool only (spec["alone"]): its time per batch inside the loop without the other in the process."""
    calls = []
    if spec["alone"] == "zeus":
        from zeus.monitor import ZeusMonitor

        logging.disable(logging.WARNING)
        zeus = ZeusMonitor(gpu_indices=[0], cpu_indices=[])
        for i in range(spec["batches"]):
            a = now_ns()
            zeus.begin_window(f"b{i}", sync_execution=False)
            b = now_ns()
            busy(spec["work_ms"])
            c = now_ns()
            zeus.end_window(f"b{i}", sync_execution=False)
            calls.append(b - a + now_ns() - c)
        return {"call_ns": calls}
    if spec["alone"] == "nothing":  # the floor: two no-op calls where the tools' calls go, same busy batches
        noop = dict
        for _ in range(spec["batches"]):
            a = now_ns()
            noop()
            b = now_ns()
            busy(spec["work_ms"])
            c = now_ns()
            noop()
            calls.append(b - a + now_ns() - c)
        return {"call_ns": calls}
    with fastmeter.Meter("nvml", 1000) as meter:
        rec = BatchRecorder(meter)
        time.sleep(0.2)
        for _ in range(spec["batches"]):
            a = now_ns()
            ctx = rec.batch(items=1)
            ctx.__enter__()
            b = now_ns()
            busy(spec["work_ms"])
            c = now_ns()
            ctx.__exit__(None, None, None)
            calls.append(b - a + now_ns() - c)
    return {"call_ns": calls}


def main(spec: dict) -> dict:
    if spec.get("alone"):
        return alone(spec)
    from zeus.monitor import ZeusMonitor

    logging.disable(logging.WARNING)  # Zeus warns about every 0 J window (counter not refreshed): expected here
    zeus = ZeusMonitor(gpu_indices=[0], cpu_indices=[])
    fm_calls, zeus_calls, zeus_rows = [], [], []
    with fastmeter.Meter("nvml", 1000) as meter:
        rec = BatchRecorder(meter)
        time.sleep(0.2)  # the first counter update has been seen
        for i in range(spec["batches"]):
            a = now_ns()
            zeus.begin_window(f"b{i}", sync_execution=False)
            z0 = now_ns()
            b = rec.batch(items=1)
            b.__enter__()
            c = now_ns()
            busy(spec["work_ms"])
            d = now_ns()
            b.__exit__(None, None, None)
            e = now_ns()
            z1 = now_ns()
            m = zeus.end_window(f"b{i}", sync_execution=False)
            f = now_ns()
            fm_calls.append((c - z0) + (e - d))
            zeus_calls.append((z0 - a) + (f - z1))
            zeus_rows.append([z0, z1, float(m.gpu_energy[0])])
        time.sleep(0.3)  # every counter refreshes (100 ms) past the last batch before the query
        rec.table()  # the first call pays pyarrow's one-time import of pandas (~0.3 s), not a per-query cost
        t = now_ns()
        table = rec.table()
        table_ns = now_ns() - t
    rows = [[r["t0_ns"], r["t1_ns"], r["energy_j"], r["energy_bound_j"]] for r in table.to_pylist()]
    return {
        "fastmeter": rows,
        "zeus": zeus_rows,
        "fastmeter_call_ns": fm_calls,
        "zeus_call_ns": zeus_calls,
        "table_ns": table_ns,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
