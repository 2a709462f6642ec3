"""text-generation: a transformers causal LM from a local directory (its own weights, or random initialisation from
its config.json) generating greedily for a JSONL or MT-Bench prompt file, batch by batch.

A streamer stamps each decoding step on CLOCK_MONOTONIC as generate() hands it over (on the host, after the
step's tokens were copied off the device), so every prompt gets a first-token instant and one instant per token, as
a streamed server response does: per-item and prefill/decode energy then come from the attribution kernel, exactly
as for servers. Tokenisation happens outside the batch's window; the window is generate() itself."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastmeter.adapters.base import RequestRecord
from fastmeter.bench.summary import latencies_ms
from fastmeter.errors import ConfigError
from fastmeter.load.workloads import jsonl_workload, mtbench_workload
from fastmeter.tasks.base import BatchResult, Prepared, Task, TaskScore, need_extra
from fastmeter.tasks.config import RANDOM_WEIGHTS, TaskConfig
from fastmeter.tasks.torch_env import TorchEnv


class StepClock:
    """A generate() streamer that records when each step's tokens arrived: the first `put` is the prompt, every
    later one a decoding step."""

    def __init__(self) -> None:
        self.prompt_ns: int | None = None
        self.step_ns: list[int] = []

    def put(self, value: Any) -> None:
        t = time.monotonic_ns()
        if self.prompt_ns is None:
            self.prompt_ns = t
        else:
            self.step_ns.append(t)

    def end(self) -> None:
        pass


class TextGeneration(Task):
    def __init__(self, cfg: TaskConfig) -> None:
        t = cfg.task
        self.env = TorchEnv(t)
        tf = need_extra("transformers", 'kind = "text-generation"')
        model_dir = Path(t.model or "")
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"[task].model: {model_dir} is not a transformers model directory (no config.json)")
        if t.prompt_format == "mtbench":
            prompts = mtbench_workload(t.data or "", t.max_new_tokens)
        else:
            prompts = jsonl_workload(t.data or "", t.max_new_tokens)
        self.prompts = [p.prompt for p in prompts]
        self.max_new_tokens = [p.max_tokens for p in prompts]
        try:
            self.tokenizer = tf.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            if t.weights == RANDOM_WEIGHTS:
                config = tf.AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
                model = tf.AutoModelForCausalLM.from_config(config)
            else:
                model = tf.AutoModelForCausalLM.from_pretrained(t.weights or str(model_dir), local_files_only=True)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ImportError...
            raise ConfigError(
                f'[task].model: cannot load {model_dir}: {str(exc)[:400]} (weights = "random" '
                "initialises from config.json)"
            ) from None
        # Decoder-only models continue the prompt at the right end: pad on the left.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model.to(self.env.device).eval()
        self.eos_id = self.model.generation_config.eos_token_id
        self.batch_size = t.batch_size
        self.model_dir = str(model_dir)

    def batches(self) -> Iterator[Prepared]:
        for i in range(0, len(self.prompts), self.batch_size):
            texts = self.prompts[i : i + self.batch_size]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True)
            # One generate() call runs to the largest budget of its prompts; each prompt's own budget ends it.
            budgets = self.max_new_tokens[i : i + self.batch_size]
            yield Prepared(len(texts), (texts, enc, budgets))

    def run(self, payload: Any) -> Any:
        texts, enc, budgets = payload
        clock = StepClock()
        enc = enc.to(self.env.device)
        with self.env.torch.inference_mode(), self.env.autocast():
            out = self.model.generate(
                **enc,
                max_new_tokens=max(budgets),
                do_sample=False,
                streamer=clock,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        self.env.sync()
        new = out[:, enc["input_ids"].shape[1] :].cpu()
        prompt_tokens = enc["attention_mask"].sum(dim=1).cpu()
        return texts, budgets, clock, new, prompt_tokens

    def _generated(self, row: Any) -> int:
        """Tokens this row really generated: up to and including its first end-of-sequence token."""
        ids = row.tolist()
        eos = set(self.eos_id if isinstance(self.eos_id, list) else [self.eos_id]) - {None}
        for i, tok in enumerate(ids):
            if tok in eos:
                return i + 1
        return len(ids)

    def item_events(self, results: Sequence[BatchResult]) -> list[RequestRecord]:
        records = []
        for r in results:
            texts, budgets, clock, new, prompt_tokens = r.output
            for j, text in enumerate(texts):
                n = min(self._generated(new[j]), budgets[j], len(clock.step_ns))
                steps = clock.step_ns[:n]
                records.append(
                    RequestRecord(
                        request_id=f"{r.index}-{j}",
                        prompt=text,
                        send_ns=r.t0_ns,
                        first_token_ns=steps[0] if steps else None,
                        end_ns=steps[-1] if steps else r.t1_ns,
                        chunk_t_ns=list(steps),
                        chunk_tokens=[1] * n,
                        prompt_tokens=int(prompt_tokens[j]),
                        completion_tokens=n,
                        text=self.tokenizer.decode(new[j][:n], skip_special_tokens=True),
                    )
                )
        return records

    def score(self, results: Sequence[BatchResult]) -> TaskScore:
        records = self.item_events(results)
        out_tokens = sum(r.completion_tokens or 0 for r in records)
        in_tokens = sum(r.prompt_tokens or 0 for r in records)
        figures: dict[str, Any] = {"input_tokens": in_tokens, "output_tokens": out_tokens}
        # The same latency figures as a server run's, from the same definitions (TTFT from the batch's start).
        for name, values in latencies_ms(records).items():
            figures[f"{name}_ms_p50"] = float(np.percentile(values, 50)) if values else math.nan
            figures[f"{name}_ms_p99"] = float(np.percentile(values, 99)) if values else math.nan
        return TaskScore(
            figures,
            {
                "prompt_tokens": [r.prompt_tokens for r in records],
                "completion_tokens": [r.completion_tokens for r in records],
                "ttft_ms": [(r.first_token_ns - r.send_ns) / 1e6 if r.first_token_ns else None for r in records],
            },
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_dir,
            "prompts": len(self.prompts),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "torch": self.env.torch.__version__,
        }
