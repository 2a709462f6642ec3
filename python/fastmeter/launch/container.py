"""The container path: the exact `docker run` / `podman run` command line for a [server.container] table, and the
image's identity (its ID and repository digests) read from the local engine before anything starts.

Nothing is pulled: a benchmark of "vLLM 0.x" must run the image the user chose and pinned, so an image that is not
present locally is an error that says how to get it, never a silent download of whatever a tag means today.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.load.config_types import ContainerConfig

INSPECT_TIMEOUT_S = 30.0  # a local `image inspect` answers in well under a second; a hung daemon must not hang bench


class ContainerError(FastmeterError):
    """The container engine is missing, not running, or lacks the image."""


def gpu_options(engine: str, gpus: str, run_gpus: Sequence[int | str]) -> list[str]:
    """The engine's flags that give the container the run's GPUs. docker: `--gpus all` / `--gpus device=0,1`
    (NVIDIA container toolkit); podman: CDI devices `--device nvidia.com/gpu=all` / `nvidia.com/gpu=0`."""
    if gpus == "none":
        return []
    devices = [str(g) for g in run_gpus] if gpus == "run" else []
    if engine == "podman":
        return [x for d in (devices or ["all"]) for x in ("--device", f"nvidia.com/gpu={d}")]
    return ["--gpus", f"device={','.join(devices)}" if devices else "all"]


def container_command(c: ContainerConfig, name: str, run_gpus: Sequence[int | str]) -> list[str]:
    """`ENGINE run --rm --name NAME --network N [GPU flags] [-e K=V] [-v MOUNT] [run_args] IMAGE [args]`: named,
    so it can be stopped by name; removed when it exits, so a rerun does not collide with a leftover."""
    argv = [c.engine, "run", "--rm", "--name", name, "--network", c.network]
    argv += gpu_options(c.engine, c.gpus, run_gpus)
    for key, value in sorted((c.env or {}).items()):
        argv += ["-e", f"{key}={value}"]
    for mount in c.volumes:
        argv += ["-v", mount]
    return [*argv, *c.run_args, c.image, *c.args]


def stop_command(engine: str, name: str, grace_s: float) -> list[str]:
    """SIGTERM to the container's main process, SIGKILL after `grace_s` (the engine escalates)."""
    return [engine, "stop", "-t", str(max(0, round(grace_s))), name]


def inspect_image(engine: str, image: str) -> dict[str, Any]:
    """{"engine", "image", "image_id", "repo_digests"} of a locally present image; ContainerError otherwise."""
    if shutil.which(engine) is None:
        raise ContainerError(
            f"container engine {engine!r} is not on PATH: install it, or set [server.container]"
            ".engine to docker or podman"
        )
    try:
        done = subprocess.run(
            [engine, "image", "inspect", image], capture_output=True, text=True, timeout=INSPECT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise ContainerError(
            f"`{engine} image inspect` did not answer within {INSPECT_TIMEOUT_S:g} s: is the {engine} daemon running?"
        ) from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ContainerError(
            f"image {image} is not available to {engine} ({why[0]}): fastmeter never pulls; run "
            f"`{engine} pull {image}` (or `{engine} load`) first"
        )
    try:
        info = json.loads(done.stdout)[0]
        image_id = str(info["Id"])
        digests = [str(d) for d in info.get("RepoDigests") or []]
    except (ValueError, LookupError, TypeError):
        raise ContainerError(
            f"`{engine} image inspect {image}` answered something that is not an image description; check the engine"
        ) from None
    pinned = image.split("@", 1)[1] if "@" in image else None
    if pinned is not None and not any(d.endswith("@" + pinned) for d in digests) and image_id != pinned:
        raise ConfigError(
            f"image {image} is pinned to {pinned}, but the local image has ID {image_id} and digests "
            f"{', '.join(digests) or 'none'}: pull the pinned image"
        )
    return {"engine": engine, "image": image, "image_id": image_id, "repo_digests": digests}
