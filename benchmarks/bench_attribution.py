"""Throughput of per-request energy attribution: the native sweep against a straightforward numpy version.

Synthetic load: a 1 kHz energy curve with a random-walk power, requests arriving as a Poisson process with
exponential durations (about 200 in flight), each streaming chunks of 1-3 tokens. The numpy versions compute
less than the kernel (no uncertainty; token-weighted without the prefill split), so the ratios flatter them.
Their results are checked against the kernel's. Target: 1M requests over 10M samples in <= 2 s.

Run from the repository root:
``python benchmarks/bench_attribution.py [--requests N] [--samples N] [--chunks-per-request N] [--repeat K]``.
Prints a markdown table and writes JSON to benchmarks/results/attribution_<machine>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import numpy as np

from fastmeter import _core
from fastmeter.attribution import attribute

RESULTS = Path(__file__).resolve().parent / "results"
PERIOD_NS = 1_000_000  # 1 kHz curve


def make_load(n_requests: int, n_samples: int, chunks_per_request: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples, dtype=np.int64) * PERIOD_NS
    power_w = np.clip(300 + np.cumsum(rng.normal(0, 2, n_samples)), 50, 700)
    e = np.concatenate([[0.0], np.cumsum(power_w[:-1] * PERIOD_NS * 1e-9)])
    span = int(t[-1])
    start = np.sort(rng.integers(0, span, n_requests))
    length = rng.exponential(span / n_requests * 200, n_requests).astype(np.int64) + 1
    end = start + length
    first = start + (length * rng.uniform(0.05, 0.3, n_requests)).astype(np.int64)
    k = rng.integers(chunks_per_request // 2, chunks_per_request * 3 // 2 + 1, n_requests)
    offsets = np.concatenate([[0], np.cumsum(k)])
    owner = np.repeat(np.arange(n_requests), k)
    # chunk j of a request at the first token plus an even share of the decode time
    pos = np.arange(offsets[-1]) - offsets[owner]
    chunk_t = first[owner] + (end[owner] - first[owner]) * pos // np.maximum(k[owner], 1)
    tokens = rng.integers(1, 4, offsets[-1])
    return {
        "t_ns": t,
        "energy_j": e,
        "start_ns": start,
        "end_ns": end,
        "first_token_ns": first,
        "chunk_offsets": offsets,
        "chunk_t_ns": chunk_t,
        "chunk_tokens": tokens,
    }


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique without its cost here (seconds for a million int64 under numpy 2.x): sort + mask."""
    y = np.sort(x)
    return y[np.concatenate([[True], y[1:] != y[:-1]])]


