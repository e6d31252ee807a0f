#!/usr/bin/env bash
# Builds the pipeline's tests with sanitizers and runs them: `address` (AddressSanitizer, its
# leak checker and UndefinedBehaviorSanitizer) or `thread` (ThreadSanitizer). Holo's own code is
# instrumented; LibTorch, FFmpeg and the other libraries are not (docs/pipeline.md,
# "Sanitizers"). The CLI tests run HOLO_BINARY (default: the regular build's `holo`).
# Usage: scripts/sanitize.sh address|thread [GTEST_FILTER]
# CMAKE_ARGS is passed to cmake as for `make`; ASAN_OPTIONS, UBSAN_OPTIONS and TSAN_OPTIONS are
# added after the defaults below (later options win).
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
# Configured every time (a few seconds): a changed flag or CMAKE_ARGS takes effect.
mkdir -p "$dir"
# shellcheck disable=SC2086
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOLO_SANITIZE="$flags" \
  ${CMAKE_ARGS:-} > "$dir/configure.log" 2>&1 || { cat "$dir/configure.log" >&2; exit 1; }
cmake --build "$dir" -j "$(nproc)" --target test_pipeline

export HOLO_SOURCE_DIR=$root HOLO_TEST_TMP=$dir/test-tmp
export HOLO_BINARY=${HOLO_BINARY:-$root/build/launcher/holo}
if [ ! -x "$HOLO_BINARY" ]; then
  echo "sanitize.sh: $HOLO_BINARY not built: the CLI tests need it (make build)" >&2
  exit 2
fi
# One thread per LibTorch operation: its OpenMP threads synchronise in libgomp, which is not
# instrumented.
export OMP_NUM_THREADS=1
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# ignore_noninstrumented_modules: memory and free() calls made from inside the libraries are
# not checked (their atomics, which order them, are invisible to ThreadSanitizer); their locks
# and threads still order Holo's accesses, and every access Holo's code makes is checked.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
"$dir/tests/pipeline/test_pipeline" --gtest_filter="$filter"
