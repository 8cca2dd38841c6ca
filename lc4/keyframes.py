"""Colour keyframes beside the sentence (issue 24): frames whose colours are given as images.

A colour keyframe is a frame whose clean latent is known. `LC4Pipeline` encodes each keyframe with
the model's VAE (`keyframe_latents`) and the sampling loop holds those frames at the scheduler's
noise level for the current step (`lc4.sampling.HeldFrames`); TDA and Cross-Clip Fusion carry their
colour to the frames around them, while the prompt still governs what the keyframes do not show.

This module is the part without a sampler: reading and checking keyframes (frame numbers, images
given as paths, PIL images or arrays at any resolution), the `--keyframe FRAME:IMAGE` syntax, and
the clean latents. Every mistake is one `ValueError` / `FileNotFoundError` line that names the
keyframe as the user wrote it (`--keyframe 0:ref.png`, `keyframes[0]`, a batch table entry).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from .color import is_grey, recombine_luminance, resize

log = logging.getLogger("lc4")

__all__ = ["KEYFRAME_HOLDS", "KEYFRAME_LUMINANCE", "KeyframeSpec", "check_keyframe_options", "check_indices", "hold_steps",
           "keyframe_specs", "parse_keyframe_arg", "parse_keyframe_args", "load_image", "load_keyframes",
           "keyframe_pixels", "keyframe_latents"]

#: `keyframe_luminance` choices: the video frame's own CIELAB L (default; a reference from another
#: print still fits) or the keyframe's.
KEYFRAME_LUMINANCE = ("video", "keyframe")
#: `keyframe_hold` choices: at the step's noise level (default, replacement conditioning) or clean at
#: timestep 0 (not in L-C4; `lc4.sampling.HeldFrames.clean_input`).
KEYFRAME_HOLDS = ("noised", "clean")


@dataclass(frozen=True)
class KeyframeSpec:
    """One keyframe as given: frame number, image (path, PIL image or array) and how errors name it."""

    index: int
    image: Any
    label: str


def check_keyframe_options(strength: Any, luminance: Any, strength_name: str = "keyframe_strength",
                           luminance_name: str = "keyframe_luminance", hold: Any = "noised",
                           hold_name: str = "keyframe_hold") -> None:
    """`strength` a number in [0, 1]; `luminance` one of `KEYFRAME_LUMINANCE`, `hold` of `KEYFRAME_HOLDS`."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.integer, np.floating)) \
            or not math.isfinite(strength) or not 0 <= strength <= 1:
        raise ValueError(f"{strength_name} must be a number in [0, 1] (the fraction of the denoising steps during "
                         f"which keyframes are held), got {strength!r}")
    if luminance not in KEYFRAME_LUMINANCE:
        raise ValueError(f"unknown {luminance_name} {luminance!r}; choose one of {', '.join(KEYFRAME_LUMINANCE)}")
    if hold not in KEYFRAME_HOLDS:
        raise ValueError(f"unknown {hold_name} {hold!r}; choose one of {', '.join(KEYFRAME_HOLDS)}")


def hold_steps(strength: float, steps: int) -> int:
    """Denoising steps during which keyframes are held: round(strength · steps), halves rounded up."""
    return min(steps, int(math.floor(strength * steps + 0.5)))


def _frame_number(key: Any, label: str) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise ValueError(f"{label}: a keyframe's frame number must be an integer, got {key!r}")
    if isinstance(key, (int, np.integer)):
        return int(key)
    if isinstance(key, str):
        try:
            return int(key.strip())
        except ValueError:
            pass
    raise ValueError(f"{label}: a keyframe's frame number must be an integer, got {key!r}")


