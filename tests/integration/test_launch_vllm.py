"""Launching the real vLLM (CPU build, tiny random-weight model) from a matrix config: two launch specs (two
--max-num-seqs values) x two concurrencies x repeats, with interleaving, per-block server starts, logs, stops, the
decision table and `compare --vary`; and a vLLM that cannot start failing with its exit code and log.

Each vLLM start takes about a minute on the 2-core CI machine, and a matrix starts one server per entry and
repeat: FASTMETER_VLLM_MATRIX_REPEATS (default 2) sets the repeats, so a slower machine can run 1 (4 starts -> 2).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.matrix.plan import plan
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec
from tests.servers.launch_helpers import read_json, toml_value, write_config
from tests.servers.vllm_server import (
    MAX_MODEL_LEN,
    SERVED_MODEL,
    SERVER_ENV,
    VllmVenv,
    free_loopback_port,
)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SEQS = (2, 8)
REPEATS = int(os.environ.get("FASTMETER_VLLM_MATRIX_REPEATS", "2"))


def vllm_launch(venv: VllmVenv, model_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        str(venv.python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--load-format",
        "dummy",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--dtype",
        "bfloat16",
        "--served-model-name",
        SERVED_MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def _matrix_toml(tmp_path: Path, venv: VllmVenv, model_dir: Path) -> Path:
    text = f"[matrix]\nrepeats = {REPEATS}\nseed = 3\nconcurrency = [1, 4]\nbaseline_s = 0.5\n\n"
    for seqs in SEQS:
        port = free_loopback_port()
        text += (
            f'[[matrix.servers]]\nname = "seqs{seqs}"\nserver = "vllm-seqs{seqs}"\n'
            f'base_url = "http://127.0.0.1:{port}"\n'
            f"launch = {toml_value(vllm_launch(venv, model_dir, port, '--max-num-seqs', str(seqs)))}\n"
            f"launch_env = {toml_value(SERVER_ENV)}\n\n"
        )
    cfg = write_config(
        tmp_path / "matrix.toml",
        {"base_url": "http://127.0.0.1:1", "ignore_eos": True, "model": SERVED_MODEL},
        load={"num_requests": 8, "warmup_requests": 2},
    )
    cfg.write_text(cfg.read_text() + text)
    return cfg


def test_matrix_of_two_vllm_launch_specs(
    vllm_venv: VllmVenv, tiny_model_dir: Path, tmp_path: Path, fake_nvml: FakeNvml
) -> None:
    fake_nvml.configure([GpuSpec(waveform=Constant(200.0), average_window_ms=10.0)])
    out = tmp_path / "m"
    r = CliRunner().invoke(
        main, ["bench", str(_matrix_toml(tmp_path, vllm_venv, tiny_model_dir)), "-o", str(out), "--allow-degraded"]
    )
    assert r.exit_code == 0, r.output
    doc = read_json(out / "matrix.json")
    blocks = plan([f"seqs{s}" for s in SEQS], ["concurrency-1", "concurrency-4"], REPEATS, 3)
    assert [c["dir"] for c in doc["cells"]] == [f"{b.entry}/{p}/r{b.repeat}" for b in blocks for p in b.points]
    for c in doc["cells"]:
        run = read_json(out / c["dir"] / "run.json")
        assert run["summary"]["requests_ok"] == 8 and run["summary"]["output_tokens"] == 8 * 8  # ignore_eos
        assert run["fingerprint"]["controlled"]["server"]["name"] == "vllm"
        assert f"--max-num-seqs {c['entry'][4:]}" in " ".join(
            run["fingerprint"]["controlled"]["server_launch"]["command"]
        )
    for b in blocks:
        server_dir = out / b.entry / f"server-r{b.repeat}"
        launch = read_json(server_dir / "launch.json")
        assert launch["exited_on_its_own"] is False and launch["stop"]["signal"] in ("SIGTERM", "SIGKILL")
        assert "Application startup complete" in (server_dir / "server.log").read_text()
        print(
            f"vLLM start {b.entry} r{b.repeat}: ready after {launch['ready_s']:.1f} s, "
            f"stopped in {launch['stop']['stop_s']:.1f} s by {launch['stop']['signal']}"
        )
    rows = {x["entry"]: x for x in doc["decision"]}
    for name, row in rows.items():
        per_point = {
            p: statistics.median(
                c["output_tokens_per_j"] for c in doc["cells"] if c["entry"] == name and c["point"] == p
            )
            for p in ("concurrency-1", "concurrency-4")
        }
        assert row["best_point"] == max(per_point, key=per_point.__getitem__)
    code = CliRunner().invoke(main, ["compare", str(out), "--vary", "server"])
    assert code.exit_code == 0 and "differs from the baseline in: server" in code.output, code.output
    code = CliRunner().invoke(
        main,
        ["compare", str(out / "seqs2" / "concurrency-1"), str(out / "seqs8" / "concurrency-4"), "--vary", "server"],
    )
    assert code.exit_code == 2 and "concurrency" in code.output


def test_vllm_that_cannot_start_fails_with_its_exit_code_and_log(
    vllm_venv: VllmVenv, tmp_path: Path, fake_nvml: FakeNvml
) -> None:
    port = free_loopback_port()
    missing = tmp_path / "no-such-model"
    cfg = write_config(
        tmp_path / "b.toml",
        {
            "base_url": f"http://127.0.0.1:{port}",
            "model": SERVED_MODEL,
            "launch": vllm_launch(vllm_venv, missing, port),
            "launch_env": SERVER_ENV,
        },
    )
    fake_nvml.configure([GpuSpec(waveform=Constant(200.0))])
    r = CliRunner().invoke(main, ["bench", str(cfg), "-o", str(tmp_path / "run"), "--allow-degraded"])
    assert r.exit_code == 2, r.output
    assert "before it was ready" in r.output and "exited with code 1" in r.output
    assert str(missing) in r.output  # vLLM's own error, from its log tail
    assert not (tmp_path / "run").exists()
