"""Generate in-process with ``vllm.LLM`` while a fastmeter Meter runs, and write what happened as JSON.

Run with the vLLM venv's interpreter (fastmeter is installed there too):
    python vllm_offline.py MODEL_DIR MAX_TOKENS OUT_JSON
The engine starts worker processes, which is why this is a file with a ``__main__`` guard, not stdin code.
Output: our ``time.monotonic_ns()`` just before and after ``generate``; per request the engine's own timestamps
(``RequestOutput.metrics``: queued/scheduled/first-token/last-token, ``time.monotonic()`` seconds), its token
counts, and the energy fastmeter attributes to the decode span [first_token_ts, last_token_ts] from a synthetic
source of constant power ``POWER_W``.
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
        outputs = llm.generate(list(PROMPTS), params)
        after_ns = time.monotonic_ns()
        requests = []
        for out in outputs:
            m = out.metrics
            first_ns, last_ns = round(m.first_token_ts * 1e9), round(m.last_token_ts * 1e9)
            requests.append(
                {
                    "prompt": out.prompt,
                    "prompt_tokens": len(out.prompt_token_ids),
                    "completion_tokens": len(out.outputs[0].token_ids),
                    "finish_reason": out.outputs[0].finish_reason,
                    "num_generation_tokens": m.num_generation_tokens,
                    "queued_ts": m.queued_ts,
                    "scheduled_ts": m.scheduled_ts,
                    "first_token_ts": m.first_token_ts,
                    "last_token_ts": m.last_token_ts,
                    "decode_energy_j": meter.energy_between(first_ns, last_ns)["synthetic0"],
                }
            )
    result = {
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