def numpy_time_share(load: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """Prefix sums over all cut times: energy per request, prefill per request, idle."""
    t, e, s, en, ft = (load[k] for k in ("t_ns", "energy_j", "start_ns", "end_ns", "first_token_ns"))
    cuts = sorted_unique(np.concatenate([t, s, en, ft]))
    ec = np.interp((cuts - t[0]).astype(np.float64), (t - t[0]).astype(np.float64), e)
    n = np.searchsorted(np.sort(s), cuts[:-1], "right") - np.searchsorted(np.sort(en), cuts[:-1], "right")
    de = np.diff(ec)
    f = np.concatenate([[0.0], np.cumsum(np.where(n > 0, de / np.maximum(n, 1), 0.0))])

    def at(x):
        return f[np.searchsorted(cuts, x)]

    return at(en) - at(s), at(ft) - at(s), float(de[n == 0].sum())


def numpy_token_weighted(load: dict) -> np.ndarray:
    """Token densities per segment, total weight by cumulative deltas, prefix sums; energy per request."""
    t, e, s, en = (load[k] for k in ("t_ns", "energy_j", "start_ns", "end_ns"))
    off, ct, ck = load["chunk_offsets"], load["chunk_t_ns"], load["chunk_tokens"]
    owner = np.repeat(np.arange(len(s)), np.diff(off))
    keep = ck > 0
    owner, ct, ck = owner[keep], ct[keep], ck[keep].astype(np.float64)
    new = np.ones(len(ct), dtype=bool)
    new[1:] = (owner[1:] != owner[:-1]) | (ct[1:] != ct[:-1])
    idx = np.flatnonzero(new)
    g_owner, g_t, g_tok = owner[idx], ct[idx], np.add.reduceat(ck, idx) if len(idx) else ck[:0]
    first_of_req = np.ones(len(g_t), dtype=bool)
    first_of_req[1:] = g_owner[1:] != g_owner[:-1]
    g_from = np.where(first_of_req, s[g_owner], np.roll(g_t, 1))
    dens = np.where(g_t > g_from, g_tok / (np.maximum(g_t - g_from, 1) * 1e-9), 0.0)
    cuts = sorted_unique(np.concatenate([t, s, en, g_t]))
    ec = np.interp((cuts - t[0]).astype(np.float64), (t - t[0]).astype(np.float64), e)
    de = np.diff(ec)
    n = np.searchsorted(np.sort(s), cuts[:-1], "right") - np.searchsorted(np.sort(en), cuts[:-1], "right")
    ia, ib = np.searchsorted(cuts, g_from), np.searchsorted(cuts, g_t)
    dw = np.zeros(len(cuts) + 1)
    dn = np.zeros(len(cuts) + 1, dtype=np.int64)
    np.add.at(dw, ia, dens)
    np.add.at(dw, ib, -dens)
    carries = (dens > 0).astype(np.int64)
    np.add.at(dn, ia, carries)
    np.add.at(dn, ib, -carries)
    w, nw = np.cumsum(dw)[:-2], np.cumsum(dn)[:-2]
    h = np.concatenate([[0.0], np.cumsum(np.where(nw > 0, de / np.where(nw > 0, w, 1.0), 0.0))])
    fallback = (n > 0) & (nw == 0)
    f0 = np.concatenate([[0.0], np.cumsum(np.where(fallback, de / np.maximum(n, 1), 0.0))])
    energy = np.bincount(g_owner, dens * (h[ib] - h[ia]), minlength=len(s))
    return energy + f0[np.searchsorted(cuts, en)] - f0[np.searchsorted(cuts, s)]


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def kernel_args(load: dict, method: str) -> tuple:
    n = len(load["start_ns"])
    return (
        load["t_ns"],
        load["energy_j"],
        load["start_ns"],
        load["end_ns"],
        load["first_token_ns"],
        np.ones(n, dtype=np.uint8),
        load["chunk_offsets"],
        load["chunk_t_ns"],
        load["chunk_tokens"],
        method,
        0.1,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--chunks-per-request", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load = make_load(args.requests, args.samples, args.chunks_per_request)
    rows = []
    for method in ("time-share", "token-weighted"):
        api_s, a = best_of(args.repeat, lambda m=method: attribute(**load, method=m, update_period_s=0.1))
        kernel_s, _ = best_of(args.repeat, lambda m=method: _core.attribute(*kernel_args(load, m)))
        if method == "time-share":
            numpy_s, (energy, prefill, idle) = best_of(args.repeat, lambda: numpy_time_share(load))
            np.testing.assert_allclose(prefill, a.prefill_energy_j, rtol=1e-6, atol=1e-6 * a.total_j)
            np.testing.assert_allclose(idle, a.idle_j, rtol=1e-6)
        else:
            numpy_s, energy = best_of(args.repeat, lambda: numpy_token_weighted(load))
        np.testing.assert_allclose(energy, a.energy_j, rtol=1e-6, atol=1e-6 * a.total_j)
        conservation = abs(a.energy_j.sum() + a.idle_j - a.total_j) / a.total_j
        rows.append(
            {
                "method": method,
                "requests": args.requests,
                "samples": args.samples,
                "chunks": int(load["chunk_offsets"][-1]) if method == "token-weighted" else 0,
                "native_api_s": api_s,
                "native_kernel_s": kernel_s,
                "numpy_s": numpy_s,
                "numpy_over_native": numpy_s / api_s,
                "relative_conservation_error": conservation,
            }
        )
    print("| method | requests | samples | chunks | native API s | kernel s | numpy s | numpy / native |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['requests']:,} | {r['samples']:,} | {r['chunks']:,} "
            f"| {r['native_api_s']:.3f} "
            f"| {r['native_kernel_s']:.3f} | {r['numpy_s']:.3f} | {r['numpy_over_native']:.1f}x |"
        )
    machine = platform.node() or "unknown"
    date = dt.date.today().isoformat()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"attribution_{machine}_{date}.json"
    meta = {
        "machine": machine,
        "date": date,
        "processor": platform.processor(),
        "python": platform.python_version(),
        "repeat": args.repeat,
        "chunks_per_request": args.chunks_per_request,
    }
    path.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
