"""A stand-in `docker` executable for tests of the container path where no container engine runs: it records every
invocation (one JSON argv per line in $STANDIN_LOG) and behaves as the engine does for the three commands
fastmeter uses. `image inspect IMAGE` answers from $STANDIN_IMAGES (JSON: image -> {"Id", "RepoDigests"}) or fails
as docker does; `run [options] IMAGE ARGS...` becomes ARGS (exec: the server runs as this process) and notes its
pid under $STANDIN_DIR/<name>; `stop -t N NAME` sends SIGTERM to it and SIGKILL after N seconds."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

# `run` options that take a value (the rest are flags): enough to find the image in what fastmeter builds.
_VALUED = {"--name", "--network", "--gpus", "--device", "-e", "-v", "--shm-size"}


def main(argv: list[str]) -> int:
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps(["docker", *argv]) + "\n")
    images = json.loads(os.environ.get("STANDIN_IMAGES", "{}"))
    state = Path(os.environ["STANDIN_DIR"])
    if argv[:2] == ["image", "inspect"]:
        image = argv[2]
        if image not in images:
            print(f"Error: No such image: {image}", file=sys.stderr)
            return 1
        print(json.dumps([images[image]]))
        return 0
    if argv[:1] == ["run"]:
        i, name = 1, None
        while argv[i].startswith("-"):
            if argv[i] in _VALUED:
                name = argv[i + 1] if argv[i] == "--name" else name
                i += 2
            else:
                i += 1
        (state / str(name)).write_text(str(os.getpid()))
        os.execvp(argv[i + 1], argv[i + 1 :])
    if argv[:1] == ["stop"]:
        grace_s, name = float(argv[2]), argv[3]
        pid = int((state / name).read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return 0
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        return 0
    print(f"stand-in docker: unsupported command {argv!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
