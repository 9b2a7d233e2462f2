#!/usr/bin/env python3
"""Run an exported tagger on images and print the top tags.

    python tools/check_model.py DIR IMAGE... [--top 5] [--imagenet]

Loads DIR/model.pt with torch.jit.load (as the worker does) and DIR/tags.json.
Any image Pillow reads works; for a GIF the first frame is used. The image is
resized so that its shorter side is 224, then centre-cropped to 224x224.
--imagenet also prints the ImageNet top classes of the eager plain-torch
network from export_model.py (a check of the logits, independent of TorchScript).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

SIZE = 224


def load_image(path):
    with Image.open(path) as im:
        im.seek(0)
        im = im.convert("RGB")
        w, h = im.size
        scale = SIZE / min(w, h)
        nw, nh = max(SIZE, round(w * scale)), max(SIZE, round(h * scale))
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - SIZE) // 2, (nh - SIZE) // 2
        im = im.crop((left, top, left + SIZE, top + SIZE))
        return np.asarray(im, dtype=np.uint8)  # [224, 224, 3] RGB


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--imagenet", action="store_true", help="also print eager ImageNet top classes")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    model = torch.jit.load(os.path.join(args.dir, "model.pt"), map_location="cpu").eval()
    with open(os.path.join(args.dir, "tags.json"), encoding="utf-8") as f:
        tags = json.load(f)
    x = torch.from_numpy(np.stack([load_image(p) for p in args.images]))  # [B,224,224,3] uint8
    scores = model(x)
    if scores.shape != (len(args.images), len(tags)):
        sys.exit(f"output shape {tuple(scores.shape)} does not match {len(tags)} tags")

    if args.imagenet:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import export_model as em
        net, classes = em.build_net(), em.imagenet_classes()
        nchw = x.permute(0, 3, 1, 2).float()
        probs = torch.softmax(net((nchw - 127.5) / 127.5), dim=1)

    for i, path in enumerate(args.images):
        s, idx = scores[i].topk(min(args.top, len(tags)))
        print(f"{path}: " + ", ".join(f"{tags[j]} {v:.3f}" for v, j in zip(s.tolist(), idx.tolist())))
        if args.imagenet:
            p, idx = probs[i].topk(args.top)
            print("  imagenet: " + ", ".join(f"{classes[j]} {v:.3f}" for v, j in zip(p.tolist(), idx.tolist())))


if __name__ == "__main__":
    main()
