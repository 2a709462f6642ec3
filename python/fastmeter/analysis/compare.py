"""Compare benchmark runs: group repeats, check controlled variables, and gate energy regressions.

Runs are grouped as repeats when their configs (less [bench].output_dir and [server].base_url: where the results
go and where the server listens are not what is measured) and the controlled part of their fingerprints are
equal. The baseline is one such group; every other group is a candidate. A candidate whose controlled variables
differ from the baseline's (GPU, driver, CUDA, power limit, packages such as the server's version, and the
workload: the [workload] and [load] tables) is refused unless mismatches are allowed.

A candidate is a regression on a metric when it is worse than the baseline by more than a threshold AND the
difference is outside the noise: the 95% interval of the difference excludes zero (Welch's t-test with >= 2 runs
per side; a prediction interval of the repeated side when the other side has one run). With one run per side
there is no noise estimate and the threshold alone decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastmeter.env.compare import Difference, compare_fingerprints, flatten
from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.io.rundir import read_run_dir
from fastmeter.load.config import config_to_dict, validate_config
from fastmeter.validity import Validity, combine
from fastmeter.validity import Verdict as VerdictKind

from .stats import Difference as StatDifference
from .stats import Estimate, compare_samples, finite, mean_ci


class RunMismatchError(FastmeterError):
    """Runs whose controlled variables differ were asked to be compared without --allow-mismatch."""


class RunValidityError(FastmeterError):
    """An invalid run, or synthetic runs against measured ones: no comparison of them means anything."""


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    lower_is_better: bool
    path: tuple[str, ...]  # keys into run.json's summary
    fmt: str = ".4g"


def _m(name: str, label: str, lower: bool, *path: str, fmt: str = ".4g") -> Metric:
    return Metric(name, label, lower, path or (name,), fmt)


# Shown in this order; rows no run recorded are left out.
METRICS: dict[str, Metric] = {m.name: m for m in (
    _m("energy_per_output_token_j", "J / output token", True),
    _m("energy_per_token_j", "J / token (in+out)", True),
    _m("output_tokens_per_j", "output tokens / J", False),
    _m("output_tokens_per_s", "output tokens / s", False, fmt=".1f"),
    _m("requests_per_s", "requests / s", False, fmt=".3g"),
    _m("avg_power_w", "average power (W)", True, fmt=".1f"),
    _m("energy_per_request_j", "J / request", True),
    _m("inferences_per_kwh", "inferences / kWh", False, fmt=".4g"),
    _m("energy_j", "energy-to-solution (J)", True),
    _m("ttft_ms_p50", "TTFT p50 (ms)", True, fmt=".1f"),
    _m("ttft_ms_p99", "TTFT p99 (ms)", True, fmt=".1f"),
    _m("itl_ms_p50", "ITL p50 (ms)", True, fmt=".2f"),
    _m("itl_ms_p99", "ITL p99 (ms)", True, fmt=".2f"),
    _m("e2e_ms_p50", "E2E p50 (ms)", True, fmt=".1f"),
    _m("e2e_ms_p99", "E2E p99 (ms)", True, fmt=".1f"),
    _m("accuracy", "accuracy", False),
    _m("accuracy_per_j", "accuracy / J", False),
    _m("accuracy_per_kwh", "accuracy / kWh", False),
    _m("gco2e", "gCO2e", True, "carbon", "gco2e"),
    _m("gco2e_per_1k_output_tokens", "gCO2e / 1k output tokens", True, "carbon", "gco2e_per_1k_output_tokens"),
    _m("cost", "electricity cost", True, "cost", "cost"),
    _m("cost_per_1m_output_tokens", "cost / 1M output tokens", True, "cost", "cost_per_1m_output_tokens"),
)}
# Figures of in-process task runs (fastmeter.tasks): compare them with --metric energy_per_item_j etc.
METRICS.update({m.name: m for m in (
    _m("energy_per_item_j", "J / item", True),
    _m("items_per_s", "items / s", False, fmt=".1f"),
    _m("batch_latency_ms_p50", "batch latency p50 (ms)", True, fmt=".1f"),
    _m("batch_latency_ms_p99", "batch latency p99 (ms)", True, fmt=".1f"),
    _m("top1_accuracy", "top-1 accuracy", False),
    _m("top5_accuracy", "top-5 accuracy", False),
    _m("map", "COCO mAP", False),
)})
DEFAULT_METRIC = "energy_per_output_token_j"


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}")
    return METRICS[name]


@dataclass(frozen=True)
class Run:
    path: Path
    label: str
    config: dict[str, Any]
    fingerprint: dict[str, Any]
    summary: dict[str, Any]
    interrupted: bool
    validity: Validity | None = None  # None: run.json predates validity (compared, with a warning)

    def value(self, m: Metric) -> float | None:
        v: Any = self.summary
        for key in m.path:
            v = v.get(key) if isinstance(v, dict) else None
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    @property
    def model(self) -> str:
        task = self.config.get("task", {})  # an in-process task names its model there
        return str(self.config.get("server", {}).get("model") or task.get("model") or task.get("function") or "-")

    @property
    def server(self) -> str:
        return str(self.config.get("server", {}).get("kind") or "-")


def expand_run_dirs(arg: str | Path) -> list[Path]:
    """A run directory itself, or the run directories directly inside `arg` (repeats, or a sweep's points)."""
    path = Path(arg)
    if (path / "run.json").is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"{arg}: no such run directory")
    runs = sorted(p for p in path.iterdir() if (p / "run.json").is_file())
    if not runs:
        raise ConfigError(f"{arg} holds no run.json, nor do its subdirectories: pass run directories of "
                          "`fastmeter bench`")
    return runs


