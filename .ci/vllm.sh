#!/usr/bin/env bash
# CI: the real-vLLM tests. Builds (or reuses) the cached vLLM venv, then runs the `vllm`-marked tests with the
# current interpreter (which has fastmeter[test]); the tests start vLLM from that venv and must not skip.
# Budget: install ≈4 min on a fresh machine, server start ≈1–1.5 min, offline engine ≈1–1.5 min.
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTMETER_VLLM_VENV=${FASTMETER_VLLM_VENV:-$HOME/.cache/fastmeter/vllm-venv}

echo "== vLLM venv"
bash tests/servers/vllm_env.sh

echo "== real vLLM tests"
start=$(date +%s)
FASTMETER_REQUIRE_VLLM=1 python -m pytest -m vllm tests
echo "vLLM tests took $(($(date +%s) - start)) s"
