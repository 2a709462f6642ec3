"""`fastmeter env`: show, save or check the environment fingerprint."""

from __future__ import annotations

import json
from typing import Any

import click

from fastmeter.env import (
    Difference,
    Fingerprint,
    collect_fingerprint,
    compare_fingerprints,
    load_fingerprint,
    noise_warnings,
    save_fingerprint,
)
from fastmeter.load.config import SERVER_KINDS

_ALWAYS_GROUPED = ("gpu", "cpu")
_SECTION_TITLES = {
    "controlled": "Controlled (must match between compared runs)",
    "observed": "Observed (state now)",
}


def _display_rows(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted-path rows for people: a mapping of more than one identical scalar (e.g. the same governor on
    every cpufreq policy) collapses into one row "value (all N)"."""
    if isinstance(value, dict) and value:
        scalars = [v for v in value.values() if not isinstance(v, (dict, list))]
        if len(value) > 1 and len(scalars) == len(value) and len(set(map(str, scalars))) == 1:
            return [(prefix, f"{scalars[0]} (all {len(value)}: {', '.join(value)})")]
        items = list(value.items())
    elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return [(prefix, value)]
    rows: list[tuple[str, Any]] = []
    for key, child in items:
        rows.extend(_display_rows(child, f"{prefix}.{key}" if prefix else str(key)))
    return rows


def _format_value(value: Any, key: str) -> str:
    if key.endswith("_bytes") and isinstance(value, int):
        return f"{value} ({value / 2**30:.1f} GiB)"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render_table(fp: Fingerprint) -> str:
    """The fingerprint as grouped, aligned text: one block per section, one group per top-level item."""
    lines: list[str] = []
    for section, title in _SECTION_TITLES.items():
        lines.append(title)
        loose: list[tuple[str, Any]] = []
        groups: list[tuple[str, list[tuple[str, Any]]]] = []
        for key, value in fp[section].items():
            if isinstance(value, dict):
                groups.append((key, [(k, _format_value(v, k)) for k, v in _display_rows(value)]))
            elif key in _ALWAYS_GROUPED:  # e.g. "gpu: unavailable: ..." keeps its own heading
                groups.append((key, [(key, _format_value(value, key))]))
            else:
                loose.append((key, _format_value(value, key)))
        groups.insert(0, ("system", loose))
        width = max((len(k) for _, rows in groups for k, _ in rows), default=0)
        for name, rows in groups:
            if not rows:
                continue
            lines.append(f"  {name}")
            lines.extend(f"    {k.ljust(width)}  {v}" for k, v in rows)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _report_differences(diffs: list[Difference], baseline: str, as_json: bool) -> str:
    if as_json:
        payload = {
            "baseline": baseline,
            "matches": not diffs,
            "differences": [{"key": d.key, "baseline": d.a, "current": d.b} for d in diffs],
        }
        return json.dumps(payload, indent=2)
    if not diffs:
        return f"environment matches {baseline} (all controlled variables equal)"
    width = max(len(d.key) for d in diffs)
    lines = [f"{len(diffs)} controlled variable(s) differ from {baseline}:"]
    lines += [f"  {d.key.ljust(width)}  baseline: {d.a!s}  now: {d.b!s}" for d in diffs]
    return "\n".join(lines)


@click.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--save", "save_path", type=click.Path(dir_okay=False), help="Write the fingerprint as JSON to FILE."
)
@click.option(
    "--check",
    "baseline_path",
    type=click.Path(dir_okay=False),
    help="Compare with a saved fingerprint; list differing controlled variables and exit 1 if any differ.",
)
@click.option("--server", "server_url", default=None, metavar="URL",
              help="Also record the inference server's identity and version (a controlled variable), asked of the "
                   "server at URL.")
@click.option("--server-kind", type=click.Choice(SERVER_KINDS), default="openai", show_default=True,
              help="API of the server at --server (which version endpoints to ask).")
def env_command(as_json: bool, save_path: str | None, baseline_path: str | None, server_url: str | None,
                server_kind: str) -> None:
    """Show the environment fingerprint: GPUs, CPU, memory, OS, container, package versions, FASTMETER_*
    overrides in effect and, with --server, the inference server's version.

    Noise warnings (other GPU processes, high load, warm GPU, CPU governor) go to stderr.
    """
    baseline = load_fingerprint(baseline_path) if baseline_path else None
    fp = collect_fingerprint(server=(server_url, server_kind) if server_url else None)
    for warning in noise_warnings(fp):
        click.echo(f"warning: {warning.message}", err=True)
    if save_path:
        save_fingerprint(fp, save_path)
        click.echo(f"saved fingerprint to {save_path}", err=True)
    if baseline is not None:
        diffs = compare_fingerprints(baseline, fp)
        click.echo(_report_differences(diffs, baseline_path or "", as_json))
        if diffs:
            raise SystemExit(1)
    elif as_json:
        click.echo(json.dumps(fp, indent=2))
    else:
        click.echo(render_table(fp), nl=False)
