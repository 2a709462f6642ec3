"""Record small but real benchmark run directories for tests of report and compare: `fastmeter bench` against the
scripted OpenAI server, measuring the NVML emulator drawing a known square wave."""

from __future__ import annotations

import contextlib
from pathlib import Path

from click.testing import CliRunner

from fastmeter.cli import main
from tests.emulators.fake_server import FakeServer
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.emulators.openai_server import openai_server


def record_run(
    out: Path,
    fake_nvml: FakeNvml,
    *,
    power_scale: float = 1.0,
    num_requests: int = 8,
    concurrency: str = "2",
    output_tokens: int = 8,
    extra: dict[str, str] | None = None,
    server: FakeServer | None = None,
) -> Path:
    """One run directory at `out`; `power_scale` multiplies the emulated GPU's power (a known regression).
    `server`: a running scripted server to measure (default: a fresh `openai_server`)."""
    fake_nvml.configure([GpuSpec(waveform=Square(100.0 * power_scale, 300.0 * power_scale, 0.05, 0.5))])
    args = {
        "server-kind": "openai", "model": "tiny", "workload-kind": "random", "input-tokens": "8",
        "output-tokens": str(output_tokens), "concurrency": concurrency, "num-requests": str(num_requests),
        "warmup-requests": "1", "sources": "nvml", "period-us": "1000", "metrics-enabled": "false",
        **(extra or {}),
    }
    with contextlib.nullcontext(server) if server else openai_server(token_gap_s=0.003, prefill_s=0.005) as server:
        # The emulator is a chosen synthetic source (emulated_source): --allow-degraded accepts it.
        argv = ["bench", "-o", str(out), "--allow-degraded", "--base-url", server.url]
        argv += [x for k, v in args.items() for x in (f"--{k}", v)]
        r = CliRunner().invoke(main, argv)
    if r.exit_code != 0:
        raise AssertionError(f"bench failed ({r.exit_code}): {r.output}")
    return out
