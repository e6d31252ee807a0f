#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang in their own build folder and runs each
# for FUZZ_SECONDS from its corpus (docs/fuzzing.md). First every reproducer in
# tests/fuzz/<target>/crashes is run once: one that still crashes fails the target without
# fuzzing it. New inputs go into a scratch corpus in the build folder, not into the committed
# one unless FUZZ_MERGE=1. Exits 1 when any target crashed; its input is kept in
# <build>/fuzz/<target>/artifacts and the end of its log is printed.
# Usage: tests/fuzz/run.sh [TARGET...]   (default: every target)
# FUZZ_SECONDS (default 60), FUZZ_BUILD (default build-fuzz), FUZZ_MERGE (0 or 1), CMAKE_ARGS as
# for `make`; ASAN_OPTIONS and UBSAN_OPTIONS are added after the defaults below.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
seconds=${FUZZ_SECONDS:-60}
dir=$root/${FUZZ_BUILD:-build-fuzz}
all=(recipe annotations probe_manifest checkpoint probe)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  if [ ! -f "tests/fuzz/${t}_fuzz.cc" ]; then
    echo "fuzz: no target '$t' (targets: ${all[*]})" >&2
    exit 2
  fi
done

# clang and its libFuzzer runtime are not part of the regular build's dependencies.
if ! command -v clang++ > /dev/null || ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" > /dev/null; then
  echo "fuzz: installing clang and libclang-rt-dev (libFuzzer)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-dev
fi

# Configured every time (a few seconds), as scripts/sanitize.sh does.
mkdir -p "$dir"
# shellcheck disable=SC2086
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DHOLO_FUZZ=ON ${CMAKE_ARGS:-} > "$dir/configure.log" 2>&1 ||
  { cat "$dir/configure.log" >&2; exit 1; }
cmake --build "$dir" -j "$(nproc)" --target holo_fuzzers

export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# One thread per LibTorch operation (the checkpoint target): libgomp is not instrumented.
export OMP_NUM_THREADS=1

failed=()
for t in "${targets[@]}"; do
  bin=$dir/tests/fuzz/${t}_fuzz
  work=$dir/fuzz/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  # Paths are absolute: some targets change their working folder.
  # Seconds per input: the probe decodes every frame of its video.
  timeout=20
  args=(-rss_limit_mb=2048 -print_final_stats=1 "-artifact_prefix=$work/artifacts/")
  if [ "$t" = probe ]; then
    timeout=30
    args+=(-max_len=32768)
  fi
  args+=("-timeout=$timeout")
  [ ! -f "tests/fuzz/$t/dict" ] || args+=("-dict=$root/tests/fuzz/$t/dict")

  reproducers=()
  if [ -d "tests/fuzz/$t/crashes" ]; then
    mapfile -t reproducers < <(find "$root/tests/fuzz/$t/crashes" -type f | sort)
  fi
  if [ ${#reproducers[@]} -gt 0 ]; then
    echo "fuzz: $t: ${#reproducers[@]} reproducers"
    if ! "$bin" "${args[@]}" "${reproducers[@]}" > "$work/reproducers.log" 2>&1 < /dev/null; then
      echo "fuzz: $t: a reproducer in tests/fuzz/$t/crashes still crashes (not fuzzed):" >&2
      tail -n 40 "$work/reproducers.log" >&2
      failed+=("$t")
      continue
    fi
  fi

  echo "fuzz: $t: ${seconds} s from tests/fuzz/$t/corpus"
  if ! "$bin" "${args[@]}" "-max_total_time=$seconds" "$work/corpus" "$root/tests/fuzz/$t/corpus" \
      > "$work/fuzz.log" 2>&1 < /dev/null; then
    echo "fuzz: $t crashed; input in $work/artifacts, log $work/fuzz.log:" >&2
    tail -n 60 "$work/fuzz.log" >&2
    failed+=("$t")
    continue
  fi
  grep -E '^(#[0-9]+ +DONE|stat::(number_of_executed_units|average_exec_per_sec|new_units_added))' \
    "$work/fuzz.log" | sed "s/^/fuzz: $t: /" || true
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$bin" -merge=1 "$root/tests/fuzz/$t/corpus" "$work/corpus" > "$work/merge.log" 2>&1 < /dev/null
    echo "fuzz: $t: merged into tests/fuzz/$t/corpus ($(grep -oE 'added [0-9]+ new units' "$work/merge.log" || echo 'nothing new'))"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no crash"
