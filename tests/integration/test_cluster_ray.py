"""ClusterMeter on a real Ray cluster of three local nodes, each node's meter reading its own NVML emulator.

One cluster per module (Ray nodes are heavy on 2 cores). All nodes share this machine's CLOCK_MONOTONIC, so the
emulators' analytic truth is on the driver's clock; FASTMETER_CLOCK_OFFSET_NS shifts one node's clock as the
driver sees it, and the estimate must recover that shift within its bound."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from fastmeter.export import Exporter
from tests.emulators.nvml import Constant, GpuSpec, Square, Steps, build_fake_nvml, default_cache_dir, write_config
from tests.extras import need
from tests.integration.test_export_prometheus import scrape

pytestmark = [pytest.mark.extras, pytest.mark.slow]

OFFSET_NS = 250_000_000  # node1's injected clock offset
DRIFT_PPM = 300.0  # node2's injected clock rate error: 1.2 ms over a 4 s run, several times the offset bound
WAVEFORMS = {
    "node0": Constant(120.0),
    "node1": Square(60.0, 300.0, 0.2, 0.4),
    "node2": Steps(((0.0, 80.0), (1.5, 400.0), (2.5, 150.0))),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    ray = need("ray", "ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c, ray, workers
    ray.shutdown()
    c.shutdown()


def _node_ids(ray) -> list[str]:
    head = ray.get_runtime_context().get_node_id()
    others = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head)
    return [head, *others]


def _emulators(tmp: Path, names: list[str]) -> tuple[dict[str, dict[str, str]], dict[str, GpuSpec]]:
    """Per node: the actor's env vars naming its own emulator config, and the GPU it models (for the truth)."""
    lib = build_fake_nvml(default_cache_dir())
    t0_ns = time.monotonic_ns()
    env, gpus = {}, {}
    for name in names:
        conf = tmp / f"{name}.conf"
        (gpus[name],) = write_config(conf, [GpuSpec(waveform=WAVEFORMS[name], counter_refresh_ms=5.0)], t0_ns=t0_ns)
        env[name] = {"FASTMETER_NVML_LIBRARY": str(lib), "FAKE_NVML_CONFIG": str(conf)}
    return env, gpus


def _newest_ns(m, node: str) -> int:  # type: ignore[no-untyped-def]
    s = m.samples()
    t = s.filter(pc.equal(pc.cast(s.column("node"), "string"), node)).column("t_ns")
    return int(pc.max(t).as_py() or 0) if len(t) else 0


def test_per_node_and_total_energy_and_an_offset_clock(cluster, tmp_path: Path) -> None:
    _, ray, _ = cluster
    from fastmeter.cluster import ClusterMeter

    ids = _node_ids(ray)
    names = ["node0", "node1", "node2"]
    env, gpus = _emulators(tmp_path, names)
    env["node1"]["FASTMETER_CLOCK_OFFSET_NS"] = str(OFFSET_NS)
    env["node2"]["FASTMETER_CLOCK_DRIFT_PPM"] = str(DRIFT_PPM)
    m = ClusterMeter("nvml", 1000, nodes=dict(zip(names, ids)), env_vars=env, interval_s=0.05, reestimate_s=0.5)
    assert m.channel_names == ["node0/gpu0", "node1/gpu0", "node2/gpu0"]
    with m, Exporter(m, m.validity, "127.0.0.1", 0) as exporter:
        time.sleep(0.3)
        with m.window("work") as w:
            time.sleep(1.3)
            first = scrape(exporter.url)
            time.sleep(1.3)  # node2 steps twice inside the window
        second = scrape(exporter.url)
        time.sleep(0.3)
    r = w.span()
    for name in names:
        truth = gpus[name].energy_j(w.t0_ns, w.t1_ns)
        ch = f"{name}/gpu0"
        assert abs(r.energy_j[ch] - truth) <= r.bound_j[ch], (ch, r.energy_j[ch], truth, r.bound_j[ch])
        assert r.bound_j[ch] < 0.05 * truth
    truth_total = math.fsum(g.energy_j(w.t0_ns, w.t1_ns) for g in gpus.values())
    assert abs(r.total_j - truth_total) <= r.total_bound_j

    # The exporter serves every node's channels: counters grow, node0's constant 120 W reads as such.
    energy = [x["fastmeter_energy_joules_total"] for x in (first, second)]
    assert {dict(k)["channel"] for k in energy[0]} == {f"{n}/gpu0" for n in names}
    assert all(energy[1][k] > energy[0][k] > 0 for k in energy[0])
    power = {dict(k)["channel"]: v for k, v in second["fastmeter_power_watts"].items()}
    assert power["node0/gpu0"] == pytest.approx(120.0, rel=0.01)
    assert second["fastmeter_verdict"][(("verdict", "synthetic"),)] == 1.0

    # The injected offset is recovered within each estimate's bound, at every (re-)estimate; node0's is ~0; node2's
    # estimates follow its drift: their slope is the injected rate within what the two ends' bounds allow.
    offsets = m.clock_offsets
    assert all(len(offsets[n]) >= 4 for n in names)  # start, re-estimates while running, stop
    for name, injected in (("node0", 0), ("node1", OFFSET_NS)):
        for e in offsets[name]:
            assert abs(e["offset_ns"] - injected) <= e["bound_ns"], (name, e)
    a, b = offsets["node2"][0], offsets["node2"][-1]
    slope_ppm = (b["offset_ns"] - a["offset_ns"]) / (b["t_ns"] - a["t_ns"]) * 1e6
    assert abs(slope_ppm - DRIFT_PPM) <= (a["bound_ns"] + b["bound_ns"]) / (b["t_ns"] - a["t_ns"]) * 1e6

    # Samples: one timeline (driver clock) with the node column; node1's shifted clock is undone.
    s = m.samples()
    assert s.num_rows == m.sample_count() > 0
    for name in names:
        sub = s.filter(pc.equal(pc.cast(s.column("node"), "string"), name))
        t = sub.column("t_ns").to_numpy()
        assert len(t) > 1000
        assert m.start_ns - 5_000_000 <= t.min() and t.max() <= m.stop_ns + 5_000_000
        e = sub.column("energy_j").to_numpy()
        assert np.all(np.diff(e[np.argsort(t)]) >= 0)
    stats = m.stats()
    assert set(stats["nodes"]) == set(names)
    assert all(stats["collection"][n]["rows"] > 0 for n in names)
    v = m.validity()
    assert v.verdict.value == "synthetic"  # emulators named by FASTMETER_NVML_LIBRARY, on every node
    assert {r.message.split(":")[0] for r in v.reasons if r.code == "emulated_source"} == {f"node {n}" for n in names}
    m.close()


