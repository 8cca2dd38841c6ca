"""Where does a two-shape blend come from? Change the cross-attention at inference and measure.

For the two-shape held-out videos, every attn2 layer of the UNet is replaced by the same
computation with one change, and the one-step prediction x̂₀ from pure noise is placed between
each shape's own colour (0) and the other shape's (1), as `binding_errors.py --position` does:

- `trained`: nothing changed (checks that the replacement is exact);
- `oracle`: each shape's pixels attend only to its own words ("red", "star"), from the masks;
- `anti`: each shape's pixels attend only to the other shape's words;
- `phrase-values`: keys from the sentence, values of each shape's and the background's words from
  "a red star" encoded alone (what `phrase_values: true` builds into a model, docs/results.md).

If perfect routing does not bind but clean values do, the blend is in the text states.

    python benchmarks/binding_interventions.py --model runs/cap/mwh/export --modes trained oracle anti phrase-values
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from lc4.color import to_grey
from lc4.data.synthetic import swap_caption_colors
from lc4.evaluation.synthetic import held_out_video, pipeline_colorizer
from lc4.training.grounding import word_token_positions

MODES = ("trained", "oracle", "anti", "phrase-values")


def _binding_errors():
    spec = importlib.util.spec_from_file_location("binding_errors", Path(__file__).with_name("binding_errors.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def video_context(model, video, caption: str, colours) -> dict:
    """Masks, each shape's word positions and the phrase-alone value states for one caption."""
    grey = to_grey(video.rgb)
    frames = torch.from_numpy(grey[..., 0] if grey.ndim == 4 else grey).float()
    lum = model.encode_luminance(frames[:, None].expand(-1, 3, -1, -1) / 127.5 - 1)

    def fused(text: str) -> torch.Tensor:
        return model.fuse_text(model.encode_prompt([text]), lum, frames.shape[0])

    keys = fused(caption)
    values = keys.clone()
    words = [(c, s) for c, s in zip(colours, video.shapes)] + [(video.background_color, "background")]
    for colour, noun in words:
        phrase = f"a {colour} {noun}"
        target = word_token_positions(caption, model.tokenizer, colour.split() + [noun])
        source = word_token_positions(phrase, model.tokenizer, colour.split() + [noun])
        values[0, target] = fused(phrase)[0, source]
    own = [word_token_positions(caption, model.tokenizer, [c, s]) for c, s in zip(colours, video.shapes)]
    return {"masks": torch.from_numpy(video.masks).float(), "own": own, "keys": keys, "values": values}


def attention_replacement(module, mode: str, state: dict):
    """attn2's forward, recomputed, with `mode`'s change while `state` holds the current video."""

    def forward(hidden_states, encoder_hidden_states=None, attention_mask=None, **_):
        x, ctx = hidden_states, encoder_hidden_states
        ctx_v = ctx
        video = state.get("video")
        rows = None
        if video is not None:  # the batch rows that carry this caption (not guidance's empty one)
            rows = (ctx.float() - video["keys"].float()).abs().amax(dim=(1, 2)) < 1e-4
            if mode == "phrase-values":
                ctx_v = torch.where(rows[:, None, None], video["values"].to(ctx.dtype), ctx_v)
        q = rearrange(module.to_q(x), "b n (h d) -> b h n d", h=module.heads)
        k = rearrange(module.to_k(ctx), "b n (h d) -> b h n d", h=module.heads)
        v = rearrange(module.to_v(ctx_v), "b n (h d) -> b h n d", h=module.heads)
        probs = (q @ k.transpose(-1, -2) * module.scale).softmax(-1)
        if video is not None and mode in ("oracle", "anti"):
            side = int(round(x.shape[1] ** 0.5))
            cover = rearrange(F.adaptive_avg_pool2d(video["masks"], side), "f i h w -> f i (h w)")
            allow = torch.ones(x.shape[0], x.shape[1], ctx.shape[1])
            frames = rows.nonzero().flatten()
            for i, own in enumerate(video["own"]):
                row = torch.zeros(ctx.shape[1])
                row[own if mode == "oracle" else video["own"][1 - i]] = 1
                inside = cover[:, i] > 0.5
                for j, b in enumerate(frames.tolist()):
                    allow[b, inside[j % cover.shape[0]]] = row
            probs = probs * allow[:, None]
            probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-9)
        out = rearrange(probs @ v, "b h n d -> b n (h d)")
        return module.to_out[1](module.to_out[0](out))

    return forward


def main() -> None:
    from lc4.pipeline import LC4Pipeline

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = p.parse_args()
    be = _binding_errors()
    pipe = LC4Pipeline.from_pretrained(args.model)
    model = pipe.model
    if model.unet.config.phrase_values:
        raise SystemExit(f"{args.model} already takes phrase values: this diagnoses a model trained without them")
    contexts = {}
    for k in range(args.videos):
        video = held_out_video(k)
        if video.num_instances != 2 or video.instance_colors[0] == video.instance_colors[1]:
            continue
        grey = to_grey(video.rgb)
        swapped, colours = swap_caption_colors(video, 0, 1)
        for caption, cols in ((video.caption, video.instance_colors), (swapped, colours)):
            contexts[(grey.tobytes(), caption)] = video_context(model, video, caption, cols)
    sample = pipeline_colorizer(pipe, steps=1, guidance=1.0)
    for mode in args.modes:
        state: dict = {}
        for name, m in model.unet.named_modules():
            if name.endswith("attn2"):
                m.forward = attention_replacement(m, mode, state)

        def colorize(grey: np.ndarray, caption: str) -> np.ndarray:
            state["video"] = contexts.get((grey.tobytes(), caption))
            return sample(grey, caption)

        r = be.binding_positions(colorize, args.videos)
        print(f"{mode:14s} position {r['position']:.2f} (0 own, 1 other) | swap reach {r['swap_reach']:.2f} "
              f"({r['shape_frames']} shape-frames)", flush=True)


if __name__ == "__main__":
    main()
