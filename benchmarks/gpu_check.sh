#!/usr/bin/env bash
# One-shot checks on a machine with an NVIDIA GPU, CUDA, PyTorch and no network (<= 8 minutes):
# build, real-GPU tests, NVML call latency, highest nvml sampling rate, sensor calibration, and a per-request
# attribution run on concurrent matmul bursts. Results go to $OUT (else benchmarks/results/gpu_check-<time>);
# a short table prints last. Run from the repository root: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu_check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
declare -A STAGES

stage() {  # stage NAME TIMEOUT_S CMD...: run with a time limit, log to $OUT/NAME.log, record its exit code
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  STAGES[$name]="rc${rc}/$((SECONDS - t0))s"
  echo "[$name] exit $rc in $((SECONDS - t0)) s (log: $OUT/$name.log)"
  tail -n 3 "$OUT/$name.log"
  return 0
}

# Time limits sum to 8 minutes. The CUDA load kernel is built when nvcc works; otherwise calibrate uses torch.
stage build 150 "$PY" -m pip install --no-build-isolation --no-deps -q -Ccmake.define.FASTMETER_CUDA=AUTO .
if [[ ${STAGES[build]} != rc0/* ]]; then
  stage build_nocuda 120 "$PY" -m pip install --no-build-isolation --no-deps -q -Ccmake.define.FASTMETER_CUDA=OFF .
fi
# -W default: a warning from torch or the driver stack must not fail a hardware check (pyproject makes them errors).
stage pytest_gpu 90 "$PY" -m pytest tests/gpu -m gpu -q -p no:cacheprovider -W default --junitxml="$OUT/pytest_gpu.xml"
stage latency 30 "$PY" benchmarks/gpu_check.py latency --out "$OUT" --calls 2000
stage rate 40 "$PY" benchmarks/gpu_check.py rate --out "$OUT" --seconds 2
stage calibrate 60 "$PY" -m fastmeter.cli calibrate --gpu 0 --period-ms 400 --duration-s 12 --poll-us 500 \
  -o "$OUT/calibration.json"
stage attribution 60 "$PY" benchmarks/gpu_check.py attribution --out "$OUT" --streams 3 --seconds 20 \
  --calibration "$OUT/calibration.json"

{
  printf '{'
  sep=""
  for k in "${!STAGES[@]}"; do printf '%s"%s": "%s"' "$sep" "$k" "${STAGES[$k]}"; sep=", "; done
  printf '}\n'
} >"$OUT/stages.json"
cat "$OUT/calibrate.log"
"$PY" benchmarks/gpu_check.py summary --out "$OUT"
