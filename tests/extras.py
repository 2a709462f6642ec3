"""Tests that need a heavy optional extra (torch, transformers, Lightning, MLflow, Ray).

They run under the README's test command whenever the extra is importable, and skip (saying which extra to install)
when it is not. `.ci/extras.sh` builds the cached venv that has them all and sets FASTMETER_REQUIRE_EXTRAS=1, under
which a missing module is a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str, extra: str) -> ModuleType:
    """Import `module` or skip (fail under FASTMETER_REQUIRE_EXTRAS=1) naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"needs {module} (pip install 'fastmeter[{extra}]'): {exc}"
        if os.environ.get("FASTMETER_REQUIRE_EXTRAS") == "1":
            pytest.fail(message)
        pytest.skip(message)
