"""Hugging Face Text Generation Inference: POST /generate_stream.

Events are ``data:{json}`` (no space) with ``:`` ping lines; each carries one token
``{token: {id, text, logprob, special}}``; the last one also has ``generated_text`` and, with
``parameters.details``, ``details: {finish_reason, generated_tokens, input_length}``. There is no [DONE]: the
event with ``generated_text`` ends the stream. TGI has no ignore_eos, so output lengths follow the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastmeter.adapters.base import (
    GenRequest,
    JsonEventStream,
    RequestRecord,
    StreamError,
)


@dataclass(frozen=True)
class TGIAdapter:
    """``extra_parameters`` is merged into ``parameters`` (temperature, top_p, stop, ...)."""

    extra_parameters: dict[str, Any] | None = None
    name: str = "tgi"

    def build(self, request: GenRequest, request_id: str) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"max_new_tokens": request.max_tokens, "details": True}
        if self.extra_parameters:
            params.update(self.extra_parameters)
        return "/generate_stream", {"inputs": request.prompt, "parameters": params}

    def open_stream(self, record: RequestRecord) -> _TGIStream:
        return _TGIStream(record)


class _TGIStream(JsonEventStream):
    __slots__ = ()
    missing_terminator = "stream ended before the event carrying generated_text"

    def event(self, data: bytes, t_ns: int) -> bool:
        obj = self.parse(data)
        if "error" in obj:
            raise StreamError(f"server error in stream: {obj.get('error_type', 'error')}: {obj['error']}")
        rec = self._rec
        token = obj.get("token")
        if token is not None:
            rec.chunk_t_ns.append(t_ns)
            rec.chunk_tokens.append(1)
            if rec.first_token_ns is None:
                rec.first_token_ns = t_ns
            if not token.get("special"):
                self._pieces.append(token.get("text", ""))
        generated = obj.get("generated_text")
        if generated is None:
            return False
        self._done = True
        self._pieces = [generated]
        details = obj.get("details") or {}
        rec.finish_reason = details.get("finish_reason")
        rec.completion_tokens = details.get("generated_tokens")
        rec.prompt_tokens = details.get("input_length")
        return True
