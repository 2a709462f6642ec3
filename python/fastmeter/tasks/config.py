"""Task configs: a TOML file with a [task] table (and an optional [bench] table) that `fastmeter bench` runs
in-process instead of a server benchmark. The edge: TOML and flags become one frozen TaskConfig here, every value
checked once; each kind's required keys are checked together, naming the key. See configs/tasks/*.toml."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.load.config import Origins, _build_table, _plain
from fastmeter.load.config_check import MAX_OUTPUT_TOKENS, MAX_REQUESTS, MAX_SEED, PATH, TEXT, choice, integer
from fastmeter.load.config_types import BenchSettings, opt

TASK_KINDS = ("image-classification", "object-detection", "text-generation", "callable")
PRECISIONS = ("fp32", "bf16", "fp16")
PROMPT_FORMATS = ("jsonl", "mtbench")
# weights = "random": random initialisation, said explicitly so that a missing weights file is never silently a
# random model.
RANDOM_WEIGHTS = "random"
# [bench] keys that mean something for a server benchmark only.
SERVER_ONLY_BENCH_KEYS = (
    "slo_ttft_p99_ms",
    "slo_itl_p99_ms",
    "attribution",
    "sweep_concurrency",
    "sweep_rate",
    "accuracy",
    "scorer",
)


@dataclass(frozen=True)
class TaskSettings:
    kind: str = opt(
        choice(*TASK_KINDS), "What runs: image-classification, object-detection, text-generation or callable.", 1
    )
    model: str | None = opt(
        TEXT, "torchvision model name (timm:NAME for timm), or a transformers model directory.", 2, None
    )
    weights: str | None = opt(
        PATH,
        'Weights: a state-dict file, or "random" for random initialisation (text-generation: a model directory '
        "to load them from, default the model directory itself).",
        3,
        None,
    )
    data: str | None = opt(
        PATH, "ImageFolder directory, COCO image directory, prompt file, or a callable's JSONL.", 4, None
    )
    annotations: str | None = opt(PATH, "COCO annotation file (object-detection).", 5, None)
    batch_size: int = opt(integer(1, 1_000_000), "Items per batch.", 6, 8)
    warmup_batches: int = opt(integer(0, MAX_REQUESTS), "Batches run first and left out of the figures.", 7, 1)
    max_batches: int | None = opt(
        integer(1, MAX_REQUESTS), "Measured batches at most (default: the whole data set).", 8, None
    )
    precision: str = opt(choice(*PRECISIONS), "Compute precision (bf16/fp16 through autocast).", 9, "fp32")
    device: str = opt(TEXT, 'torch device, e.g. "cpu", "cuda", "cuda:1".', 10, "cpu")
    image_size: int = opt(
        integer(8, 4096), "Images are resized and centre-cropped to this size (classification).", 11, 224
    )
    num_classes: int | None = opt(
        integer(1, 1_000_000), "Classes of a randomly initialised model (default: the data set's).", 12, None
    )
    max_new_tokens: int = opt(integer(1, MAX_OUTPUT_TOKENS), "Tokens to generate per prompt (text-generation).", 13, 32)
    prompt_format: str = opt(
        choice(*PROMPT_FORMATS), "Prompt file format: jsonl (field prompt) or mtbench.", 14, "jsonl"
    )
    function: str | None = opt(TEXT, 'Callable run per batch, "module:function" or "file.py:function".', 15, None)
    num_items: int | None = opt(
        integer(1, MAX_REQUESTS), "Items a callable runs over when no data file is given.", 16, None
    )
    scorer: str | None = opt(
        TEXT, 'Callable kind: accuracy scorer "module:function" called with (items, outputs).', 17, None
    )
    seed: int = opt(integer(0, MAX_SEED), "Seed of random initialisation.", 18, 0)
    data_workers: int = opt(
        integer(0, 256),
        "Worker processes decoding images ahead of the model (0: between batches, in this process).",
        19,
        0,
    )


@dataclass(frozen=True)
class TaskConfig:
    task: TaskSettings
    bench: BenchSettings = BenchSettings()
    source: str = "<dict>"


# Keys each kind needs, and keys that mean nothing for it (refused rather than ignored).
_REQUIRED = {
    "image-classification": ("model", "weights", "data"),
    "object-detection": ("model", "weights", "data", "annotations"),
    "text-generation": ("model", "data"),
    "callable": ("function",),
}
_ONLY_FOR = {
    "annotations": ("object-detection",),
    "image_size": ("image-classification",),
    "data_workers": ("image-classification",),
    "num_classes": ("image-classification", "object-detection"),
    "max_new_tokens": ("text-generation",),
    "prompt_format": ("text-generation",),
    "function": ("callable",),
    "num_items": ("callable",),
    "scorer": ("callable",),
    "model": ("image-classification", "object-detection", "text-generation"),
    "weights": ("image-classification", "object-detection", "text-generation"),
    "precision": ("image-classification", "object-detection", "text-generation"),
    "device": ("image-classification", "object-detection", "text-generation"),
}


def validate_task_config(data: Mapping[str, Any], source: str = "<dict>", origins: Origins | None = None) -> TaskConfig:
    origins = origins or {}
    unknown = sorted(str(k) for k in data if k not in ("task", "bench"))
    if unknown:
        flags = [f for (t, _), f in origins.items() if t == unknown[0]]
        raise ConfigError(
            f"{flags[0] if flags else source}: [{unknown[0]}] does not apply to a task config (a [task] table runs "
            "in-process); allowed tables: task, bench"
        )
    raw_task, raw_bench = data["task"], data.get("bench", {})
    for name, raw in (("task", raw_task), ("bench", raw_bench)):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of keys, got {raw!r}")
    for key in SERVER_ONLY_BENCH_KEYS:
        if raw_bench.get(key) is not None:
            where = origins.get(("bench", key)) or f"{source}: [bench].{key}"
            hint = (
                "; a task's accuracy comes from its kind (or [task].scorer for a callable)"
                if key in ("accuracy", "scorer")
                else ""
            )
            raise ConfigError(f"{where} applies to server benchmarks only{hint}")
    task = _build_table(source, origins, "task", TaskSettings, raw_task)
    bench = _build_table(source, origins, "bench", BenchSettings, raw_bench)
    for key in _REQUIRED[task.kind]:
        if getattr(task, key) is None:
            raise ConfigError(
                f'{source}: [task].{key} is required for kind = "{task.kind}"'
                + (' (a weights file, or "random")' if key == "weights" else "")
            )
    for key, kinds in _ONLY_FOR.items():
        if task.kind not in kinds and raw_task.get(key) is not None:
            raise ConfigError(
                f'{source}: [task].{key} does not apply to kind = "{task.kind}" (only to {", ".join(kinds)})'
            )
    if task.kind == "callable" and (task.data is None) == (task.num_items is None):
        raise ConfigError(
            f"{source}: a callable task needs either [task].data (a JSONL file of items) or "
            "[task].num_items (items 0..N-1), not both"
        )
    if bench.gpus and "auto" not in bench.sources and "nvml" not in bench.sources:
        raise ConfigError(f"{source}: [bench].gpus selects NVIDIA GPUs, but [bench].sources does not include nvml")
    return TaskConfig(task, bench, source)


def task_config_to_dict(cfg: TaskConfig) -> dict[str, Any]:
    """The config as run.json records it (every key, unset ones as None); validate_task_config reads it back."""
    task = {k: v for k, v in dataclasses.asdict(cfg.task).items() if cfg.task.kind in _ONLY_FOR.get(k, TASK_KINDS)}
    bench = {k: v for k, v in dataclasses.asdict(cfg.bench).items() if k not in SERVER_ONLY_BENCH_KEYS}
    return {"task": _plain(task), "bench": _plain(bench)}
