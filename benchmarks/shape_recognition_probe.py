"""Can the UNet's inputs tell which shape is which? Linear probes for the shape name at each shape.

To bind "a red star and a blue circle", the UNet must recognise the star in the grey clip. It sees
the grey frames only through E^lum: the latent moments (added to z_t by the lum injection) and,
through CMPF, E^lum's last feature map. This script crops a window around each shape's centroid
from (a) the grey pixels, (b) the moments and (c) the feature map of a model's E^lum, and fits an
L2-regularised linear classifier for the shape name on 3/4 of the shapes, scored on the rest
(chance = 1 / number of shape kinds). A probe far below the pixels' means the shape identity is
not on offer where the UNet's cross-attention reads, whatever the text encoder says.

    python benchmarks/shape_recognition_probe.py --model lc4/assets/demo-model --videos 1500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_binding_probe import probe_accuracy  # noqa: E402

from lc4.color import to_grey  # noqa: E402
from lc4.data.synthetic import generate_video  # noqa: E402
from lc4.data.synthetic.shapes import SHAPE_NAMES  # noqa: E402

SEED_OFFSET = 700_000  # not a training or held-out range: any seeds work for a probe


def crop(feature: torch.Tensor, cy: float, cx: float, size: int, radius: int) -> torch.Tensor:
    """A (2r+1)² window of a (c, h, w) map centred on the pixel-space centroid (cy, cx), zero-padded."""
    scale = feature.shape[-1] / size
    y, x = int(cy * scale), int(cx * scale)
    padded = F.pad(feature, (radius, radius, radius, radius))
    return padded[:, y:y + 2 * radius + 1, x:x + 2 * radius + 1].flatten()


@torch.no_grad()
def shape_features(model, videos: int, size: int = 64, pixel_radius: int = 10, latent_radius: int = 2):
    """Per visible shape: crops of the grey pixels, E^lum moments and features; and the shape index."""
    rows: dict[str, list[torch.Tensor]] = {"grey pixels": [], "E^lum moments (UNet input)": [],
                                           "E^lum features (CMPF input)": []}
    labels = []
    for k in range(videos):
        video = generate_video(SEED_OFFSET + k, num_frames=1, size=size, num_shapes=(1, 2))
        grey = torch.from_numpy(to_grey(video.rgb)[0]).float().div(127.5).sub(1).permute(2, 0, 1)
        lum = model.encode_luminance(grey[None])
        for i, shape in enumerate(video.shapes):
            mask = video.masks[0, i]
            if mask.sum() < 20:
                continue
            cy, cx = np.argwhere(mask).mean(0)
            rows["grey pixels"].append(crop(grey[:1], cy, cx, size, pixel_radius))
            rows["E^lum moments (UNet input)"].append(crop(lum.moments[0], cy, cx, size, latent_radius))
            rows["E^lum features (CMPF input)"].append(crop(lum.latent_features[0].float(), cy, cx, size, latent_radius))
            labels.append(SHAPE_NAMES.index(shape))
    y = torch.tensor(labels)
    return {name: torch.stack(x) for name, x in rows.items()}, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--videos", type=int, default=1500)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from lc4.models.lc4 import LC4Model

    model = LC4Model.from_pretrained(args.model).eval()
    features, y = shape_features(model, args.videos)
    print(f"{len(y)} shapes, {len(SHAPE_NAMES)} kinds (chance {1 / len(SHAPE_NAMES):.2f})")
    for name, x in features.items():
        print(f"{name:30s} {x.shape[1]:5d} dims  shape-name probe {probe_accuracy(x, y):.2f}")


if __name__ == "__main__":
    main()
