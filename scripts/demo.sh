#!/usr/bin/env bash
# The demo behind `make demo`: the main job on the embedded default recipe.
# Usage: scripts/demo.sh PATH/TO/holo
set -euo pipefail
HOLO=${1:-build/launcher/holo}
RECIPE=recipes/demo/synth_resnet3d.toml
RUN_DIR=${HOLO_DEMO_RUN_DIR:-runs/demo}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== build"
"$HOLO" version
echo
echo "== recipe $RECIPE"
"$HOLO" recipe check "$RECIPE" --set run.dir="$RUN_DIR"
mkdir -p "$RUN_DIR"
"$HOLO" recipe show "$RECIPE" --set run.dir="$RUN_DIR" --out "$RUN_DIR/recipe.toml"
cat "$RUN_DIR/recipe.toml"
