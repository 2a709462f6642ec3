#!/usr/bin/env bash
# CI: the tests that need heavy optional extras (torch, torchvision, transformers, Lightning, MLflow, Ray).
# Builds (or reuses) a cached venv from tests/servers/extras-requirements.txt, installs this checkout into it, and
# runs the `extras`-marked tests there with FASTMETER_REQUIRE_EXTRAS=1 so that none can pass by skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
reqs=tests/servers/extras-requirements.txt
venv=${FASTMETER_EXTRAS_VENV:-$HOME/.cache/fastmeter/extras-venv}
stamp="$venv/.requirements-sha256"
want=$(sha256sum "$reqs" | cut -d' ' -f1)

echo "== extras venv ($venv)"
start=$(date +%s)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$reqs"
  echo "$want" >"$stamp"
fi
"$venv/bin/python" -m pip install -q ninja
"$venv/bin/python" -m pip install -q ".[test]"
echo "extras venv ready in $(($(date +%s) - start)) s"

echo "== tests that need the extras"
start=$(date +%s)
FASTMETER_REQUIRE_EXTRAS=1 "$venv/bin/python" -m pytest -m extras tests
echo "extras tests took $(($(date +%s) - start)) s"
