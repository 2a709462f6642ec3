"""The inference server's identity and version, asked of the server itself (a controlled variable: a new vLLM
release changes what a benchmark measures).

Each server kind exposes its version on its own endpoint; we ask the endpoints a kind may have, most specific
first, and record which one answered. Nothing is guessed: a server that answers none of them is recorded as
"unknown" with the reason.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any

from fastmeter.env.readers import unavailable

TIMEOUT_S = 2.0  # a server that cannot answer a version query in this time is not ready to be measured either


def _sglang(body: dict[str, Any]) -> tuple[str, Any]:
    return "sglang", body.get("version")


def _llama_cpp(body: dict[str, Any]) -> tuple[str, Any]:
    # /props names the build (e.g. "b4567-abcdef") in newer servers; older ones answer without it.
    return "llama.cpp", body.get("build_info")


def _vllm(body: dict[str, Any]) -> tuple[str, Any]:
    return "vllm", body.get("version")


def _tgi(body: dict[str, Any]) -> tuple[str, Any]:
    return "tgi", body.get("version")


# (path, reader): an answer is accepted only when the reader finds the key that names that server's version
# (or, for llama.cpp, its identity); server kinds from fastmeter.load.config.
PROBES = {
    "openai": (("/get_server_info", _sglang), ("/server_info", _sglang), ("/props", _llama_cpp), ("/version", _vllm)),
    "tgi": (("/info", _tgi),),
}
_IDENTITY_KEYS = {"/props": "default_generation_settings"}


def _get_json(root: str, path: str) -> tuple[int, Any]:
    """(HTTP status, parsed JSON body or None) of GET root+path; raises OSError or ValueError."""
    url = urllib.parse.urlsplit(root + path)
    conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(url.hostname or "", url.port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", url.path or "/", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(body) if resp.status == 200 else None


def collect_server(base_url: str, kind: str) -> dict[str, Any]:
    """{"name", "version", "endpoint"} of the server at `base_url`; name/version "unavailable: <why>" when no
    endpoint identifies it."""
    tried = []
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    for path, reader in PROBES.get(kind, ()):
        try:
            status, body = _get_json(root, path)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            tried.append(f"GET {path}: {type(exc).__name__}")
            continue
        if not isinstance(body, dict):
            tried.append(f"GET {path}: HTTP {status}")
            continue
        identity = _IDENTITY_KEYS.get(path, "version")
        if identity not in body:
            tried.append(f"GET {path}: no {identity!r} in the answer")
            continue
        name, version = reader(body)
        if version is None:
            version = unavailable(f"GET {path} does not report a version")
        return {"name": name, "version": str(version), "endpoint": f"GET {path}"}
    why = unavailable("no version endpoint answered (" + "; ".join(tried or [f"none known for kind {kind!r}"]) + ")")
    return {"name": why, "version": why, "endpoint": None}
