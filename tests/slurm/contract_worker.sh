#!/bin/bash
# Stand-in for `holo train` in the SLURM protocol tests, following the trainer's contract:
#   holo train RECIPE [--set checkpoint.resume=auto]
#   - one metrics.jsonl line per step in the run directory;
#   - on SIGUSR1 or SIGTERM: finish the step, write checkpoints/step-<8 digits>/manifest.json
#     ("complete": true) and exit with code 3;
#   - checkpoint.resume = "auto": continue from the newest complete checkpoint;
#   - at the end: a final checkpoint, exit code 0.
# Steps take no time. CONTRACT_WORKER_PAUSE_AT=N makes the first start (SLURM_RESTART_COUNT
# unset or 0) wait at step N for a signal, after creating <run>/paused, so that a test can
# preempt it at a known step. Every start is logged to <run>/worker.log.
set -u
if [ "${1:-}" != train ] || [ $# -lt 2 ]; then
  echo "usage: $0 train RECIPE [--set checkpoint.resume=auto]" >&2
  exit 2
fi
recipe=$2
shift 2
# The job trains <run>/slurm/recipe.toml.
run_dir=$(dirname "$(dirname "$recipe")")
max_steps=$(sed -n 's/^max_steps = \([0-9]*\)$/\1/p' "$recipe")
resume=$(sed -n 's/^resume = "\(.*\)"$/\1/p' "$recipe")
if [ "$*" = "--set checkpoint.resume=auto" ]; then resume=auto; fi
log="$run_dir/worker.log"
printf 'start restart=%s args=[%s]\n' "${SLURM_RESTART_COUNT:-0}" "$*" >>"$log"

signal=
trap 'signal=USR1' USR1
trap 'signal=TERM' TERM

save() {
  local dir
  dir="$run_dir/checkpoints/step-$(printf %08d "$1")"
  mkdir -p "$dir"
  printf '{"step": %d, "epoch": 0, "world_size": 1, "complete": true}\n' "$1" >"$dir/manifest.json"
}

step=0
if [ "$resume" = auto ]; then
  newest=$(ls -d "$run_dir"/checkpoints/step-[0-9]* 2>/dev/null | sort | tail -n 1)
  if [ -n "$newest" ]; then
    step=$((10#${newest##*step-}))
    echo "resumed from step $step" >>"$log"
  fi
fi

while [ "$step" -lt "$max_steps" ]; do
  if [ -n "$signal" ]; then
    save "$step"
    echo "got $signal: saved step $step" >>"$log"
    exit 3
  fi
  if [ "${CONTRACT_WORKER_PAUSE_AT:-}" = "$step" ] && [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then
    touch "$run_dir/paused"
    while [ -z "$signal" ]; do sleep 0.1; done
    continue
  fi
  step=$((step + 1))
  printf '{"step": %d, "epoch": 0, "split": "train", "loss": %d.0, "lr": 0.1, "time": 0}\n' \
    "$step" "$((1000 - step))" >>"$run_dir/metrics.jsonl"
done
save "$step"
echo "finished at step $step" >>"$log"
exit 0