def load_run(path: Path, label: str) -> Run:
    """A run directory, every file checked (run.json, samples.arrow, requests.arrow): figures from a run whose
    measurements are missing or corrupt are not compared."""
    data = read_run_dir(path).meta
    if not all(isinstance(data.get(k), dict) for k in ("config", "fingerprint")):
        raise ConfigError(f"{path / 'run.json'} is not a fastmeter run (needs config, fingerprint and summary)")
    validity = Validity.from_dict(data["validity"]) if isinstance(data.get("validity"), dict) else None
    return Run(path, label, data["config"], data["fingerprint"], data["summary"], bool(data.get("interrupted")),
               validity)


def check_validity(runs: Sequence[Run]) -> tuple[Validity, list[str]]:
    """(validity of the comparison, warnings). Refuses invalid runs and a mix of synthetic and hardware runs;
    warns on degraded runs, on runs that recorded no validity, and when every run is synthetic."""
    invalid = [r for r in runs if r.validity is not None and r.validity.verdict is VerdictKind.INVALID]
    if invalid:
        lines = [f"  {r.label}: {r.validity.summary()}" for r in invalid if r.validity is not None]
        raise RunValidityError("invalid runs cannot be compared:\n" + "\n".join(lines) +
                               "\nrerun them (see docs/methodology.md, \"Validity\")")
    synthetic = [r.label for r in runs if r.validity is not None and r.validity.verdict is VerdictKind.SYNTHETIC]
    hardware = [r.label for r in runs if r.validity is not None and r.validity.verdict is not VerdictKind.SYNTHETIC]
    if synthetic and hardware:
        raise RunValidityError(f"{', '.join(synthetic)} measured a synthetic waveform or an emulator, "
                               f"{', '.join(hardware)} measured hardware: they cannot be compared; rerun on the "
                               "same kind of source")
    warnings = [f"{r.label} is degraded: {r.validity.summary()}" for r in runs
                if r.validity is not None and r.validity.verdict is VerdictKind.DEGRADED]
    warnings += [f"{r.label} recorded no validity (written before fastmeter judged runs): unverified"
                 for r in runs if r.validity is None]
    if synthetic and len(synthetic) == len(runs):
        warnings.append("every run is synthetic (the synthetic waveform or an emulator): this compares the "
                        "waveforms, not measurements")
    return combine([r.validity for r in runs if r.validity is not None]), warnings


def _labels(paths: Sequence[Path]) -> list[str]:
    """Directory names, or parent/name when two runs share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def load_runs(args: Sequence[str | Path]) -> list[list[Run]]:
    """The runs of each argument, labelled uniquely across all arguments."""
    dirs = [expand_run_dirs(a) for a in args]
    labels = iter(_labels([p for d in dirs for p in d]))
    return [[load_run(p, next(labels)) for p in d] for d in dirs]


def normalized_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in, without the keys that say where, not what."""
    try:
        tables = config_to_dict(validate_config(config))
    except ConfigError:  # written by another version: compare as recorded
        tables = json.loads(json.dumps(config, default=list))
    tables.get("bench", {}).pop("output_dir", None)
    tables.get("server", {}).pop("base_url", None)
    return tables


