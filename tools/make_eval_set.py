#!/usr/bin/env python3
"""Build the labelled GIF set for `autotag eval` from real photos (issue 14).

Input: `../shared/testdata/imagenet-samples/` (750 photos, one per ImageNet class, `labels.json`)
and the vocabulary `tools/tag_map.json`. The true tags of a photo are the tags whose class list
holds the photo's class (the same table the model sums probabilities by).

Output (`--out DIR`, default `.local/evalset`, git-ignored: the photos must not be committed):

    DIR/calibration/labels.jsonl   DIR/calibration/gifs/*.gif   DIR/calibration/sources.jsonl
    DIR/evaluation/labels.jsonl    DIR/evaluation/gifs/*.gif    DIR/evaluation/sources.jsonl

Each labels line is what `autotag eval --labels` reads:
`{"gif":"gifs/0007.gif","tags":[union],"scenes":[[scene 1 tags],[scene 2 tags]],"groups":[...]}`;
`sources.jsonl` names the photos and every choice made for the same GIF (for a reader chasing an
error). The split is by photo, which here is by class (one photo per class): no photo feeds both
parts, so the calibration part tunes the scoring and the evaluation part measures whether it
generalises to classes it was not tuned on.

GIFs are built the way GIFs are (TGIF averages ~41 frames in ~2.5 shots; frames are small, palettes
small): one, two or three scenes (hard cuts or cross-fades between photos of different classes),
each scene a pan, a zoom or a held shot; optional fade from/to black, letterboxing, a caption
overlay; 16- to 256-colour palettes with or without Floyd-Steinberg dithering, one global palette
or a local palette per frame; 120-480 px on the long side; some static single-frame GIFs.

Groups (rows of the eval report): `multi1`, `multi2`, `multi3`, `static`, `small_palette` (<= 32
colours), `low_res` (long side <= 200 px), `caption`, `letterbox`, `fade`, `dither`,
`local_palette`.

Deterministic: the same `--seed` gives byte-identical GIFs. About a minute on 2 cores.

    .local/venv/bin/python tools/make_eval_set.py [--photos DIR] [--out DIR] [--per-split N] [--seed S]
"""

import argparse
import json
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor

from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

CAPTIONS = [
    "when the weekend finally arrives", "me on monday morning", "nope", "this is fine",
    "mood", "when you see it", "ok but why", "living my best life", "same", "wait for it",
    "current status", "it's happening", "yes!", "that feeling when", "deal with it",
]

# Share of GIFs per scene count in a split; TGIF's ~2.5 shots per GIF makes multi-scene common.
SCENE_MIX = [(1, 0.40), (2, 0.30), (3, 0.30)]


def imagenet_classes():
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    return list(_IMAGENET_CATEGORIES)


def class_tags(tag_map_path):
    """class name -> sorted list of tags whose class list holds it."""
    with open(tag_map_path, encoding="utf-8") as f:
        tag_map = json.load(f)["tags"]
    out = {}
    for tag, names in tag_map.items():
        for n in names:
            out.setdefault(n, []).append(tag)
    return {k: sorted(v) for k, v in out.items()}


def split_photos(photos, seed):
    """Half the photos to calibration, half to evaluation, by a seeded shuffle."""
    rng = random.Random(f"split-{seed}")
    order = sorted(photos, key=lambda p: p["file"])
    rng.shuffle(order)
    half = len(order) // 2
    return {"calibration": order[:half], "evaluation": order[half:]}


