#!/usr/bin/env bash
# Train the demo model from nothing on the procedural benchmark, through train.py and the stage
# configs (VAE/E^lum stage 0, stage 1, stage 2), then export it to lc4/assets/demo-model and
# measure it (benchmarks/synthetic_eval.py). Budget: <= 60 minutes on 2 CPU cores.
# Steps can be scaled: STEPS0=... STEPS1=... STEPS2=... bash scripts/train_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
S0=${STEPS0:-1800}; S1=${STEPS1:-1500}; S2=${STEPS2:-500}
rm -rf runs/demo_stage0 runs/demo_stage1 runs/demo_stage2
$PY train.py fit --config configs/demo/stage0.yaml --trainer.max_steps "$S0"
$PY train.py fit --config configs/demo/stage1.yaml --trainer.max_steps "$S1"
$PY train.py fit --config configs/demo/stage2.yaml --trainer.max_steps "$S2"
mkdir -p lc4/assets
rm -rf lc4/assets/demo-model.new && cp -r runs/demo_stage2/export lc4/assets/demo-model.new
rm -rf lc4/assets/demo-model && mv lc4/assets/demo-model.new lc4/assets/demo-model
du -sh lc4/assets/demo-model
$PY benchmarks/synthetic_eval.py --model lc4/assets/demo-model --videos 24
