#!/usr/bin/env bash
# CI: the real-container test (marker `docker`). Installs docker.io, starts a daemon without iptables or a bridge
# (servers in containers use the host network), runs the test with FASTMETER_REQUIRE_DOCKER=1 so it cannot skip,
# and stops the daemon. Where the engine cannot run at all (no privileges for it), it says so loudly and stops:
# the container command line and digest recording are still covered by the stand-in tests of the main run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dockerd >/dev/null 2>&1; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null
fi
started=""
if ! docker info >/dev/null 2>&1; then
  dockerd --iptables=false --bridge=none >/tmp/fastmeter-ci-dockerd.log 2>&1 &
  started=$!
  trap '[ -n "$started" ] && kill "$started" 2>/dev/null; wait 2>/dev/null || true' EXIT
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
if ! docker info >/dev/null 2>&1; then
  echo "!! NO CONTAINER ENGINE: dockerd would not start on this machine (log below); the real-docker test did not run"
  tail -n 20 /tmp/fastmeter-ci-dockerd.log || true
  exit 0
fi
FASTMETER_REQUIRE_DOCKER=1 python -m pytest -m docker tests
