#!/usr/bin/env bash
# Native unit tests: a warnings-as-errors build, then ThreadSanitizer, then AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
run() {
  local dir=$1 sanitize=$2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTMETER_PYTHON=OFF \
    -DFASTMETER_BUILD_TESTS=ON -DFASTMETER_WERROR=ON -DFASTMETER_SANITIZE="$sanitize" >/dev/null
  cmake --build "$dir" >/dev/null
  ctest --test-dir "$dir" --output-on-failure
}
run build/native ""
# Sanitizers slow the stress test 10-50x; a smaller count still crosses threads hundreds of thousands of times.
export FASTMETER_STRESS_ITEMS=300000
TSAN_OPTIONS="halt_on_error=1" run build/native-tsan thread
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  run build/native-asan address,undefined
