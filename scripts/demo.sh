#!/usr/bin/env bash
# The main job on a fresh machine: make a benchmark clip whose colours only the sentence gives,
# colorize it with the default model, and write the MP4 plus a strip (grey | ours | ground truth).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo-output}
mkdir -p "$OUT"
.venv/bin/lc4 synth "$OUT/data" --num-videos 1 --seed 900001 --frames 16 --size 64 --shapes 1-2 --overwrite
CAPTION=$(.venv/bin/python -c "import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))['caption'])" "$OUT/data/manifest.csv")
echo "prompt: $CAPTION"
.venv/bin/lc4 colorize "$OUT/data/grey/000000.mp4" --prompt "$CAPTION" --output "$OUT/colorized.mp4" \
  --steps "${STEPS:-25}" --overwrite
.venv/bin/python -m lc4.strip "$OUT/data/grey/000000.mp4" "$OUT/colorized.mp4" "$OUT/data/videos/000000.mp4" \
  --output "$OUT/strip.png" --overwrite
echo "done: $OUT/colorized.mp4 and $OUT/strip.png"
