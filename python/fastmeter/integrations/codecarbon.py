"""Export a run directory (training or `fastmeter bench`) as a row of CodeCarbon's `emissions.csv`, for users who
already chart those files. No dependency on CodeCarbon.

The columns and their order are CodeCarbon's `EmissionsData` fields (codecarbon/output_methods/emissions_data.py,
3.3 series); units as CodeCarbon writes them: duration s, emissions kg CO2eq, emissions_rate kg/s, *_power W,
*_energy and energy_consumed kWh, water_consumed L. Figures fastmeter did not measure or was not given (grid
intensity, location, hardware models, utilisation) are left empty, never 0. Energies are the counted channels'
(each physical quantity once): GPU channels go to gpu_energy, DRAM to ram_energy, every other counted channel
(CPU package, psys, synthetic) to cpu_energy; energy_consumed is their sum times `pue`, as in CodeCarbon.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from fastmeter.analysis.carbon import J_PER_KWH
from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.io.read import open_trace
from fastmeter.io.rundir import read_json

CODECARBON_COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "water_consumed", "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os",
    "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude",
    "latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
)  # fmt: skip
# CodeCarbon's own timestamp format (local time, no zone).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
_PART = {"gpu": "gpu", "dram": "ram"}


def _run_json(run_dir: Path) -> dict[str, Any]:
    for name in ("training.json", "run.json"):
        if (run_dir / name).is_file():
            return read_json(run_dir / name)
    raise FastmeterError(f"{run_dir} has neither training.json nor run.json: pass a fastmeter run directory")


def emissions_row(
    run_dir: str | Path,
    *,
    project_name: str = "fastmeter",
    grid_gco2_per_kwh: float | None = None,
    pue: float = 1.0,
    wue_l_per_kwh: float | None = None,
    country_iso_code: str = "",
) -> dict[str, Any]:
    """One emissions.csv row (column -> value; None = empty cell) for the run directory `run_dir`."""
    for name, v, low in (
        ("grid_gco2_per_kwh", grid_gco2_per_kwh, 0),
        ("pue", pue, 1),
        ("wue_l_per_kwh", wue_l_per_kwh, 0),
    ):
        if v is not None and not (math.isfinite(v) and v >= low):
            raise ConfigError(f"{name}={v!r} must be a finite number >= {low}")
    path = Path(run_dir)
    run = _run_json(path)
    meta = open_trace(path / "samples.arrow").metadata
    t0_ns, t1_ns = run["span_ns"]
    duration_s = (t1_ns - t0_ns) * 1e-9
    energy = run.get("energy_by_channel_j") or {}
    parts: dict[str, list[float]] = {"cpu": [], "gpu": [], "ram": []}
    for c in meta.get("channels", []):
        if c["in_total"] and c["name"] in energy:
            value = energy[c["name"]]
            parts[_PART.get(c["domain"], "cpu")].append(math.nan if value is None else float(value))
    kwh = {k: math.fsum(v) / J_PER_KWH * pue if v else None for k, v in parts.items()}
    total_kwh = math.fsum(v for v in kwh.values() if v is not None)
    emissions_kg = None if grid_gco2_per_kwh is None else total_kwh * grid_gco2_per_kwh / 1000
    mono_ns, real_ns = meta["realtime_anchor"]["monotonic_ns"], meta["realtime_anchor"]["realtime_ns"]
    end = datetime.fromtimestamp((real_ns + t1_ns - mono_ns) * 1e-9)

    def power_w(part: str) -> float | None:
        e = kwh[part]
        return None if e is None or duration_s <= 0 else e * J_PER_KWH / pue / duration_s

    row: dict[str, Any] = dict.fromkeys(CODECARBON_COLUMNS)
    row.update(
        timestamp=end.strftime(TIMESTAMP_FORMAT),
        project_name=project_name,
        run_id=path.resolve().name,
        duration=duration_s,
        emissions=emissions_kg,
        emissions_rate=None if emissions_kg is None or duration_s <= 0 else emissions_kg / duration_s,
        cpu_power=power_w("cpu"),
        gpu_power=power_w("gpu"),
        ram_power=power_w("ram"),
        cpu_energy=kwh["cpu"],
        gpu_energy=kwh["gpu"],
        ram_energy=kwh["ram"],
        energy_consumed=total_kwh,
        water_consumed=None if wue_l_per_kwh is None else total_kwh * wue_l_per_kwh,
        country_iso_code=country_iso_code,
        gpu_count=len(parts["gpu"]),
        tracking_mode="machine",  # fastmeter meters whole devices, not one process's share
        pue=pue,
        wue=wue_l_per_kwh,
    )
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def write_emissions_csv(run_dir: str | Path, out: str | Path, **options: Any) -> Path:
    """Append the run's row to `out` (CodeCarbon's emissions.csv layout), writing the header when the file is new.
    An existing file with other columns is refused rather than mixed."""
    row = emissions_row(run_dir, **options)
    out = Path(out)
    exists = out.is_file() and out.stat().st_size > 0
    try:
        if exists:
            with out.open(newline="") as f:
                header = next(csv.reader(f), [])
            if tuple(header) != CODECARBON_COLUMNS:
                raise ConfigError(
                    f"{out} has other columns than CodeCarbon's emissions.csv ({len(header)} vs "
                    f"{len(CODECARBON_COLUMNS)}); write to a new file"
                )
        with out.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CODECARBON_COLUMNS)
            if not exists:
                w.writeheader()
            w.writerow({k: "" if v is None else v for k, v in row.items()})
    except OSError as e:
        raise FastmeterError(f"cannot write {out}: {e.strerror or e}") from None
    return out
