"""lc4: language-guided video colorization (L-C4) on Stable Diffusion 1.5."""

__version__ = "0.1.0"
