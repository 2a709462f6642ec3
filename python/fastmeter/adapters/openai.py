"""OpenAI-compatible streaming (vLLM, SGLang, TensorRT-LLM trtllm-serve, llama.cpp server).

POST /v1/completions or /v1/chat/completions with ``stream: true`` and ``stream_options.include_usage: true``.
Events are ``data: {json}``; the stream ends with ``data: [DONE]``; the usage chunk has ``choices: []``. Servers
that ignore ``include_usage`` (llama.cpp) get their tokens counted and the record marked ``tokens_counted``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastmeter.adapters.base import (
    GenRequest,
    JsonEventStream,
    RequestRecord,
    StreamError,
    apply_event,
)
from fastmeter.errors import ConfigError

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
_DONE = b"[DONE]"


@dataclass(frozen=True)
class OpenAIAdapter:
    """``endpoint`` is "completions" or "chat"; ``ignore_eos`` (vLLM, SGLang) forces exactly max_tokens outputs;
    ``extra_body`` is merged into every request body (sampling parameters and the like)."""

    model: str
    endpoint: str = "completions"
    ignore_eos: bool = False
    extra_body: dict[str, Any] | None = None
    name: str = "openai"

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise ConfigError(f"openai endpoint {self.endpoint!r} is not one of {sorted(ENDPOINTS)}")

    def build(self, request: GenRequest, request_id: str) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        if self.ignore_eos:
            body["ignore_eos"] = True
        if self.extra_body:
            body.update(self.extra_body)
        return ENDPOINTS[self.endpoint], body

    def open_stream(self, record: RequestRecord) -> _OpenAIStream:
        return _OpenAIStream(record)


class _OpenAIStream(JsonEventStream):
    """Inside data_received only the terminator is checked; the JSON of each chunk is decoded in ``finish``,
    off the path where arrival times are stamped."""

    __slots__ = ("_raw",)
    missing_terminator = "stream ended without data: [DONE]"

    def __init__(self, record: RequestRecord) -> None:
        super().__init__(record)
        self._raw: list[tuple[bytes, int]] = []

    def event(self, data: bytes, t_ns: int) -> bool:
        if data == _DONE:
            self._done = True
            return True
        self._raw.append((data, t_ns))
        return False

    def finish(self) -> None:
        raw, self._raw = self._raw, []
        error: StreamError | None = None
        try:
            for obj, t_ns in zip(_decode_all(raw), (t for _, t in raw)):
                apply_event(self._interpret, obj, t_ns)
        except StreamError as exc:  # what arrived before it stays recorded
            error = exc
        try:
            super().finish()
        except StreamError as exc:
            error = error or exc
        if error is not None:
            raise error

    def _interpret(self, obj: dict[str, Any], t_ns: int) -> bool:
        if "error" in obj or obj.get("object") == "error":
            err = obj.get("error", obj)
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise StreamError(f"server error in stream: {msg}")
        usage = obj.get("usage")
        if usage:
            self._rec.prompt_tokens = usage.get("prompt_tokens")
            self._rec.completion_tokens = usage.get("completion_tokens")
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            text = choice.get("text") if delta is None else delta.get("content")
            rec = self._rec
            rec.chunk_t_ns.append(t_ns)
            rec.chunk_tokens.append(1 if text else 0)
            if text:
                self._pieces.append(text)
                if rec.first_token_ns is None:
                    rec.first_token_ns = t_ns
            reason = choice.get("finish_reason")
            if reason is not None:
                rec.finish_reason = reason
        return False


def _decode_all(raw: list[tuple[bytes, int]]) -> Iterator[dict[str, Any]]:
    """The events' JSON objects in order. One ``json.loads`` of them all as one array (a single pass of the C
    decoder instead of one Python-level call per chunk); if that fails, event by event, so the error names the
    first bad event and the ones before it are still interpreted."""
    if not raw:
        return
    try:
        objs = json.loads(b"[" + b",".join(d for d, _ in raw) + b"]")
    except ValueError:
        objs = None
    if objs is None or len(objs) != len(raw) or not all(isinstance(o, dict) for o in objs):
        for data, _ in raw:
            yield JsonEventStream.parse(data)
        return
    yield from objs