def keyframe_specs(keyframes: Mapping[Any, Any] | Iterable[tuple[Any, Any] | KeyframeSpec] | None,
                   label: str = "keyframes[{index}]") -> list[KeyframeSpec]:
    """Keyframes from `{frame: image}` (or (frame, image) pairs, or `KeyframeSpec`s, which keep their
    labels), sorted by frame; two for one frame is an error.

    `label` formats how a keyframe is named in messages (`{index}` is its frame number as given).
    """
    if keyframes is None:
        return []
    if isinstance(keyframes, Mapping):
        pairs = list(keyframes.items())
    elif isinstance(keyframes, (str, os.PathLike, np.ndarray, torch.Tensor)) or not isinstance(keyframes, Iterable):
        raise ValueError(f"keyframes must map frame numbers to images, e.g. {{0: 'ref.png'}}; got "
                         f"{type(keyframes).__name__}")
    else:
        pairs = list(keyframes)
        if not all(isinstance(p, KeyframeSpec) or (isinstance(p, tuple) and len(p) == 2) for p in pairs):
            raise ValueError("keyframes must map frame numbers to images, e.g. {0: 'ref.png'}, or be (frame, image) "
                             "pairs")
    specs: dict[int, KeyframeSpec] = {}
    for pair in pairs:
        if isinstance(pair, KeyframeSpec):
            key, image, name = pair.index, pair.image, pair.label
        else:
            key, image = pair
            name = label.format(index=key)
        index = _frame_number(key, name)
        if index in specs:
            raise ValueError(f"{name}: two keyframes for frame {index} ({specs[index].label} and {name}); give one "
                             "image per frame")
        specs[index] = KeyframeSpec(index, image, name)
    return [specs[i] for i in sorted(specs)]


def parse_keyframe_arg(text: str) -> tuple[int, str]:
    """`FRAME:IMAGE` (the `--keyframe` syntax) -> (frame number, image path)."""
    head, sep, path = str(text).partition(":")
    if not sep or not head.strip() or not path:
        raise ValueError(f"--keyframe {text}: give FRAME:IMAGE, e.g. --keyframe 0:ref0.png")
    try:
        index = int(head.strip())
    except ValueError:
        raise ValueError(f"--keyframe {text}: the frame number {head.strip()!r} is not an integer "
                         "(give FRAME:IMAGE, e.g. --keyframe 0:ref0.png)") from None
    return index, path


def parse_keyframe_args(values: Iterable[str] | None) -> list[KeyframeSpec]:
    """Every `--keyframe FRAME:IMAGE` of a command line, sorted by frame (two for one frame is an error)."""
    specs: dict[int, KeyframeSpec] = {}
    for text in values or ():
        index, path = parse_keyframe_arg(text)
        label = f"--keyframe {text}"
        if index in specs:
            raise ValueError(f"{label}: two keyframes for frame {index} ({specs[index].label} and {label}); give "
                             "one image per frame")
        specs[index] = KeyframeSpec(index, Path(path).expanduser(), label)
    return [specs[i] for i in sorted(specs)]


def check_indices(specs: Iterable[KeyframeSpec], num_frames: int, video: str = "the video") -> None:
    """Every frame number inside the video (0 ... num_frames - 1), each refusal in one line.

    lc4 has no option that leaves frames out (every frame is colorized; prompts cover every frame),
    so a frame number can only be outside the video: past its end, or negative.
    """
    for spec in specs:
        if spec.index < 0:
            raise ValueError(f"{spec.label}: frame {spec.index} is before the first frame; frames are numbered from "
                             f"0 and negative numbers are not counted from the end ({video} has {num_frames} frames, "
                             f"0-{num_frames - 1})")
        if spec.index >= num_frames:
            raise ValueError(f"{spec.label}: frame {spec.index} is out of range: {video} has {num_frames} "
                             f"frame{'s' if num_frames != 1 else ''} (0-{num_frames - 1})")


