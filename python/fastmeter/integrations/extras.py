"""Importing an optional framework: one error naming the extra that provides it, never a bare ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from fastmeter.errors import FastmeterError


class MissingExtraError(FastmeterError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import `module` (e.g. "pytorch_lightning") or raise MissingExtraError naming `fastmeter[extra]`."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{what} needs {module}, which is not installed ({e}); install it with: pip install 'fastmeter[{extra}]'"
        ) from None
