#!/usr/bin/env bash
# The demo behind `make demo`: the main job on the embedded default recipes.
#   1. synthesise a motion dataset (moving left vs right: one frame cannot tell them apart);
#   2. train a narrow STC-ResNet-18 on two CPU workers (holo launch --np 2);
#   3. interrupt it with SIGUSR1 mid-run: every worker saves the same step and exits (code 3);
#   4. launch again: it resumes from that checkpoint and finishes;
#   5. evaluate with multi-view testing, and train + evaluate a frame-averaging 2D baseline;
#   6. print both results and draw the training curves.
# Usage: scripts/demo.sh [PATH/TO/holo]
set -euo pipefail
HOLO=${1:-build/launcher/holo}
HOLO=$(cd "$(dirname "$HOLO")" && pwd)/$(basename "$HOLO")
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HOLO_NUM_THREADS=${HOLO_NUM_THREADS:-1}
STC=recipes/demo/motion_stc.toml
BASE2D=recipes/demo/motion_2d_baseline.toml
DATA=runs/demo-data
RUN=runs/demo-stc
RUN2D=runs/demo-2d

echo "== build"
"$HOLO" version
echo
SYNTH_ARGS="--kind motion --classes 2 --videos 600 --frames 32 --size 48x32 --seed 1 --no-frame-code"
echo "== data: holo data synth $SYNTH_ARGS"
# Made again when the synthesis arguments changed since the last demo.
if [ "$(cat "$DATA/.synth-args" 2> /dev/null)" != "$SYNTH_ARGS" ]; then
  rm -rf "$DATA"
  # shellcheck disable=SC2086
  "$HOLO" data synth $SYNTH_ARGS --out "$DATA"
  echo "$SYNTH_ARGS" > "$DATA/.synth-args"
fi
rm -rf "$RUN" "$RUN2D"

echo
echo "== recipes (and the data they name)"
"$HOLO" recipe check "$STC"
"$HOLO" recipe check "$BASE2D"

echo
echo "== train on 2 workers, interrupted by SIGUSR1 after the first checkpoint"
set +e
"$HOLO" launch --np 2 "$STC" &
launch_pid=$!
for _ in $(seq 1 600); do
  if ls "$RUN"/checkpoints/step-* > /dev/null 2>&1; then break; fi
  if ! kill -0 "$launch_pid" 2> /dev/null; then break; fi
  sleep 0.5
done
pkill -USR1 -f "holo train $STC" || true
wait "$launch_pid"
rc=$?
set -e
echo "launch exited with $rc (3: stopped by the signal after saving a checkpoint)"
"$HOLO" ckpt inspect "$RUN" | head -4

echo
echo "== launch again: resumes from the checkpoint"
"$HOLO" launch --np 2 "$STC"

echo
echo "== multi-view evaluation (3 clips per video)"
"$HOLO" launch --np 2 --command eval "$STC" -- --checkpoint "$RUN"

echo
echo "== frame-averaging 2D baseline (same data, same schedule)"
"$HOLO" launch --np 2 "$BASE2D"
"$HOLO" launch --np 2 --command eval "$BASE2D" -- --checkpoint "$RUN2D"

"$HOLO" plot "$RUN"
echo
/usr/bin/env python3 - "$RUN" "$RUN2D" <<'PY' 2>/dev/null || true
import json, sys
rows = []
for run, name in [(sys.argv[1], "STC-ResNet-18 (3D, w 0.25)"), (sys.argv[2], "ResNet-18 2D, frames averaged")]:
    m = json.load(open(run + "/eval-val.json"))["metrics"]
    rows.append((name, m["top1"] * 100, m["mean_class_acc"] * 100, int(m["videos"])))
print("%-32s %8s %16s %7s" % ("model", "top-1 %", "mean class acc %", "videos"))
for r in rows:
    print("%-32s %8.1f %16.1f %7d" % r)
PY
echo
echo "curves: $RUN/curves.svg and $RUN/curves.png; metrics: $RUN/metrics.jsonl"
