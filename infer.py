#!/usr/bin/env python
"""Colorize a video from a sentence: `python infer.py INPUT --prompt TEXT --output OUT.mp4` (= `lc4 colorize`)."""

import sys

from lc4.colorize_cli import main

if __name__ == "__main__":
    sys.exit(main())