def workload_of(run: Run) -> dict[str, Any]:
    cfg = normalized_config(run.config)
    if "task" in cfg:  # an in-process task: its data set and how much of it ran are the workload
        task = cfg["task"]
        return {"workload": {k: task.get(k) for k in TASK_WORKLOAD_KEYS if task.get(k) is not None}}
    return {"workload": cfg.get("workload", {}), "load": cfg.get("load", {})}


# The [task] keys that say which work a task run did (the model, weights and precision are what is compared).
TASK_WORKLOAD_KEYS = ("kind", "data", "annotations", "prompt_format", "max_new_tokens", "num_items", "max_batches",
                      "warmup_batches", "image_size")


def controlled_differences(a: Run, b: Run) -> list[Difference]:
    """Fingerprint differences (controlled part), then workload differences ([workload] and [load] tables)."""
    fa, fb = flatten(workload_of(a)), flatten(workload_of(b))
    workload = [Difference(k, fa.get(k, "absent"), fb.get(k, "absent")) for k in sorted(fa.keys() | fb.keys())
                if fa.get(k, "absent") != fb.get(k, "absent")]
    fp = compare_fingerprints(a.fingerprint, b.fingerprint) if "controlled" in a.fingerprint and \
        "controlled" in b.fingerprint else [Difference("fingerprint", "?", "missing")]
    return fp + workload


def _group_key(run: Run) -> str:
    return json.dumps([normalized_config(run.config), run.fingerprint.get("controlled")], sort_keys=True,
                      default=str)


@dataclass
class Group:
    runs: list[Run]
    role: str  # "baseline" or "candidate"

    @property
    def label(self) -> str:
        names = [r.label for r in self.runs]
        return ",".join(names) if len(names) <= 3 else f"{names[0]},... ({len(names)} runs)"

    def values(self, m: Metric) -> list[float]:
        return finite([r.value(m) for r in self.runs])

    def estimate(self, m: Metric) -> Estimate:
        return mean_ci(self.values(m))


def group_runs(runs: Sequence[Run], role: str) -> list[Group]:
    """Repeats of one configuration in one group, in order of first appearance."""
    groups: dict[str, Group] = {}
    for r in runs:
        groups.setdefault(_group_key(r), Group([], role)).runs.append(r)
    return list(groups.values())


@dataclass(frozen=True)
class Verdict:
    candidate: Group
    metric: Metric
    change_pct: float  # (candidate mean - baseline mean) / baseline mean
    worse_pct: float  # change_pct, signed so that positive is worse
    test: StatDifference
    regression: bool
    status: str  # regression, worse[, within threshold], better, within noise, no noise estimate


@dataclass
class Comparison:
    baseline: Group
    candidates: list[Group]
    metric: Metric
    max_regression_pct: float | None
    verdicts: list[Verdict]
    mismatches: dict[str, list[Difference]] = field(default_factory=dict)  # candidate label -> differences
    warnings: list[str] = field(default_factory=list)
    validity: Validity = field(default_factory=Validity)  # of all runs together (check_validity)
    varies: dict[str, str] = field(default_factory=dict)  # candidate label -> the variables it differs in (vary.py)

    @property
    def groups(self) -> list[Group]:
        return [self.baseline, *self.candidates]

    @property
    def regression(self) -> bool:
        return any(v.regression for v in self.verdicts)


def judge(baseline: Group, candidate: Group, m: Metric, max_regression_pct: float | None) -> Verdict:
    a, b = baseline.values(m), candidate.values(m)
    missing = [g.label for g, v in ((baseline, a), (candidate, b)) if not v]
    if missing:
        raise ConfigError(f"metric {m.name} is not recorded in {' and '.join(missing)}; choose another --metric")
    test = compare_samples(a, b)
    base_mean = math.fsum(a) / len(a)
    change = 100.0 * test.diff / abs(base_mean) if base_mean else math.copysign(math.inf, test.diff or 1.0)
    worse = change if m.lower_is_better else -change
    worse_significant = test.significant or test.test == "none"
    regression = max_regression_pct is not None and worse > max_regression_pct and worse_significant
    if regression:
        status = "regression"
    elif test.significant:
        status = "better" if worse < 0 else "worse, within threshold" if max_regression_pct is not None else "worse"
    else:
        status = "no noise estimate" if test.test == "none" else "within noise"
    return Verdict(candidate, m, change, worse, test, regression, status)


