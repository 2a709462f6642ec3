"""The bench config as frozen dataclasses, one per TOML table. Each field carries its check, a one-line meaning
and a help rank (lower = more used: `fastmeter bench --help` lists options in that order), so the file format,
the validation and the command-line help come from one place."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from fastmeter.adapters.native import CLIENT_KINDS
from fastmeter.load.config_check import (
    BOOL,
    GPU,
    MAX_CONCURRENCY,
    MAX_OUTPUT_TOKENS,
    MAX_PERIOD_US,
    MAX_PROMPT_TOKENS,
    MAX_REQUESTS,
    MAX_SECONDS,
    MAX_SEED,
    MIN_PERIOD_US,
    PATH,
    TABLE,
    TEXT,
    TEXT_TABLE,
    URL,
    Check,
    Nested,
    choice,
    integer,
    list_of,
    number,
)
from fastmeter.sources import SOURCE_NAMES

SERVER_KINDS = ("openai", "tgi")
OPENAI_ENDPOINTS = ("completions", "chat")
WORKLOAD_KINDS = ("random", "jsonl", "mtbench", "sharegpt")
ATTRIBUTION_METHODS = ("time-share", "token-weighted", "activity")

REQUIRED = dataclasses.MISSING


@dataclass(frozen=True)
class Option:
    """What a config field accepts and means (field metadata)."""

    check: Check
    help: str
    rank: int


def opt(check: Check, help: str, rank: int, default: Any = REQUIRED) -> Any:
    meta = {"option": Option(check, help, rank)}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_of(f: dataclasses.Field[Any]) -> Option:
    return f.metadata["option"]  # type: ignore[no-any-return]


_TOKENS = "prompt text is built per request"


# --- server launch: [server.container] (fastmeter.launch.container builds the command line) ---
CONTAINER_ENGINES = ("docker", "podman")
CONTAINER_NETWORKS = ("host", "none")  # never a bridge: the server must be on the host's loopback, or unreachable


@dataclass(frozen=True)
class ContainerConfig:
    image: str = opt(TEXT, 'Image to run, pinned by digest ("name@sha256:...") for a reproducible server.', 0)
    engine: str = opt(choice(*CONTAINER_ENGINES), "Container engine.", 1, "docker")
    args: tuple[str, ...] = opt(list_of(TEXT, "strings", allow_empty=True), "Arguments after the image.", 2, ())
    gpus: str = opt(choice("run", "all", "none"),
                    "GPUs given to the container: run = those [bench].gpus names (all when unset), all, or none.", 3,
                    "run")
    network: str = opt(choice(*CONTAINER_NETWORKS), "host: the server listens on this host's loopback.", 4, "host")
    env: dict[str, str] | None = opt(TEXT_TABLE, "Environment variables inside the container.", 5, None)
    volumes: tuple[str, ...] = opt(list_of(TEXT, "HOST:CONTAINER[:ro] strings", allow_empty=True),
                                   "Bind mounts (model weights, caches).", 6, ())
    run_args: tuple[str, ...] = opt(list_of(TEXT, "strings", allow_empty=True),
                                    "Further `run` options, e.g. --shm-size=16g or --ipc=host.", 7, ())


# --- end server launch ---


@dataclass(frozen=True)
class ServerConfig:
    kind: str = opt(choice(*SERVER_KINDS), "Server API: openai (vLLM, SGLang, TensorRT-LLM, llama.cpp) or tgi.", 3)
    base_url: str = opt(URL, "Where the server listens.", 2)
    model: str | None = opt(TEXT, "Served model name (required for kind = openai).", 4, None)
    endpoint: str = opt(choice(*OPENAI_ENDPOINTS), "OpenAI endpoint: /v1/completions or /v1/chat/completions.", 30,
                        "completions")
    ignore_eos: bool = opt(BOOL, "Ask the server to generate exactly the token budget (vLLM's ignore_eos).", 31,
                           False)
    extra_body: dict[str, Any] | None = opt(TABLE, "Extra JSON fields merged into every request body.", 50, None)
    ready_timeout_s: float = opt(number(0.0, lo_open=True, hi=3600.0),
                                 "How long to wait for the server to answer /v1/models or /health before the run.",
                                 51, 10.0)
    # --- server launch (fastmeter.launch; docs/launch.md) ---
    launch: tuple[str, ...] | None = opt(list_of(TEXT, "strings"),
                                         "Command that starts the server; fastmeter starts, watches and stops it.",
                                         60, None)
    launch_env: dict[str, str] | None = opt(TEXT_TABLE, "Environment variables set for the launched server.", 61,
                                            None)
    container: ContainerConfig | None = opt(Nested("TABLE", "a [server.container] table: image (required), "
                                                   "engine, args, gpus, network, env, volumes, run_args",
                                                   ContainerConfig),
                                            "Run the server in a docker/podman container ([server.container]).", 62,
                                            None)
    launch_ready_timeout_s: float = opt(number(0.0, lo_open=True, hi=3600.0),
                                        "How long a launched server may take to answer /v1/models or /health.", 63,
                                        600.0)
    stop_timeout_s: float = opt(number(0.0, hi=3600.0),
                                "Seconds a launched server gets to exit after SIGTERM before SIGKILL.", 64, 30.0)
    # --- end server launch ---


@dataclass(frozen=True)
class WorkloadConfig:
    kind: str = opt(choice(*WORKLOAD_KINDS), "Prompts: random words, or a jsonl, mtbench or sharegpt file.", 5)
    path: str | None = opt(PATH, "Dataset file (kinds jsonl, mtbench, sharegpt).", 6, None)
    input_tokens: int | None = opt(integer(1, MAX_PROMPT_TOKENS, _TOKENS), "Prompt length in words (kind random).",
                                   7, None)
    output_tokens: int | None = opt(integer(1, MAX_OUTPUT_TOKENS), "Tokens to generate per request (kind random).",
                                    8, None)
    max_tokens: int | None = opt(integer(1, MAX_OUTPUT_TOKENS),
                                 "Token budget per request for dataset kinds (required for mtbench).", 9, None)
    template: str | None = opt(TEXT, "Prompt template with {prompt} where each prompt goes.", 40, None)
    shuffle: bool = opt(BOOL, "Shuffle the dataset (seeded by --seed).", 41, False)


@dataclass(frozen=True)
class LoadConfig:
    concurrency: int | None = opt(integer(1, MAX_CONCURRENCY), "Most requests in flight at once (unset: no cap).",
                                  10, None)
    rate: float = opt(number(0, lo_open=True, allow_inf=True),
                      "Requests per second; inf = closed loop (send as soon as a slot frees).", 11, math.inf)
    num_requests: int | None = opt(integer(1, MAX_REQUESTS), "Measured requests to send.", 12, None)
    duration_s: float | None = opt(number(0, lo_open=True, hi=MAX_SECONDS), "Stop sending after this many seconds.",
                                   13, None)
    warmup_requests: int = opt(integer(0, MAX_REQUESTS), "Requests sent first and left out of the figures.", 14, 0)
    burstiness: float = opt(number(0, lo_open=True), "Arrival gaps: 1 = Poisson, < 1 burstier, > 1 more regular.",
                            32, 1.0)
    timeout_s: float = opt(number(0, lo_open=True, hi=MAX_SECONDS), "Per-request timeout in seconds.", 33, 600.0)
    seed: int = opt(integer(0, MAX_SEED), "Seed of arrivals, random prompts and shuffling.", 34, 0)
    client: str = opt(choice(*CLIENT_KINDS),
                      "HTTP transport: auto (native for http://, asyncio for https://), native (C++ epoll thread, "
                      "http:// only) or asyncio.", 54, "auto")


@dataclass(frozen=True)
class BenchSettings:
    output_dir: str | None = opt(PATH, "Run directory to write (must not exist or be empty).", 1, None)
    sources: tuple[str, ...] = opt(list_of(choice("auto", *SOURCE_NAMES), "source names"),
                                   "Power sources to read; auto = every hardware source available.", 15, ("auto",))
    gpus: tuple[int | str, ...] = opt(list_of(GPU, "GPU indices or UUIDs", allow_empty=True),
                                      "GPUs to measure (default all).", 16, ())
    period_us: int = opt(integer(MIN_PERIOD_US, MAX_PERIOD_US), "Sampling period in microseconds.", 17, 1000)
    idle_baseline_s: float = opt(number(0, hi=3600.0), "Seconds of idle measurement first (net energy above idle).",
                                 18, 0.0)
    slo_ttft_p99_ms: float | None = opt(number(0, lo_open=True), "Sweep SLO: time to first token p99 in ms.", 19, None)
    slo_itl_p99_ms: float | None = opt(number(0, lo_open=True), "Sweep SLO: inter-token latency p99 in ms.", 20, None)
    attribution: str = opt(choice(*ATTRIBUTION_METHODS), "How a span's energy is split among requests in flight.",
                           35, "time-share")
    sweep_concurrency: tuple[int, ...] | None = opt(list_of(integer(1, MAX_CONCURRENCY), "integers >= 1"),
                                                    "One point per concurrency (or pass --concurrency 1,2,4).", 36,
                                                    None)
    sweep_rate: tuple[float, ...] | None = opt(list_of(number(0, lo_open=True, allow_inf=True), "rates"),
                                               "One point per rate (or pass --rate 1,2,inf).", 37, None)
    calibration: str | None = opt(PATH, "Sensor calibration file (see `fastmeter calibrate`).", 38, None)
    accuracy: float | None = opt(number(0), "A known accuracy score of this configuration.", 42, None)
    scorer: str | None = opt(TEXT, 'Accuracy scorer, "module:function" or "file.py:function".', 43, None)
    grid_gco2_per_kwh: float | None = opt(number(0), "Grid carbon intensity for gCO2e figures.", 44, None)
    pue: float = opt(number(1, why="power usage effectiveness is facility / IT energy"),
                     "Data-centre power usage effectiveness.", 45, 1.0)
    price_per_kwh: float | None = opt(number(0), "Electricity price for cost figures.", 46, None)
    currency: str = opt(TEXT, "Currency of price_per_kwh.", 47, "USD")


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = opt(BOOL, "Scrape the server's Prometheus /metrics during the run.", 39, True)
    path: str = opt(TEXT, "URL path of the metrics endpoint.", 51, "/metrics")
    interval_s: float = opt(number(0, lo_open=True, hi=3600.0), "Seconds between scrapes.", 52, 1.0)
    prefixes: tuple[str, ...] | None = opt(list_of(TEXT, "non-empty strings"),
                                           "Metric name prefixes to keep (default: vLLM's and TGI's).", 53, None)


TABLES: dict[str, type] = {"server": ServerConfig, "workload": WorkloadConfig, "load": LoadConfig,
                           "bench": BenchSettings, "metrics": MetricsConfig}
OPTIONAL_TABLES = ("load", "bench", "metrics")  # every key of these has a default


# --- [cluster]: measure every node of a Ray cluster (fastmeter.cluster) ---
@dataclass(frozen=True)
class ClusterConfig:
    ray_address: str | None = opt(TEXT, "Ray cluster whose every node is measured (HOST:PORT or auto; needs "
                                  "fastmeter[ray]); the run's energy is the whole cluster's.", 48, None)


TABLES["cluster"] = ClusterConfig
OPTIONAL_TABLES = (*OPTIONAL_TABLES, "cluster")
# --- end [cluster]


@dataclass(frozen=True)
class BenchConfig:
    """A validated bench config: one typed table each, defaults filled in. `source` names where it came from."""

    server: ServerConfig
    workload: WorkloadConfig
    load: LoadConfig
    metrics: MetricsConfig = MetricsConfig()
    bench: BenchSettings = BenchSettings()
    source: str = "<dict>"
    cluster: ClusterConfig = ClusterConfig()
