#!/usr/bin/env bash
# Builds the pipeline's tests with sanitizers and runs them: `address` (AddressSanitizer, its
# leak checker and UndefinedBehaviorSanitizer) or `thread` (ThreadSanitizer). Holo's own code is
# instrumented; LibTorch, FFmpeg and the other libraries are not, so their bugs show only where
# Holo's code touches the memory. The CLI tests run the regular build's `holo` (HOLO_BINARY).
# Usage: scripts/sanitize.sh address|thread [GTEST_FILTER]   (docs/pipeline.md, "Sanitizers")
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
case "$kind" in
  address) flags="address,undefined" ;;
  thread) flags="thread" ;;
  *)
    echo "usage: scripts/sanitize.sh address|thread [GTEST_FILTER] (got '${kind}')" >&2
    exit 2
    ;;
esac
filter=${2:-*}
root=$(pwd)
dir=$root/build-$kind
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOLO_SANITIZE="$flags"
fi
cmake --build "$dir" -j "$(nproc)" --target test_pipeline

export HOLO_SOURCE_DIR=$root HOLO_TEST_TMP=$dir/test-tmp
export HOLO_BINARY=${HOLO_BINARY:-$root/build/launcher/holo}
if [ ! -x "$HOLO_BINARY" ]; then
  echo "sanitize.sh: $HOLO_BINARY not built: the CLI tests need it (make build)" >&2
  exit 2
fi
# One thread per LibTorch operation: its OpenMP threads synchronise in ways ThreadSanitizer
# does not see (libgomp is not instrumented), which it would report as races.
export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/scripts/tsan.supp}
"$dir/tests/pipeline/test_pipeline" --gtest_filter="$filter"