def plan_split(name, photos, per_split, seed):
    """The GIF specs of one split: pure data, so generation can run in worker processes."""
    rng = random.Random(f"{name}-{seed}")
    specs = []
    counts = [(k, round(per_split * share)) for k, share in SCENE_MIX]
    idx = 0
    for scenes, n in counts:
        for _ in range(n):
            chosen = []
            while len(chosen) < scenes:
                p = rng.choice(photos)
                # The first scene has true tags (a GIF without any is left out by eval); the
                # others may be of a class that feeds no tag: they test precision.
                if not chosen and not p["tags"]:
                    continue
                if all(p["class_index"] != c["class_index"] and set(p["tags"]).isdisjoint(c["tags"])
                       for c in chosen):
                    chosen.append(p)
            static = scenes == 1 and rng.random() < 0.15
            long_side = rng.choice([120, 160, 200, 240, 320, 400, 480])
            colors = rng.choice([16, 32, 64, 128, 256])
            spec = {
                "index": idx,
                "photos": [p["file"] for p in chosen],
                "scene_tags": [p["tags"] for p in chosen],
                "static": static,
                "long_side": long_side,
                "colors": colors,
                "dither": rng.random() < 0.5,
                "local_palette": (not static) and rng.random() < 0.3,
                "caption": rng.choice(CAPTIONS) if rng.random() < 0.3 else None,
                "letterbox": rng.random() < 0.2,
                "fade_in": (not static) and rng.random() < 0.2,
                "fade_out": (not static) and rng.random() < 0.2,
                "crossfade": scenes > 1 and rng.random() < 0.5,
                "motions": [rng.choice(["pan", "zoom", "hold"]) for _ in chosen],
                "scene_frames": [1 if static else rng.randint(8, 18) for _ in chosen],
                "delay_ms": rng.choice([40, 50, 60, 80, 100]),
                "aspect": rng.choice([1.0, 4 / 3, 16 / 9, 3 / 4]),
                "seed": rng.randrange(1 << 30),
            }
            specs.append(spec)
            idx += 1
    return specs


def groups_of(spec):
    g = [f"multi{len(spec['photos'])}"]
    if spec["static"]:
        g.append("static")
    if spec["colors"] <= 32:
        g.append("small_palette")
    if spec["long_side"] <= 200:
        g.append("low_res")
    for key in ("caption", "letterbox", "dither", "local_palette"):
        if spec[key]:
            g.append(key)
    if spec["fade_in"] or spec["fade_out"]:
        g.append("fade")
    return g


def frame_size(spec):
    a = spec["aspect"]
    L = spec["long_side"]
    return (L, max(2, round(L / a))) if a >= 1 else (max(2, round(L * a)), L)


def scene_frames(photo, motion, n, size, rng):
    """n RGB frames of `size` showing `photo` with a pan, a zoom or a held shot."""
    W, H = size
    pw, ph = photo.size
    target = W / H
    # Largest crop of the photo's aspect `target`.
    cw, ch = (pw, round(pw / target)) if pw / ph <= target else (round(ph * target), ph)
    cw, ch = min(cw, pw), min(ch, ph)
    frames = []
    for i in range(n):
        t = i / max(1, n - 1)
        if motion == "zoom":
            s = 1.0 - 0.3 * t  # zoom in to 70 % of the crop
            w, h = cw * s, ch * s
            x0, y0 = (pw - w) / 2, (ph - h) / 2
        elif motion == "pan":
            s = 0.8
            w, h = cw * s, ch * s
            x0 = (pw - w) * t
            y0 = (ph - h) / 2
        else:
            w, h = cw, ch
            x0 = (pw - w) / 2 + rng.uniform(-1, 1)
            y0 = (ph - h) / 2 + rng.uniform(-1, 1)
            x0, y0 = max(0.0, min(x0, pw - w)), max(0.0, min(y0, ph - h))
        box = (x0, y0, x0 + w, y0 + h)
        frames.append(photo.resize(size, Image.BILINEAR, box=box))
    return frames


