#!/usr/bin/env bash
# Train a demo model from nothing on the procedural benchmark, through train.py and the stage
# configs, and measure it (benchmarks/synthetic_eval.py). docs/results.md has every number.
#
# RECIPE=image (default): the shipped demo model (lc4/assets/demo-model, the CLI default), an image
# model applied frame by frame; installs it. 59.8 min measured on 2 idle cores:
#   stage 0  (configs/demo/demo60_stage0.yaml, 800 steps, 16 min): the VAE and E^lum from scratch,
#            the shapes' pixels weighted 8x in the reconstruction
#   stage 1  (demo60_stage1.yaml, 2 700 one-frame steps, 44 min): the wide UNet over MiniLM with
#            phrase values, grounding and the shape-weighted loss
# RECIPE=lc4: the L-C4 chain as measured today (issue 23, in progress; docs/results.md section 9): scores
# it, named and free-colour, at guidance 1.5 with the temporal term at its own scale (EVAL_ARGS), does
# not install it (CMPF is not trained in it). It starts from the shipped image model (RECIPE=image, which
# rebuilds it from nothing in 60 min; START=scratch runs those stages first and starts from their export):
#   free     (lc4_stage1_free_image.yaml, 900 one-frame steps, 19-27 min): half the captions free-colour
#   tda      (lc4_stage1_tda.yaml, 600 steps on 8-frame clips, 18-37 min): fresh stride-1 TDA layers
#            trained alone at lr 2e-3, the rest frozen
#   tda+     (lc4_stage1_tda.yaml + lc4_stage1_tda_more.yaml, layered: 600 steps more at lr 1e-3, 24-36 min)
#   measured on 2 cores on 2026-12-07: 27 + 37 + 36 = 100 min from the shipped model (the first stage
#   beside a test run), so about 160 min from nothing: over the issue's 2 hours
# RECIPE=lc4-joint: the first L-C4 chain (docs/results.md section 1), TDA and CMPF trained jointly:
#   stage 0  (demo60_stage0.yaml, as above)
#   stage 1a (lc4_stage1_image.yaml, 2 700 one-frame steps, 49.7 min measured on one thread beside
#            other jobs): the image model without temporal layers, a quarter of the captions free-colour
#   stage 1b (lc4_stage1_video.yaml, 600 steps, 27 min measured on one thread beside other jobs):
#            TDA added to every transformer block (zero output) and trained on 8-frame clips with
#            CMPF trained jointly, half of the captions free-colour
# A stage written a+b trains on config a with config b layered over it (train.py's repeated --config).
# Resumable: a stage whose export exists is skipped, an interrupted stage continues from its last
# checkpoint. Stage times are appended to runs/demo_times.txt. Sample strips in
# runs/<stage>/lightning_logs/*/samples/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RECIPE=${RECIPE:-image}
START=${START:-shipped}
EVAL_ARGS=()
FREE_IMAGE=()  # the free-colour stage's start: the shipped image model unless START=scratch
case "$RECIPE" in
  image) CONFIGS="demo60_stage0 demo60_stage1"; FINAL=runs/demo60_stage1/export; FREE=0 ;;
  lc4) CONFIGS="lc4_stage1_free_image lc4_stage1_tda lc4_stage1_tda+lc4_stage1_tda_more"; FINAL=runs/s1_tdaonly_1200/export
       FREE=16; EVAL_ARGS=(--guidance 1.5 --temporal-guidance "${TEMPORAL_GUIDANCE:-1.5}")
       case "$START" in
         shipped) ;;
         scratch) CONFIGS="demo60_stage0 demo60_stage1 $CONFIGS"; FREE_IMAGE=(--model.init_from runs/demo60_stage1/export) ;;
         *) echo "START must be shipped or scratch, got '$START'" >&2; exit 2 ;;
       esac ;;
  lc4-joint) CONFIGS="demo60_stage0 lc4_stage1_image lc4_stage1_video"; FINAL=runs/lc4_stage1_video/export; FREE=16 ;;
  *) echo "RECIPE must be image, lc4 or lc4-joint, got '$RECIPE'" >&2; exit 2 ;;
esac
mkdir -p runs
for stage in $CONFIGS; do
  c=${stage##*+}  # the stage's own config: the last layer
  layers=()
  for layer in ${stage//+/ }; do layers+=(--config "configs/demo/$layer.yaml"); done
  out=$(sed -n 's/^ *default_root_dir: *//p' "configs/demo/$c.yaml")
  if [ -f "$out/export/model_index.json" ]; then echo "$c: $out/export exists, skipped"; continue; fi
  resume=()
  if [ -f "$out/checkpoints/last.ckpt" ]; then
    resume=(--ckpt_path "$out/checkpoints/last.ckpt"); echo "$c: resuming from $out/checkpoints/last.ckpt"
  else
    rm -rf "$out"
  fi
  start=$SECONDS
  extra=()
  if [ "$c" = lc4_stage1_free_image ]; then extra=("${FREE_IMAGE[@]}"); fi
  $PY train.py fit "${layers[@]}" "${extra[@]}" "${resume[@]}"
  echo "$c: $((SECONDS - start)) s$([ ${#resume[@]} -gt 0 ] && echo ' (resumed: this part only)')" | tee -a runs/demo_times.txt
done
echo "training took $((SECONDS / 60)) min $((SECONDS % 60)) s in this invocation (runs/demo_times.txt has each stage)"
$PY benchmarks/synthetic_eval.py --model "$FINAL" --videos 24 --free "$FREE" "${EVAL_ARGS[@]}" --json "runs/demo_eval_$RECIPE.json"
if [ "$RECIPE" != image ]; then exit 0; fi
# fp16 storage halves the download; the text encoder is referenced (the wheel), not stored
$PY -c "import torch; from lc4.models.lc4 import LC4Model; LC4Model.from_pretrained('$FINAL')\
.save_pretrained('lc4/assets/demo-model', storage_dtype=torch.float16)"
du -sh lc4/assets/demo-model
$PY -c "import json; a = json.load(open('runs/demo_eval_image.json'))['short']['instance_accuracy']; \
print(f'installed lc4/assets/demo-model: held-out accuracy {a:.2f}', '(meets' if a >= 0.8 else '(below', 'the 0.8 bar)')"
