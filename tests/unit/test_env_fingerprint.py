"""collect / save / load of fingerprints, and the "unavailable: <why>" path for NVML."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from fastmeter import ConfigError
from fastmeter.env import SCHEMA_VERSION, collect_fingerprint, load_fingerprint, save_fingerprint
from fastmeter.env.fingerprint import validate_fingerprint


def test_fingerprint_is_json_with_schema_and_sections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(tmp_path / "missing-libnvidia-ml.so"))
    fp = collect_fingerprint()
    assert json.loads(json.dumps(fp)) == fp
    assert fp["schema_version"] == SCHEMA_VERSION
    assert set(fp["controlled"]) == {
        "gpu",
        "cpu",
        "memory",
        "os",
        "container",
        "python",
        "packages",
        "cuda_visible_devices",
        "overrides",
    }
    assert set(fp["observed"]) == {"gpu", "cpu", "hostname", "memory", "load_average", "container_evidence",
                                   "overrides"}
    assert "FASTMETER_NVML_LIBRARY" in fp["controlled"]["overrides"]
    assert fp["controlled"]["packages"]["fastmeter"] == metadata.version("fastmeter")


def test_unloadable_nvml_library_is_reported_with_its_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "missing-libnvidia-ml.so"
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(missing))
    fp = collect_fingerprint()
    gpu = fp["controlled"]["gpu"]
    assert gpu.startswith(f"unavailable: cannot load FASTMETER_NVML_LIBRARY={missing}: ")
    assert fp["observed"]["gpu"] == gpu


def test_nvml_library_that_is_not_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    # libc loads fine but has no nvmlInitWithFlags: NVML's "function not found" is reported, not raised.
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", "libc.so.6")
    gpu = collect_fingerprint()["controlled"]["gpu"]
    assert gpu == "unavailable: function not found in the NVML library (driver too old for this query)"


def test_save_then_load_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(tmp_path / "none.so"))
    fp = collect_fingerprint()
    path = tmp_path / "fp.json"
    save_fingerprint(fp, path)
    assert load_fingerprint(path) == fp


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (
            b'{"schema_version": 99, "controlled": {}, "observed": {}}',
            "schema_version 99, this fastmeter reads 1",
        ),
        (b'{"schema_version": 1, "controlled": {}}', "missing object 'observed'"),
        (b"\xff\xfe\x00", "is not UTF-8 text"),
    ],
)
def test_invalid_files_raise_one_clear_config_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_fingerprint(path)


def test_missing_file_and_unwritable_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read fingerprint .*No such file"):
        load_fingerprint(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="cannot write fingerprint to"):
        save_fingerprint({"schema_version": 1}, tmp_path / "no-dir" / "fp.json")


def test_validate_accepts_minimal_shape() -> None:
    fp = {"schema_version": SCHEMA_VERSION, "controlled": {}, "observed": {}}
    assert validate_fingerprint(fp) is fp
