"""Generate in-process with ``vllm.LLM`` while a fastmeter Meter runs, and write what happened as JSON.

Run with the vLLM venv's interpreter (fastmeter is installed there too):
    python vllm_offline.py MODEL_DIR MAX_TOKENS OUT_JSON
The engine starts worker processes, which is why this is a file with a ``__main__`` guard, not stdin code.
Output: our ``time.monotonic_ns()`` just before and after generation; per request the record made by fastmeter's
in-process adapter (``fastmeter.adapters.vllm_inproc``) from the engine's own timestamps, the energy of its decode
span and its attributed energy, from a synthetic source of constant power ``POWER_W``.
"""

from __future__ import annotations

import json
import sys
import time

PROMPTS = (
    "the energy of one token",
    "a small model on a server",
    "people use water and light at home",
)
POWER_W = 100.0
METER_PERIOD_US = 10_000  # cheap on a shared 2-core machine; exact anyway (the synthetic counter is analytic)


def main(model_dir: str, max_tokens: int, out_path: str) -> None:
    import vllm

    import fastmeter
    from fastmeter.adapters.vllm_inproc import generate
    from fastmeter.bench.energy import attribute_requests, meter_curve

    llm = vllm.LLM(
        model=model_dir,
        load_format="dummy",
        dtype="bfloat16",
        max_model_len=512,
        disable_log_stats=False,  # else RequestOutput.metrics is None
    )
    params = vllm.SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)
    source = {"synthetic": {"base_w": str(POWER_W), "amp_w": "0", "channels": "1"}}
    with fastmeter.Meter(sources="synthetic", period_us=METER_PERIOD_US, source_options=source) as meter:
        before_ns = time.monotonic_ns()
        records, span = generate(llm, PROMPTS, params)
        after_ns = time.monotonic_ns()
        # the curve bench uses (with its error bound); the synthetic counter updates at every poll
        attribution, _ = attribute_requests(
            meter_curve(meter), records, span, "token-weighted", None, METER_PERIOD_US * 1e-6
        )
        requests = []
        for rec, energy_j in zip(records, attribution.energy_j):
            requests.append(
                {
                    "prompt": rec.prompt,
                    "prompt_tokens": rec.prompt_tokens,
                    "completion_tokens": rec.completion_tokens,
                    "finish_reason": rec.finish_reason,
                    "send_ns": rec.send_ns,
                    "scheduled_ns": rec.scheduled_ns,
                    "first_token_ns": rec.first_token_ns,
                    "end_ns": rec.end_ns,
                    "chunk_tokens": rec.chunk_tokens,
                    "decode_energy_j": meter.energy_between(rec.first_token_ns, rec.end_ns)["synthetic0"],
                    "energy_j": float(energy_j),
                }
            )
    result = {
        "span_ns": list(span),
        "requests_j": float(attribution.energy_j.sum()),
        "idle_j": attribution.idle_j,
        "total_j": attribution.total_j,
        "vllm_version": vllm.__version__,
        "fastmeter_version": fastmeter.__version__,
        "max_tokens": max_tokens,
        "power_w": POWER_W,
        "before_ns": before_ns,
        "after_ns": after_ns,
        "requests": requests,
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python vllm_offline.py MODEL_DIR MAX_TOKENS OUT_JSON")
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