def load_image(image: Any, label: str = "keyframe") -> np.ndarray:
    """A keyframe image as uint8 RGB (H, W, 3): a path, a PIL image, a uint8 array or a float array in [0, 1]
    ((H, W, 3), (H, W) grey, or a (3, H, W) tensor)."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{label}: keyframe image not found: {path}")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.load()
                image = im.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"{label}: cannot read the keyframe image {path} ({reason})") from None
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    try:
        array = np.asarray(image)
    except Exception:
        array = None
    if array is None or array.dtype == object or array.ndim not in (2, 3) or \
            (array.ndim == 3 and array.shape[-1] not in (1, 3)):
        shape = getattr(array, "shape", None)
        raise ValueError(f"{label}: a keyframe must be an RGB image (a path, a PIL image, or an array (H, W, 3)); got "
                         f"{type(image).__name__}{'' if shape is None else ' shaped ' + str(tuple(shape))}")
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if min(array.shape[:2]) < 1:
        raise ValueError(f"{label}: the keyframe image is empty ({tuple(array.shape)})")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{label}: keyframe pixels must be uint8 or float in [0, 1], got {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(f"{label}: the keyframe image contains NaN or Inf values")
        array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def load_keyframes(specs: Iterable[KeyframeSpec]) -> dict[int, np.ndarray]:
    """Read every keyframe's image (uint8 RGB (H, W, 3)), in frame order; says so when one has no colour."""
    images = {}
    for spec in specs:
        image = load_image(spec.image, spec.label)
        if is_grey(image[None]):
            log.warning("%s: the keyframe image has no colour; the frame will be held grey", spec.label)
        images[spec.index] = image
    return images


def keyframe_pixels(image: np.ndarray, grey: np.ndarray | torch.Tensor, luminance: str = "video",
                    label: str = "keyframe") -> torch.Tensor:
    """The frame the VAE encodes for a keyframe: float (3, h, w) in [0, 1] at the working size of `grey`.

    `image` (H, W, 3) uint8 is resized (antialiased) to the working size (h, w) of `grey`, the video
    frame's working-resolution grey (h, w) uint8. `luminance="video"`: the keyframe's CIELAB (a, b)
    with the video frame's own L (colours out of the sRGB gamut at that L are pulled towards grey at
    constant L, as in `recombine_luminance`); `"keyframe"`: the keyframe as it is.
    """
    grey = torch.as_tensor(np.asarray(grey) if not isinstance(grey, torch.Tensor) else grey)
    h, w = int(grey.shape[-2]), int(grey.shape[-1])
    H, W = image.shape[:2]
    if abs(math.log((W / H) / (w / h))) > 0.02:
        log.warning("%s: the keyframe is %dx%d but the video's frames are %dx%d at working size: stretched to fit",
                    label, W, H, w, h)
    rgb = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    rgb = resize(rgb[None], (h, w)).clamp(0, 1)  # (1, 3, h, w)
    if luminance == "keyframe":
        return rgb[0]
    if luminance != "video":
        raise ValueError(f"unknown keyframe_luminance {luminance!r}; choose one of {', '.join(KEYFRAME_LUMINANCE)}")
    source = grey.to(torch.uint8).cpu().numpy()[..., None].repeat(3, axis=-1)  # (h, w, 3): only its L is used
    mixed = recombine_luminance(rgb, source)  # uint8 (h, w, 3): the video's L, the keyframe's chroma
    return torch.from_numpy(mixed).permute(2, 0, 1).float() / 255.0


@torch.no_grad()
def keyframe_latents(model, images: Mapping[int, np.ndarray], grey: torch.Tensor, luminance: str = "video",
                     chunk: int = 8, labels: Mapping[int, str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(frame indices (K,), clean latents (K, c, h/f, w/f) float32 on the CPU) of the keyframes.

    `grey`: the video's working-resolution grey frames (T, h, w) uint8 (`lc4.pipeline.working_grey`).
    The frames of `keyframe_pixels` are encoded with the model's VAE, without sampling (the
    posterior's mode, as the VAE round trip of the evaluation does), `chunk` frames at a time.
    """
    indices = sorted(images)
    labels = labels or {}
    pixels = torch.stack([keyframe_pixels(images[i], grey[i], luminance, labels.get(i, f"keyframes[{i}]"))
                          for i in indices])
    vae_dtype, device = model.vae.dtype, next(model.vae.parameters()).device
    latents = [model.encode_frames((pixels[s : s + chunk] * 2 - 1).to(device, vae_dtype), sample=False).float().cpu()
               for s in range(0, len(indices), chunk)]
    return torch.tensor(indices, dtype=torch.long), torch.cat(latents)
