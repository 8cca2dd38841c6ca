#!/usr/bin/env python
"""Train an L-C4 stage with LightningCLI: `python train.py fit --config configs/train/stage1_sd15.yaml` (= `lc4 train`)."""

import sys

from lc4.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
