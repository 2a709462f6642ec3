"""Run a source probe as an unprivileged user, to get a real EACCES from a fake device tree.

Tests run as root, and root ignores file modes. So the child process imports fastmeter first (the interpreter and
the venv may live where nobody cannot read) and only then drops to uid/gid 65534 (nobody); every file the probe
opens afterwards is checked against its mode. A non-root runner keeps its uid and gets EACCES from the mode alone.
The fake tree must be traversable by nobody: build it under ``world_readable_dir()``, not pytest's private tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

NOBODY = 65534

_CHILD = f"""
import json, os, sys
from fastmeter import _core
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid({NOBODY})
    os.setuid({NOBODY})
try:
    r = _core.probe(sys.argv[1], json.loads(sys.argv[2]))
    print(json.dumps({{"ok": True, "channels": [c["name"] for c in r["channels"]], "left_out": r["left_out"]}}))
except _core.SourceError as e:
    print(json.dumps({{"ok": False, "message": e.args[0], "kind": e.args[1]}}))
"""


def world_readable_dir() -> Path:
    """A fresh temporary directory every user may traverse (pytest's tmp_path is private to its owner)."""
    d = Path(tempfile.mkdtemp(prefix="fastmeter-fake-"))
    d.chmod(0o755)
    return d


def probe_unprivileged(source: str, options: dict[str, str], env: dict[str, str]) -> dict[str, object]:
    """_core.probe(source, options) as nobody; returns {"ok": True, "channels": [names], "left_out": [lines]} or
    {"ok": False, "message", "kind"}."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, source, json.dumps(options)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return json.loads(out.stdout)
