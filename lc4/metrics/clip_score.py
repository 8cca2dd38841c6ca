"""CLIP score between a text prompt and the frames of a video.

Per frame: ``100 · max(cos(text, image), 0)`` with CLIP's projected, L2-normalised embeddings
(the torchmetrics convention); a video's score is the mean over its frames. The default backend
is transformers' ``CLIPModel`` + ``CLIPTokenizer`` read from a local folder (no hub access).
Images are preprocessed like CLIP's image processor (shortest edge resized with bicubic
filtering, centre crop, mean/std normalisation), with the sizes and statistics of the folder's
``preprocessor_config.json`` when it has one. open_clip is an optional second backend.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from ._video import as_uint8_video

__all__ = ["CLIPScorer", "clip_score", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD"]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _size_value(v: Any, key: str) -> int | None:
    if isinstance(v, int):
        return v
    if isinstance(v, dict):
        for k in (key, "shortest_edge", "height"):
            if k in v:
                return int(v[k])
    return None


def _features(out: Any) -> torch.Tensor:
    """transformers 4.x returns a tensor from get_*_features, 5.x an output with pooler_output."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


_CLIP_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _describe(folder: Path, exc: BaseException) -> str:
    """Which file of a CLIP folder was at fault, as far as the library's message or the folder tells."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    names = ("config.json", *_CLIP_WEIGHTS, "vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json")
    named = [folder / n for n in names if n in text or str(folder / n) in text]
    if not named:
        for n in ("config.json", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json", "vocab.json"):
            p = folder / n
            if p.is_file():
                try:
                    json.loads(p.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    named.append(p)
    if not named:
        weights = [folder / n for n in _CLIP_WEIGHTS if (folder / n).is_file()]
        named = weights[:1] if "weight" in text.lower() or "safetensor" in text.lower() or "header" in text.lower() else []
    where = f"file {named[0]}: " if named else ""
    return f"{where}{type(exc).__name__}: {text}"


class CLIPScorer:
    """Holds a CLIP model and its preprocessing; :meth:`score_per_frame` does the work."""

    def __init__(
        self,
        encode_text: Any,
        encode_images: Any,
        image_size: int,
        crop_size: int,
        mean: tuple[float, ...] = OPENAI_CLIP_MEAN,
        std: tuple[float, ...] = OPENAI_CLIP_STD,
        device: str | torch.device = "cpu",
    ) -> None:
        self._encode_text = encode_text
        self._encode_images = encode_images
        self.image_size, self.crop_size = int(image_size), int(crop_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "CLIPScorer":
        """Load a transformers CLIP folder (``config.json``, weights, tokenizer files)."""
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"CLIP score needs a local transformers CLIP folder (e.g. openai/clip-vit-large-patch14 "
                f"saved with save_pretrained); not a folder: {folder}"
            )
        from transformers import CLIPModel, CLIPTokenizer

        try:
            model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval().to(device)
            tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # a damaged weight/config file, or a folder that is not a CLIP model
            raise ValueError(f"CLIP model folder {folder} cannot be loaded ({_describe(folder, exc)})") from None
        size = crop = int(model.config.vision_config.image_size)
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        pre = folder / "preprocessor_config.json"
        if pre.is_file():
            try:
                cfg = json.loads(pre.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"CLIP preprocessor config {pre} is not valid JSON: {exc}") from None
            if not isinstance(cfg, dict):
                raise ValueError(f"CLIP preprocessor config {pre} must hold a mapping; got {type(cfg).__name__}")
            size = _size_value(cfg.get("size"), "shortest_edge") or size
            crop = _size_value(cfg.get("crop_size"), "height") or crop
            mean = tuple(cfg.get("image_mean", mean))
            std = tuple(cfg.get("image_std", std))
        max_len = int(model.config.text_config.max_position_embeddings)

        def encode_text(prompt: str) -> torch.Tensor:
            tok = tokenizer([prompt], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            return _features(model.get_text_features(**{k: v.to(device) for k, v in tok.items()}))

        def encode_images(pixels: torch.Tensor) -> torch.Tensor:
            return _features(model.get_image_features(pixel_values=pixels))

        return cls(encode_text, encode_images, size, crop, mean, std, device)

    @classmethod
    def from_open_clip(
        cls, model_name: str, checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> "CLIPScorer":
        """Optional backend: an open_clip architecture name and a local checkpoint file."""
        try:
            import open_clip
        except Exception as exc:  # open_clip imports torchvision, which may be missing or broken
            raise ImportError(f"the open_clip backend needs open_clip_torch with torchvision importable: {exc}") from exc
        if not Path(checkpoint).expanduser().is_file():
            raise FileNotFoundError(f"open_clip checkpoint not found: {checkpoint}")
        model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=str(checkpoint), device=device)
        model.eval()
        tokenizer = open_clip.get_tokenizer(model_name)
        size = model.visual.image_size
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = tuple(getattr(model.visual, "image_mean", None) or OPENAI_CLIP_MEAN)
        std = tuple(getattr(model.visual, "image_std", None) or OPENAI_CLIP_STD)

        def encode_text(prompt: str) -> torch.Tensor:
            return model.encode_text(tokenizer([prompt]).to(device))

        def encode_images(pixels: torch.Tensor) -> torch.Tensor:
            return model.encode_image(pixels)

        return cls(encode_text, encode_images, size, size, mean, std, device)

    def preprocess(self, video: Any) -> torch.Tensor:
        """``(T, H, W, 3)`` RGB → normalised ``(T, 3, crop, crop)`` float32 pixels."""
        v = as_uint8_video(video, allow_frame=True)
        out = []
        for frame in v:
            img = Image.fromarray(frame)
            w, h = img.size
            short, long = min(w, h), max(w, h)
            new_long = int(self.image_size * long / short)
            new_w, new_h = (self.image_size, new_long) if w <= h else (new_long, self.image_size)
            img = img.resize((new_w, new_h), Image.BICUBIC)
            left, top = (new_w - self.crop_size) // 2, (new_h - self.crop_size) // 2
            img = img.crop((left, top, left + self.crop_size, top + self.crop_size))
            out.append(np.asarray(img))
        x = torch.from_numpy(rearrange(np.stack(out), "t h w c -> t c h w").copy()).float() / 255.0
        return (x - self.mean) / self.std

    @torch.no_grad()
    def score_per_frame(self, video: Any, prompt: str, batch_size: int = 16) -> np.ndarray:
        """CLIP score of every frame against ``prompt``: ``(T,)`` in [0, 100]."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"CLIP score needs a non-empty text prompt; got {prompt!r}")
        t = self._encode_text(prompt).float()
        t = t / t.norm(dim=-1, keepdim=True)
        pixels = self.preprocess(video)
        scores = []
        for s in range(0, pixels.shape[0], max(1, int(batch_size))):
            f = self._encode_images(pixels[s : s + batch_size].to(self.device)).float()
            f = f / f.norm(dim=-1, keepdim=True)
            scores.append((100.0 * (f @ t.T).squeeze(-1)).clamp(min=0.0).double().cpu())
        return torch.cat(scores).numpy()


def clip_score(
    video: Any, prompt: str, scorer: CLIPScorer | None = None, model_path: str | os.PathLike | None = None
) -> float:
    """Mean CLIP score over frames; give a ready ``scorer`` or a transformers CLIP ``model_path``."""
    if scorer is None:
        if model_path is None:
            raise ValueError("clip_score needs a CLIPScorer or model_path (a local transformers CLIP folder)")
        scorer = CLIPScorer.from_pretrained(model_path)
    return float(scorer.score_per_frame(video, prompt).mean())
