"""Workloads: lists of ``GenRequest`` (prompt text, max_tokens) built from synthetic text or dataset files.

Without a tokenizer we count tokens as whitespace-separated words. The ``random`` workload draws from short,
common English words, each of which is a single token in the usual BPE/SentencePiece vocabularies, so a prompt
of N words is about N tokens (most tokenizers add a few special tokens; the server's usage numbers are the truth
and are what gets recorded). For ShareGPT without ``max_tokens``, the output budget is the word count of the
reference reply, as ``vllm bench serve`` does with its tokenizer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastmeter.adapters.base import GenRequest
from fastmeter.errors import ConfigError
from fastmeter.load.config import read_text_file
from fastmeter.load.config_check import MAX_OUTPUT_TOKENS

PROMPT_PLACEHOLDER = "{prompt}"

_WORDS = (  # noqa: SIM905 (one string reads better than a hundred quoted words)
    "the of and to in is for on that with as it at by from this be or are an was not but all can had "
    "her one our out day get has him his how man new now old see two way who boy did its let put say "
    "she too use time year people good first last long great little own other right big high small "
    "large next early young few public bad same able water light place world house point school work"
).split()


def random_workload(n: int, input_tokens: int, output_tokens: int, seed: int = 0) -> list[GenRequest]:
    """``n`` prompts of exactly ``input_tokens`` words each, asking for ``output_tokens`` tokens.

    Each prompt starts with its index so no two share a prefix cache entry beyond the first word.
    """
    if n < 1 or input_tokens < 1 or output_tokens < 1:
        raise ConfigError(
            f"random workload needs n, input_tokens, output_tokens >= 1, got {n}, "
            f"{input_tokens}, {output_tokens}"
        )
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [str(i)] + rng.choices(_WORDS, k=input_tokens - 1)
        out.append(GenRequest(" ".join(words), output_tokens))
    return out


def jsonl_workload(path: str | Path, default_max_tokens: int | None = None) -> list[GenRequest]:
    """One JSON object per line with ``prompt`` and optional ``max_tokens`` (else ``default_max_tokens``)."""
    out = []
    for lineno, obj in _jsonl(path):
        prompt = obj.get("prompt")
        if not isinstance(prompt, str):
            raise ConfigError(f"{path}:{lineno}: needs a string field 'prompt'")
        max_tokens = obj.get("max_tokens", default_max_tokens)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
            raise ConfigError(
                f"{path}:{lineno}: 'max_tokens' must be an integer from 1 to {MAX_OUTPUT_TOKENS} (or set the "
                f"workload's max_tokens default), got {max_tokens!r}"
            )
        out.append(GenRequest(prompt, max_tokens))
    return _nonempty(out, path)


def mtbench_workload(path: str | Path, max_tokens: int) -> list[GenRequest]:
    """MT-Bench ``question.jsonl`` (question_id, category, turns): the first turn of each question."""
    out = []
    for lineno, obj in _jsonl(path):
        turns = obj.get("turns")
        if not (isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns) and turns[0].strip()):
            raise ConfigError(
                f"{path}:{lineno}: an MT-Bench question needs 'turns', a non-empty list of strings (fields "
                f"question_id, category, turns); got {_short(turns)}"
            )
        out.append(GenRequest(turns[0], max_tokens))
    return _nonempty(out, path)


def sharegpt_workload(path: str | Path, max_tokens: int | None = None) -> list[GenRequest]:
    """ShareGPT JSON: a list of {"id", "conversations": [{"from": "human", "value"}, {"from": "gpt", "value"}]};
    the first human turn of each conversation that has a human turn followed by a reply. A conversation of
    another shape is an error naming its index (a silently skipped one would change the workload)."""
    text = read_text_file(path, "ShareGPT file")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"ShareGPT file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: a ShareGPT file holds a JSON list of conversations; got {_short(data)}")
    out = []
    for i, conv in enumerate(data):
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list) or not all(
            isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str) for t in turns
        ):
            raise ConfigError(
                f"{path}: conversation [{i}] must be an object whose 'conversations' is a list of "
                f'{{"from": "human" or "gpt", "value": TEXT}}; got {_short(conv)}'
            )
        if len(turns) < 2 or turns[0]["from"] != "human" or not turns[0]["value"].strip():
            continue  # a conversation without a prompt and its reply: ShareGPT has many; vLLM skips them too
        budget = max_tokens if max_tokens is not None else min(len(turns[1]["value"].split()), MAX_OUTPUT_TOKENS)
        if budget >= 1:
            out.append(GenRequest(turns[0]["value"], budget))
    return _nonempty(out, path)


def apply_template(requests: Sequence[GenRequest], template: str) -> list[GenRequest]:
    """Put each prompt into ``template`` at ``{prompt}`` (other braces are left alone)."""
    if PROMPT_PLACEHOLDER not in template:
        raise ConfigError(f"prompt template must contain {PROMPT_PLACEHOLDER}, got {template!r}")
    return [GenRequest(template.replace(PROMPT_PLACEHOLDER, r.prompt), r.max_tokens) for r in requests]


def cycling_note(n_prompts: int, n_requests: int) -> str | None:
    """What to tell the user when a run sends more requests than the dataset has prompts (requests cycle through
    the prompts, so a prompt repeats, and a server's prefix cache can answer a repeat cheaper than a new one)."""
    if n_requests <= n_prompts:
        return None
    return (f"the workload has {n_prompts} prompts but the run sends {n_requests} requests (warm-up included): "
            f"prompts repeat, each about {n_requests / n_prompts:.1f} times; a server's prefix cache may make repeats "
            "cheaper than new prompts (lower num_requests, or use a larger dataset)")


def take(requests: Sequence[GenRequest], n: int, shuffle: bool = False, seed: int = 0) -> list[GenRequest]:
    """``n`` requests: in file order (or a seeded shuffle), cycling when the dataset is shorter than ``n``."""
    order = list(requests)
    if shuffle:
        random.Random(seed).shuffle(order)
    return [order[i % len(order)] for i in range(n)]


def _short(v: Any, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    lines = read_text_file(path, "workload file").splitlines()
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}:{lineno}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{lineno}: each line must be a JSON object")
        out.append((lineno, obj))
    return out


def _nonempty(requests: list[GenRequest], path: str | Path) -> list[GenRequest]:
    if not requests:
        raise ConfigError(f"{path}: no usable prompts in this file")
    return requests
