#!/usr/bin/env bash
# Peak resident memory of one rank of 2D->3D transfer training (docs/training.md, "Memory")
# as the unlabeled set grows: 100, 1,000 and 10,000 synthetic videos (or the counts given),
# with the teacher online (the default) and from the feature store. Every run trains the same
# number of steps on the same network; the ratio is against the smallest set of the same mode.
#
#   bash bench/transfer_memory.sh [HOLO] [COUNTS...]      e.g. bash bench/transfer_memory.sh build/launcher/holo 100 1000
#
# Needs /usr/bin/time and /usr/bin/python3 with torchvision (the teacher: a ResNet-18 with
# torchvision's names and random weights; nothing is downloaded). Work in $BENCH_DIR
# (default /tmp/holo-bench-transfer), left there.
set -euo pipefail
holo=${1:-build/launcher/holo}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100 1000 10000)
holo=$(readlink -f "$holo")
work=${BENCH_DIR:-/tmp/holo-bench-transfer}
steps=${BENCH_STEPS:-40}
mkdir -p "$work"

if [ ! -f "$work/teacher.pt" ]; then
  /usr/bin/python3 -c "import torch, torchvision; torch.manual_seed(0); \
torch.save(dict(torchvision.models.resnet18().state_dict()), '$work/teacher.pt')"
fi

printf '%-8s %-7s %12s %8s %10s %12s\n' videos teacher "peak RSS MiB" ratio "store MiB" "seconds"
for mode in online store; do
  base=""
  for n in "${counts[@]}"; do
    data="$work/data-$n"
    [ -f "$data/dataset.toml" ] ||
      "$holo" data synth --kind unlabeled --out "$data" --videos "$n" --frames 16 --size 40x32 --seed 1 > /dev/null
    run="$work/run-$mode-$n"
    rm -rf "$run"
    cat > "$work/recipe-$mode-$n.toml" <<EOF
[run]
seed = 1
dir = "$run"
[data]
dataset = "folder"
root = "$data/videos"
[task]
kind = "transfer"
teacher = "$work/teacher.pt"
teacher_arch = "resnet18"
teacher_frames = 16
teacher_source = "$mode"
[model]
name = "resnet3d"
depth = 10
width = 0.25
[sampling]
num_frames = 16
stride = 1
[transform]
crop_size = 32
train_scale_min = 32
train_scale_max = 36
test_scale = 32
[loader]
batch_size = 4
workers = 1
[optim]
lr = 0.01
[train]
max_steps = $steps
epochs = 1000
log_every = 20
[checkpoint]
every_steps = 0
EOF
    start=$(date +%s.%N)
    HOLO_NUM_THREADS=2 /usr/bin/time -f '%M' -o "$work/rss-$mode-$n" \
      "$holo" train "$work/recipe-$mode-$n.toml" > "$work/log-$mode-$n" 2>&1 ||
      { tail -20 "$work/log-$mode-$n" >&2; exit 1; }
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    kib=$(tail -1 "$work/rss-$mode-$n")
    mib=$(echo "scale=1; $kib / 1024" | bc)
    [ -n "$base" ] || base=$kib
    ratio=$(echo "scale=3; $kib / $base" | bc)
    store="-"
    [ ! -d "$run/teacher_features" ] || store=$(du -sm "$run/teacher_features" | cut -f1)
    printf '%-8s %-7s %12s %8s %10s %12.1f\n' "$n" "$mode" "$mib" "$ratio" "$store" "$secs"
  done
done
