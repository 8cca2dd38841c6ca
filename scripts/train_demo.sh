#!/usr/bin/env bash
# Train the demo model from nothing on the procedural benchmark, through train.py and the stage
# configs (VAE/E^lum stage 0, stage 1, stage 2), measure it (benchmarks/synthetic_eval.py) and
# install it as lc4/assets/demo-model (the CLI default; the committed one is this script's output).
# Budget: <= 60 minutes on 2 CPU cores (see docs/results.md for the measured times).
# Steps can be scaled: STEPS0=... STEPS1=... STEPS2=... bash scripts/train_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
S0=${STEPS0:-1800}; S1=${STEPS1:-2500}; S2=${STEPS2:-500}
rm -rf runs/demo_stage0 runs/demo_stage1 runs/demo_stage2
$PY train.py fit --config configs/demo/stage0.yaml --trainer.max_steps "$S0"
$PY train.py fit --config configs/demo/stage1.yaml --trainer.max_steps "$S1"
$PY train.py fit --config configs/demo/stage2.yaml --trainer.max_steps "$S2"
$PY benchmarks/synthetic_eval.py --model runs/demo_stage0/export --reconstruction --videos 16
$PY benchmarks/synthetic_eval.py --model runs/demo_stage2/export --videos 24 --json runs/demo_eval.json
du -sh runs/demo_stage2/export
# the frozen random text encoder is fp16-exact (calibrate_text_encoder), so fp16 storage loses nothing
$PY -c "import torch; from lc4.models.lc4 import LC4Model; LC4Model.from_pretrained('runs/demo_stage2/export')\
.save_pretrained('lc4/assets/demo-model', text_encoder_dtype=torch.float16)"
du -sh lc4/assets/demo-model
$PY -c "import json; a = json.load(open('runs/demo_eval.json'))['short']['instance_accuracy']; \
print(f'installed lc4/assets/demo-model: held-out accuracy {a:.2f}', '(meets' if a >= 0.8 else '(below', 'the 0.8 bar)')"