def _differences_text(diffs: Sequence[Difference]) -> str:
    return "; ".join(f"{d.key}: {d.a} vs {d.b}" for d in diffs)


def compare_runs(baseline_runs: Sequence[Run], candidate_runs: Sequence[Run], metric_name: str = DEFAULT_METRIC,
                 max_regression_pct: float | None = None, allow_mismatch: bool = False,
                 vary: str | None = None) -> Comparison:
    """Group, check controlled variables (RunMismatchError unless `allow_mismatch`), and judge each candidate.
    `vary` ("server", "model", "concurrency", "rate"; analysis.vary) is the one variable candidates may differ in."""
    m = metric(metric_name)
    if not baseline_runs or not candidate_runs:
        raise ConfigError("compare needs a baseline and at least one other run")
    validity, warnings = check_validity([*baseline_runs, *candidate_runs])
    warnings += [f"{r.label} was interrupted: its figures cover part of the workload"
                 for r in (*baseline_runs, *candidate_runs) if r.interrupted]
    base_groups = group_runs(baseline_runs, "baseline")
    if len(base_groups) > 1:
        diffs = controlled_differences(base_groups[0].runs[0], base_groups[1].runs[0])
        text = _differences_text(diffs) or "their configs differ"
        if not allow_mismatch:
            raise RunMismatchError(f"the baseline runs are not repeats of one configuration ({text}); pass "
                                   "repeats of one configuration as --baseline, or --allow-mismatch to pool them")
        warnings.append(f"baseline runs pooled although they differ: {text}")
    baseline = Group([r for g in base_groups for r in g.runs], "baseline")
    candidates = group_runs(candidate_runs, "candidate")
    from .vary import check_vary, describe

    varies, beyond = check_vary(baseline.runs[0], [(c.label, c.runs[0]) for c in candidates], vary)
    if vary is not None:
        mismatches = {label: [d for ds in extra.values() for d in ds] for label, extra in beyond.items()}
        if beyond and not allow_mismatch:
            lines = [f"  {label}: differs in {describe(extra)}" for label, extra in beyond.items()]
            raise RunMismatchError(f"--vary {vary} declares that only {vary} differs, but these runs differ from the "
                                   "baseline in more, so the comparison would not say what made the difference:\n" +
                                   "\n".join(lines) + "\ncompare runs that differ in one variable, or pass "
                                   "--allow-mismatch to compare anyway")
    else:
        mismatches = {}
        for c in candidates:
            diffs = controlled_differences(baseline.runs[0], c.runs[0])
            if diffs:
                mismatches[c.label] = diffs
    if mismatches and not allow_mismatch:
        lines = [f"  {label}: " + _differences_text(d) for label, d in mismatches.items()]
        raise RunMismatchError("controlled variables differ from the baseline, so these runs do not measure the "
                               "same thing:\n" + "\n".join(lines) + "\nrerun under the same conditions, or pass "
                               "--allow-mismatch to compare anyway")
    for label, d in mismatches.items():
        warnings.append(f"{label} differs from the baseline in controlled variables: {_differences_text(d)}")
    verdicts = [judge(baseline, c, m, max_regression_pct) for c in candidates]
    comparison = Comparison(baseline, candidates, m, max_regression_pct, verdicts, mismatches, warnings, validity)
    comparison.varies = varies
    return comparison


def describe_test(t: StatDifference) -> str:
    if t.test == "welch":
        return f"Welch's t-test (t = {t.t:.3g}, df = {t.df:.3g}, p = {t.p_value:.3g})"
    if t.test == "single-run":
        return f"one run against the spread of the repeated side (t = {t.t:.3g}, df = {t.df:g}, p = {t.p_value:.3g})"
    return "no noise estimate (one run per side): threshold only"
