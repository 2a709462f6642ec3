"""The torch side every model kind shares: the device, the precision context, waiting for the device, and the
weights rule (a state-dict file, or "random" said explicitly)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.tasks.base import need_extra
from fastmeter.tasks.config import RANDOM_WEIGHTS, TaskSettings

_AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


class TorchEnv:
    """torch for one task: `device`, `autocast()` for the configured precision, `sync()` after a batch."""

    def __init__(self, task: TaskSettings) -> None:
        self.torch = torch = need_extra("torch", f'kind = "{task.kind}"')
        try:
            self.device = torch.device(task.device)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f'[task].device = "{task.device}" is not a torch device ({exc}); use e.g. "cpu" or "cuda:0"'
            ) from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f'[task].device = "{task.device}", but torch sees no CUDA device here; use "cpu" or '
                "install a CUDA build of torch"
            )
        self.precision = task.precision
        torch.manual_seed(task.seed)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """fp32: nothing; bf16/fp16: torch.autocast on the device (weights stay fp32, matmuls run in the dtype)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=getattr(self.torch, _AUTOCAST[self.precision]))

    def sync(self) -> None:
        """Wait for the device: a batch's window must end when its work is done, not when it was queued."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def load_weights(self, model: Any, weights: str) -> Any:
        """`model` in eval mode on the device, with the state dict from `weights` unless it is "random"."""
        if weights != RANDOM_WEIGHTS:
            path = Path(weights)
            if not path.is_file():
                raise ConfigError(
                    f'[task].weights: no file {weights} (give a state-dict file, or "random" for random initialisation)'
                )
            try:
                state = self.torch.load(path, map_location="cpu", weights_only=True)
                model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            except Exception as exc:  # a foreign or damaged file: say which and why, once
                raise ConfigError(
                    f"[task].weights: cannot load {weights} into the model: {type(exc).__name__}: {str(exc)[:300]}"
                ) from None
        return model.to(self.device).eval()
