#!/usr/bin/env bash
# The fifth attempt (docs/results.md): the demo recipe with all-MiniLM-L6-v2 as the text encoder
# (configs/model/demo_minilm.yaml) and a VAE refined twice. Starts from an existing stage-0 export
# (default: scripts/train_demo.sh's runs/demo_stage0/export); writes runs/minilm_*; about 65 min here.
#   bash benchmarks/minilm_demo.sh [stage-0 export]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
STAGE0=${1:-runs/demo_stage0/export}
$PY - "$STAGE0" <<'PY'
import sys, yaml
from lc4.training.stage_configs import derive_stage_config

def derive(base, out, steps, init_from, **model):
    path = derive_stage_config(base, out, steps=steps, init_from=init_from)
    cfg = yaml.safe_load(path.read_text())
    cfg["model"].update(model)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))

derive("configs/demo/stage0_refine.yaml", "runs/minilm_refine1", 600, sys.argv[1])
derive("configs/demo/stage0_refine.yaml", "runs/minilm_refine2", 900, "runs/minilm_refine1/export", lr=1.5e-4)
minilm = dict(model="configs/model/demo_minilm.yaml")
derive("configs/demo/stage1.yaml", "runs/minilm_stage1", 2500, "runs/minilm_refine2/export",
       calibrate_text_encoder=0, **minilm)
derive("configs/demo/stage2.yaml", "runs/minilm_stage2", 500, "runs/minilm_stage1/export", **minilm)
PY
$PY train.py fit --config runs/minilm_refine1/stage0_refine.yaml
$PY train.py fit --config runs/minilm_refine2/stage0_refine.yaml
$PY benchmarks/synthetic_eval.py --model runs/minilm_refine2/export --reconstruction --videos 48
$PY train.py fit --config runs/minilm_stage1/stage1.yaml
$PY train.py fit --config runs/minilm_stage2/stage2.yaml
for stage in stage1 stage2; do
  $PY benchmarks/synthetic_eval.py --model runs/minilm_$stage/export --videos 24 --json runs/minilm_$stage.json
  $PY benchmarks/binding_errors.py --model runs/minilm_$stage/export --videos 24
done