def test_trace_ray_writes_one_file_with_a_node_column(cluster, tmp_path: Path) -> None:
    c, ray, _ = cluster
    from fastmeter.io.read import read_trace

    out = tmp_path / "cluster.arrow"
    cmd = [sys.executable, "-m", "fastmeter.cli", "trace", "--ray", c.address, "--source", "synthetic"]
    done = subprocess.run([*cmd, "--duration", "1.5", "-o", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    # Where the numbers come from is judged on each node and said before the trace starts.
    for n in ("node0", "node1", "node2"):
        assert f"warning: node {n}: synthetic0 is the synthetic waveform" in done.stderr
    trace = read_trace(out)
    table, meta = trace.table, trace.metadata
    nodes = sorted(set(pc.cast(table.column("node"), "string").to_pylist()))
    assert nodes == ["node0", "node1", "node2"]
    assert sorted(set(pc.cast(table.column("channel"), "string").to_pylist())) == [f"{n}/synthetic0" for n in nodes]
    ids = {v["node_id"] for v in meta["cluster"]["nodes"].values()}
    assert ids == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert all("controlled" in v["fingerprint"] for v in meta["cluster"]["nodes"].values())
    clock = meta["sampler_stats"]["clock"]
    assert all(len(clock[n]["history"]) >= 2 and clock[n]["bound_ns"] > 0 for n in nodes)
    assert meta["validity"]["verdict"] == "synthetic"
    shown = subprocess.run([sys.executable, "-m", "fastmeter.cli", "show", str(out)], capture_output=True, text=True)
    assert shown.returncode == 0 and "node1/synthetic0" in shown.stdout, shown.stderr


def test_bench_with_a_cluster_table_attributes_the_whole_clusters_energy(cluster, tmp_path: Path) -> None:
    c, ray, _ = cluster
    from click.testing import CliRunner

    from fastmeter.cli import main
    from fastmeter.io.read import read_trace
    from tests.emulators.openai_server import openai_server
    from tests.integration.test_bench_ground_truth import bench_args

    out = tmp_path / "run"
    with openai_server(token_gap_s=0.004, prefill_s=0.01) as server:
        args = bench_args(server.url, out, sources="synthetic", **{"ray-address": c.address})
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    names = ["node0", "node1", "node2"]
    assert run["config"]["cluster"]["ray_address"] == c.address
    assert run["counted_channels"] == [f"{n}/synthetic0" for n in names]
    by_channel = run["energy_by_channel_j"]
    assert all(by_channel[ch] > 0 for ch in run["counted_channels"])
    assert run["summary"]["energy_j"] == pytest.approx(math.fsum(by_channel.values()), rel=1e-9)
    # Attribution splits the whole cluster's energy: requests plus idle time add up to every node's together.
    a = run["attribution"]
    assert a["total_j"] == pytest.approx(run["summary"]["energy_j"], rel=1e-6)
    assert a["requests_j"] + a["idle_j"] == pytest.approx(a["total_j"], rel=1e-9)
    assert set(run["cluster"]["nodes"]) == set(names)
    trace = read_trace(out / "samples.arrow")
    assert sorted(set(pc.cast(trace.table.column("node"), "string").to_pylist())) == names
    assert set(trace.metadata["cluster"]["nodes"]) == set(names)


def test_a_node_whose_source_cannot_open_is_named_in_one_line(cluster, tmp_path: Path) -> None:
    _, ray, _ = cluster
    from fastmeter.cluster import ClusterMeter
    from fastmeter.errors import ConfigError, FastmeterError

    ids = _node_ids(ray)
    env, _ = _emulators(tmp_path, ["node0", "node1"])
    env["node1"]["FASTMETER_NVML_LIBRARY"] = str(tmp_path / "missing-libnvidia-ml.so")
    with pytest.raises(FastmeterError) as e:
        ClusterMeter("nvml", 1000, nodes={"node0": ids[0], "node1": ids[1]}, env_vars=env)
    assert "\n" not in str(e.value) and str(e.value).startswith("node node1 could not start its meter: ")
    assert "missing-libnvidia-ml.so" in str(e.value)
    # A Ray address nobody answers at: one line and exit 2, at once (ray.init alone retries it for minutes).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "fastmeter.cli",
        "trace",
        "--ray",
        f"127.0.0.1:{port}",
        "-o",
        str(tmp_path / "t.arrow"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith(
        f"Error: no Ray cluster answers at '127.0.0.1:{port}'"
    )
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "t.arrow").exists()
    with pytest.raises(ConfigError, match="no alive Ray node"):
        ClusterMeter("synthetic", 1000, nodes=["not-a-node-id"])
    with pytest.raises(ConfigError, match="env_vars names node 'nodeX'"):
        ClusterMeter("synthetic", 1000, nodes={"node0": ids[0]}, env_vars={"nodeX": {}})


def test_a_node_killed_mid_run(cluster, tmp_path: Path) -> None:
    c, ray, workers = cluster
    from fastmeter.cluster import ClusterMeter

    ids = _node_ids(ray)
    victim = workers[-1]
    names = {"node0": ids[0], "node2": victim.node_id}
    env, gpus = _emulators(tmp_path, list(names))
    m = ClusterMeter("nvml", 1000, nodes=names, env_vars=env, interval_s=0.05)
    m.start()
    with m.window("before") as before:
        time.sleep(0.8)
    # What is kept is what arrived: wait until the victim's samples have arrived past the first window.
    deadline = time.monotonic() + 30
    while _newest_ns(m, "node2") <= before.t1_ns and time.monotonic() < deadline:
        time.sleep(0.05)
    c.remove_node(victim)
    killed_ns = time.monotonic_ns()  # nothing the node sampled after this can have arrived
    with m.window("after") as after:
        time.sleep(0.5)
    m.stop()

    r_after = after.span()
    assert math.isnan(r_after.energy_j["node2/gpu0"]) and math.isnan(r_after.total_j)
    assert r_after.validity.verdict.value == "invalid"
    lost = [x for x in r_after.validity.reasons if x.code == "node_lost"]
    assert [x.channel for x in lost] == ["node2/gpu0"]
    failed_at = m.failed_at_ns["node2/gpu0"]
    assert failed_at is not None and m.start_ns < failed_at <= killed_ns
    assert m.failed_at_ns["node0/gpu0"] is None
    # The survivor keeps measuring against the truth; what arrived from the lost node before the loss is kept.
    truth = gpus["node0"].energy_j(after.t0_ns, after.t1_ns)
    assert abs(r_after.energy_j["node0/gpu0"] - truth) <= r_after.bound_j["node0/gpu0"]
    s = m.samples()
    lost_rows = s.filter(pc.equal(pc.cast(s.column("node"), "string"), "node2"))
    assert lost_rows.num_rows > 500
    assert pc.max(lost_rows.column("t_ns")).as_py() == failed_at
    # A window that ended before the loss keeps its answer: rebuilt from the samples that arrived, within its bound.
    assert before.t1_ns < failed_at
    r_before = before.span()
    truth = gpus["node2"].energy_j(before.t0_ns, before.t1_ns)
    assert abs(r_before.energy_j["node2/gpu0"] - truth) <= r_before.bound_j["node2/gpu0"] < 0.05 * truth
    assert "node_lost_rebuilt" in {x.code for x in r_before.validity.reasons}
    assert m.stats()["collection"]["node2"]["lost_at_ns"] == failed_at