def letterbox(frame):
    W, H = frame.size
    inner_h = max(2, round(H * 0.72))
    out = Image.new("RGB", (W, H), (0, 0, 0))
    out.paste(frame.resize((W, inner_h), Image.BILINEAR), (0, (H - inner_h) // 2))
    return out


def draw_caption(frame, text):
    W, H = frame.size
    size = max(10, H // 9)
    font = ImageFont.load_default(size=size)
    d = ImageDraw.Draw(frame)
    tw = d.textlength(text, font=font)
    while tw > W * 0.95 and size > 8:
        size -= 1
        font = ImageFont.load_default(size=size)
        tw = d.textlength(text, font=font)
    d.text(((W - tw) / 2, H - size * 1.4), text, font=font, fill=(255, 255, 255),
           stroke_width=max(1, size // 10), stroke_fill=(0, 0, 0))
    return frame


def build_gif(args):
    spec, photo_dir, out_path = args
    rng = random.Random(spec["seed"])
    size = frame_size(spec)
    photos = [Image.open(os.path.join(photo_dir, f)).convert("RGB") for f in spec["photos"]]
    scenes = [scene_frames(p, m, n, size, rng)
              for p, m, n in zip(photos, spec["motions"], spec["scene_frames"])]
    frames = list(scenes[0])
    for nxt in scenes[1:]:
        if spec["crossfade"]:
            a, b = frames[-1], nxt[0]
            frames += [Image.blend(a, b, k / 5) for k in range(1, 5)]
        frames += nxt
    black = Image.new("RGB", size, (0, 0, 0))
    if spec["fade_in"]:
        frames = [Image.blend(black, frames[0], k / 4) for k in range(0, 4)] + frames
    if spec["fade_out"]:
        frames = frames + [Image.blend(frames[-1], black, k / 4) for k in range(1, 5)]
    if spec["letterbox"]:
        frames = [letterbox(f) for f in frames]
    if spec["caption"]:
        frames = [draw_caption(f, spec["caption"]) for f in frames]
    dither = Image.Dither.FLOYDSTEINBERG if spec["dither"] else Image.Dither.NONE
    if spec["local_palette"]:
        pframes = [f.quantize(colors=spec["colors"], method=Image.Quantize.MEDIANCUT, dither=dither)
                   for f in frames]
    else:
        # One global palette from a strip of every frame.
        step = max(1, len(frames) // 8)
        picks = frames[::step]
        strip = Image.new("RGB", (size[0], size[1] * len(picks)))
        for k, f in enumerate(picks):
            strip.paste(f, (0, size[1] * k))
        pal = strip.quantize(colors=spec["colors"], method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        pframes = [f.quantize(palette=pal, dither=dither) for f in frames]
    kw = {}
    if len(pframes) > 1:
        kw = {"save_all": True, "append_images": pframes[1:], "duration": spec["delay_ms"], "loop": 0,
              "optimize": False}
    tmp = out_path + ".tmp"
    pframes[0].save(tmp, format="GIF", **kw)
    os.replace(tmp, out_path)
    return len(pframes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", default=os.path.join(REPO, "..", "shared", "testdata", "imagenet-samples"))
    ap.add_argument("--tag-map", default=os.path.join(HERE, "tag_map.json"))
    ap.add_argument("--out", default=os.path.join(REPO, ".local", "evalset"))
    ap.add_argument("--per-split", type=int, default=300, help="GIFs per split (default 300)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()

    labels_path = os.path.join(a.photos, "labels.json")
    if not os.path.exists(labels_path):
        sys.exit(f"{labels_path}: not found (the photos live in ../shared/testdata/imagenet-samples)")
    with open(labels_path, encoding="utf-8") as f:
        photos = json.load(f)
    classes = imagenet_classes()
    tags_of = class_tags(a.tag_map)
    for p in photos:
        p["tags"] = tags_of.get(classes[p["class_index"]], [])
    parts = split_photos(photos, a.seed)
    summary = {}
    for name, part in parts.items():
        d = os.path.join(a.out, name)
        os.makedirs(os.path.join(d, "gifs"), exist_ok=True)
        specs = plan_split(name, part, a.per_split, a.seed)
        jobs = [(s, a.photos, os.path.join(d, "gifs", f"{s['index']:04d}.gif")) for s in specs]
        with ProcessPoolExecutor(max_workers=a.jobs) as ex:
            nframes = list(ex.map(build_gif, jobs, chunksize=4))
        with open(os.path.join(d, "labels.jsonl"), "w", encoding="utf-8") as lf, \
                open(os.path.join(d, "sources.jsonl"), "w", encoding="utf-8") as sf:
            for s, n in zip(specs, nframes):
                gif = f"gifs/{s['index']:04d}.gif"
                union = sorted({t for scene in s["scene_tags"] for t in scene})
                lf.write(json.dumps({"gif": gif, "tags": union, "scenes": s["scene_tags"],
                                     "groups": groups_of(s)}) + "\n")
                sf.write(json.dumps({"gif": gif, "frames": n, **{k: v for k, v in s.items() if k != "scene_tags"}})
                         + "\n")
        summary[name] = {"gifs": len(specs), "photos": len(part),
                         "photos_without_tags": sum(1 for p in part if not p["tags"])}
    print(json.dumps({"out": a.out, "seed": a.seed, "splits": summary}, indent=1))


if __name__ == "__main__":
    main()
