"""The fingerprint asks the server for its identity and version (scripted servers answering as vLLM, SGLang,
llama.cpp and TGI do, and one answering nothing), records the FASTMETER_* overrides, and `env --check` and
`compare` treat the server version as a controlled variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.env.fingerprint import collect_fingerprint
from fastmeter.env.readers import is_unavailable
from fastmeter.env.server import collect_server
from tests.emulators.fake_server import FakeServer, Request, Script
from tests.emulators.nvml import FakeNvml
from tests.emulators.openai_server import json_reply, openai_server
from tests.emulators.runs import record_run


def answering(routes: dict[str, object]) -> FakeServer:
    def handler(req: Request) -> Script:
        return json_reply(routes[req.path]) if req.path in routes else json_reply({"error": "no"}, status=404)

    return FakeServer(handler)


@pytest.mark.parametrize(
    ("kind", "routes", "name", "version", "endpoint"),
    [
        ("openai", {"/version": {"version": "0.32.0"}}, "vllm", "0.32.0", "GET /version"),
        (
            "openai",
            {"/get_server_info": {"version": "0.4.9", "tp_size": 1}, "/version": {"version": "x"}},
            "sglang",
            "0.4.9",
            "GET /get_server_info",
        ),
        ("openai", {"/server_info": {"version": "0.5.0"}}, "sglang", "0.5.0", "GET /server_info"),
        (
            "openai",
            {"/props": {"default_generation_settings": {}, "build_info": "b4567-abc"}},
            "llama.cpp",
            "b4567-abc",
            "GET /props",
        ),
        ("tgi", {"/info": {"model_id": "m", "version": "3.0.1"}}, "tgi", "3.0.1", "GET /info"),
    ],
)
def test_the_server_says_who_it_is(kind: str, routes: dict, name: str, version: str, endpoint: str) -> None:
    with answering(routes) as server:
        got = collect_server(server.url + "/v1", kind)
    assert got == {"name": name, "version": version, "endpoint": endpoint}


def test_a_server_that_answers_no_version_endpoint_is_unknown_not_guessed() -> None:
    with answering({"/props": {"total_slots": 1}}) as server:  # no llama.cpp identity key, no version anywhere
        got = collect_server(server.url, "openai")
    assert is_unavailable(got["name"]) and is_unavailable(got["version"]) and got["endpoint"] is None
    assert "GET /version: HTTP 404" in got["version"] and "GET /props: no 'default_generation_settings'" in got["name"]
    # a llama.cpp without build_info: identified, version unknown with the reason
    with answering({"/props": {"default_generation_settings": {}}}) as server:
        got = collect_server(server.url, "openai")
    assert got["name"] == "llama.cpp" and is_unavailable(got["version"])


def test_overrides_are_recorded_by_name_and_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FASTMETER_POWERCAP_ROOT", str(tmp_path))
    fp = collect_fingerprint()
    assert "FASTMETER_POWERCAP_ROOT" in fp["controlled"]["overrides"]
    assert fp["observed"]["overrides"]["FASTMETER_POWERCAP_ROOT"] == str(tmp_path)
    assert "server" not in fp["controlled"]


def test_env_check_and_compare_see_a_server_upgrade(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    base = tmp_path / "fp.json"
    with openai_server(version="0.32.0") as server:
        r = CliRunner().invoke(main, ["env", "--server", server.url, "--save", str(base), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(base.read_text())["controlled"]["server"]["version"] == "0.32.0"
    with openai_server(version="0.33.0") as server:
        r = CliRunner().invoke(main, ["env", "--server", server.url, "--check", str(base)])
    assert r.exit_code == 1 and "server.version" in r.output and "0.32.0" in r.output and "0.33.0" in r.output

    runs = []
    for version in ("0.32.0", "0.33.0"):
        out = tmp_path / version
        with openai_server(version=version) as server:
            runs.append(record_run(out, fake_nvml, server=server))
        assert json.loads((out / "run.json").read_text())["fingerprint"]["controlled"]["server"]["version"] == version
    r = CliRunner().invoke(main, ["compare", *map(str, runs)])
    assert r.exit_code == 2 and "server.version: 0.32.0 vs 0.33.0" in r.output
