#!/usr/bin/env bash
# Builds Holo on a GPU machine against that machine's CUDA-enabled PyTorch (its LibTorch), runs
# the `gpu` tests and the GPU benchmarks, and prints a summary table last.
#
# What the GPU machine lacks (FFmpeg, x264, the NVDEC headers, toml++, xxhash's headers) comes
# prepared from a CPU machine by scripts/gpu-deps.sh into .gpu-deps/root, which travels with the
# working tree. Nothing is installed into /: the tree is used where it lies.
#
# Usage: scripts/gpu-check.sh [build|test|bench|all]...   (default: all)
#   build  configure and build into build-gpu/
#   test   the `gpu` tests (ctest -L gpu), then the whole unit suite's CUDA-sensitive entries
#   bench  NVDEC vs CPU decode, training clips/s vs PyTorch (bf16, batch 32), loader vs training
# Environment: HOLO_GPU_JOBS (default nproc), HOLO_GPU_BENCH_ITERS (default 10),
#   HOLO_GPU_OUT (where logs and JSON go; default build-gpu/gpu-check).
set -uo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
root="$here/.gpu-deps/root"
build="$here/build-gpu"
out="${HOLO_GPU_OUT:-$build/gpu-check}"
jobs="${HOLO_GPU_JOBS:-$(nproc)}"
iters="${HOLO_GPU_BENCH_ITERS:-10}"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"

build_failed=0
say() { echo "gpu-check: $*"; }
row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$summary" >/dev/null; }
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }

if [ ! -f "$root/.holo-gpu-deps" ]; then
  echo "gpu-check: $root is missing; run scripts/gpu-deps.sh on a CPU machine first and carry .gpu-deps" >&2
  exit 2
fi

python="$(command -v python3)"
torch_prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')" || {
  echo "gpu-check: $python has no PyTorch" >&2; exit 2; }
torch_version="$("$python" -c 'import torch; print(torch.__version__)')"
nccl_home="$("$python" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__ or nvidia.nccl.__path__[0]))' 2>/dev/null || true)"
[ -d "$nccl_home" ] || nccl_home="$("$python" -c 'import nvidia.nccl; print(nvidia.nccl.__path__[0])' 2>/dev/null || true)"

# The carried .pc files say /usr: copies of them point at the carried tree.
pcdir="$build/pkgconfig"
mkdir -p "$pcdir"
for pc in "$root"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc "$root"/usr/share/pkgconfig/*.pc; do
  sed -e "s#=/usr#=$root/usr#; s#-L/usr/#-L$root/usr/#g; s#-I/usr/#-I$root/usr/#g" "$pc" > "$pcdir/$(basename "$pc")"
done
export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CPATH="$root/usr/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${nccl_home:+:$nccl_home/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$root/usr/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HOLO_SOURCE_DIR="$here" HOLO_BINARY="$build/launcher/holo" HOLO_TEST_TMP="$build/test-tmp"
export HOLO_CACHE_DIR="$build/cache"

gpu_name="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
row "machine" "${gpu_name:-no GPU} | $(nproc) CPU cores | torch $torch_version"

if want build; then
  say "configure (torch $torch_version at $torch_prefix; NCCL at ${nccl_home:-none})"
  t0=$SECONDS
  nccl_lib="$(ls "$nccl_home"/lib/libnccl.so* 2>/dev/null | head -1)"
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$root/usr" \
    -DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
    ${nccl_lib:+-DHOLO_NCCL_INCLUDE_DIR="$nccl_home/include" -DHOLO_NCCL_LIBRARY="$nccl_lib"} \
    > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; row "configure" "FAILED"; cat "$summary"; exit 1; }
  grep 'holo: torch' "$out/configure.log" | sed 's/^-- //' | tee -a "$out/facts.txt"
  say "build with $jobs jobs"
  if cmake --build "$build" -j "$jobs" -- -k 0 > "$out/build.log" 2>&1; then
    row "build (configure + compile)" "$((SECONDS - t0)) s; $(grep 'holo: torch' "$out/configure.log" | sed 's/.*holo: //')"
  else
    grep -E -A5 'error:|Error ' "$out/build.log" | head -60
    row "build" "FAILED after $((SECONDS - t0)) s (see build.log); the tests that built still run"
    build_failed=1
    [ -x "$HOLO_BINARY" ] || { cat "$summary"; exit 1; }
  fi
fi

if want test; then
  say "gpu tests"
  (cd "$build" && ctest -L gpu --output-on-failure > "$out/ctest-gpu.log" 2>&1)
  rc=$?
  tail -30 "$out/ctest-gpu.log"
  row "ctest -L gpu" "$(grep -E 'tests passed|tests failed' "$out/ctest-gpu.log" | tail -1) (exit $rc)"
  # Each gpu test's skips, so that a test that skipped is not read as one that passed.
  skips="$(grep -c '\[  SKIPPED \]' "$out/ctest-gpu.log" || true)"
  row "gtest cases skipped in the gpu tests" "${skips:-0}"
fi

if want bench; then
  say "bench: NVDEC vs CPU decode"
  "$HOLO_BINARY" bench decode --devices cpu,nvdec --threads "$(nproc)" --python "$python" \
    --json "$out/decode.json" > "$out/bench-decode.log" 2>&1
  tail -25 "$out/bench-decode.log"
  row "bench decode (see bench-decode.log)" "$(grep -E '^nvdec/cpu' "$out/bench-decode.log" | tail -1)"
  # How the decoder's threads are best split between libavcodec and the conversion to RGB on
  # this many cores (docs/pipeline.md, "Threads"; -1 is the decoder's own split).
  n="$(nproc)"
  for k in 0 1 $((n / 8)) -1 $((n / 2)); do
    "$HOLO_BINARY" bench decode --threads "$n" --conversion-threads "$k" --python /nonexistent \
      > "$out/bench-decode-split-$k.log" 2>&1 || true
    row "bench decode --threads $n --conversion-threads $k" \
      "$(grep -E 'full decode|^ +cpu ' "$out/bench-decode-split-$k.log" | tr -s ' ' | tr '\n' ';')"
  done
  say "bench: training clips/s, bf16, batch 32, 16x112x112"
  "$HOLO_BINARY" bench model --device cuda --precision bf16 --batch 32 --frames 16 --size 112 \
    --iters "$iters" --warmup 3 --python "$python" --json "$out/model.json" \
    > "$out/bench-model.log" 2>&1
  tail -25 "$out/bench-model.log"
  row "bench model (see bench-model.log)" "$(grep -c . "$out/bench-model.log") lines"
  for decode in cpu nvdec; do
    say "bench: loader clips/s vs training clips/s (decode on $decode)"
    "$HOLO_BINARY" bench loader --device cuda --batch 32 --decode "$decode" --python "$python" \
      --json "$out/loader-$decode.json" > "$out/bench-loader-$decode.log" 2>&1
    tail -15 "$out/bench-loader-$decode.log"
    row "bench loader, decode $decode" "$(grep -E '^loader/train' "$out/bench-loader-$decode.log" | tail -1)"
  done
fi

echo
echo "== gpu-check summary =="
cat "$summary"
exit "$build_failed"
