"""What a run's measured energy means outside the rack: grams of CO2-equivalent and money.

Both scale the measured energy (the counted channels only, e.g. the GPUs; not the rest of the server, the
network or embodied carbon) by the data centre's PUE to facility energy, then by a configured grid carbon
intensity or electricity price. The result carries those assumptions so a reader of run.json sees what it
rests on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastmeter.load.config_types import BenchSettings

J_PER_KWH = 3.6e6

SCOPE = "measured energy of the counted channels only (e.g. GPUs), not the rest of the host nor embodied carbon"


def facility_kwh(energy_j: float, pue: float) -> float:
    """Facility energy in kWh: measured IT energy times the power usage effectiveness."""
    return energy_j / J_PER_KWH * pue


def _per_unit(total: float, count: float, scale: float) -> float | None:
    return total / count * scale if count else None


def carbon_figures(energy_j: float, grid_gco2_per_kwh: float, pue: float, requests: int, output_tokens: int
                   ) -> dict[str, Any]:
    """gCO2e of `energy_j` at `grid_gco2_per_kwh` and `pue`, in total, per request and per 1k output tokens."""
    gco2e = facility_kwh(energy_j, pue) * grid_gco2_per_kwh
    return {
        "gco2e": gco2e,
        "gco2e_per_request": _per_unit(gco2e, requests, 1.0),
        "gco2e_per_1k_output_tokens": _per_unit(gco2e, output_tokens, 1e3),
        "grid_gco2_per_kwh": grid_gco2_per_kwh,
        "pue": pue,
        "assumption": f"gCO2e = energy_j / 3.6e6 x pue x grid_gco2_per_kwh (a configured average grid intensity); "
                      f"{SCOPE}",
    }


def cost_figures(energy_j: float, price_per_kwh: float, currency: str, pue: float, requests: int,
                 output_tokens: int) -> dict[str, Any]:
    """Electricity cost of `energy_j` at `price_per_kwh` and `pue`, in total, per request and per 1M output
    tokens (hardware, staff and the rest of the host are not included)."""
    cost = facility_kwh(energy_j, pue) * price_per_kwh
    return {
        "cost": cost,
        "cost_per_request": _per_unit(cost, requests, 1.0),
        "cost_per_1m_output_tokens": _per_unit(cost, output_tokens, 1e6),
        "currency": currency,
        "price_per_kwh": price_per_kwh,
        "pue": pue,
        "assumption": f"cost = energy_j / 3.6e6 x pue x price_per_kwh (electricity only); {SCOPE}",
    }


def carbon_cost_summary(bench: BenchSettings, summary: dict[str, Any]) -> dict[str, Any]:
    """Summary entries "carbon" and "cost" for the [bench] settings that ask for them (none when unset)."""
    energy_j, requests, tokens = summary["energy_j"], summary["requests_ok"], summary["output_tokens"]
    out: dict[str, Any] = {}
    if bench.grid_gco2_per_kwh is not None:
        out["carbon"] = carbon_figures(energy_j, bench.grid_gco2_per_kwh, bench.pue, requests, tokens)
    if bench.price_per_kwh is not None:
        out["cost"] = cost_figures(energy_j, bench.price_per_kwh, bench.currency, bench.pue, requests,
                                   tokens)
    return out
