#!/usr/bin/env python3
"""Pillow baseline for `autotag-bench decode`: the same work as autotag's decode + sample + resize.

For every GIF (read into memory once, like the worker holds the S3 body): open it, count its
frames (`n_frames`, which walks the blocks without decoding, like autotag's scan pass), pick the
same K frame indices as autotag (`floor((2i+1) * n / (2K))`, all frames when K >= n), `seek()` to
them in increasing order (Pillow composites every frame up to the target, as it must),
`convert('RGB')` and resize the shorter side to SIZE with BILINEAR, centre-cropped to SIZE x SIZE.

The resize and the crop are one `Image.resize((SIZE, SIZE), BILINEAR, box=centre_square)` call:
the same result as resizing the whole frame and then cropping, but Pillow only filters the pixels
it keeps; autotag's resizer does the same (source crop box). That is the fairest equivalent.

Prints one JSON object on stdout:
  {"pillow_version", "python", "method", "files": [{"file", "total_frames", "frames_out", "times_s": [...]}]}
One untimed warm-up pass precedes the timed passes. Single process, single thread.
"""

import argparse
import io
import json
import os
import platform
import sys
import time

import PIL
from PIL import Image

METHOD = "open + n_frames + seek(i) in order + convert('RGB') + resize(BILINEAR, box=centre square)"


def sample_indices(n, k):
    if k >= n:
        return list(range(n))
    return [(2 * i + 1) * n // (2 * k) for i in range(k)]


def work(data, k, size):
    im = Image.open(io.BytesIO(data))
    n = getattr(im, "n_frames", 1)
    out = []
    for idx in sample_indices(n, k):
        im.seek(idx)
        rgb = im.convert("RGB")
        w, h = rgb.size
        side = min(w, h)
        left = (w - side) / 2.0
        top = (h - side) / 2.0
        out.append(rgb.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)))
    return n, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--files", required=True, help="comma-separated file names inside the corpus")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    names = [f for f in a.files.split(",") if f]
    blobs = []
    for name in names:
        with open(os.path.join(a.corpus, name), "rb") as f:
            blobs.append(f.read())

    results = []
    for name, data in zip(names, blobs):
        n, out = work(data, a.frames, a.size)  # warm-up, and the counts
        results.append({"file": name, "total_frames": n, "frames_out": len(out), "times_s": []})
    for _ in range(max(1, a.repeat)):
        for r, data in zip(results, blobs):
            t = time.perf_counter()
            work(data, a.frames, a.size)
            r["times_s"].append(time.perf_counter() - t)

    json.dump(
        {
            "pillow_version": PIL.__version__,
            "python": platform.python_version(),
            "method": METHOD,
            "files": results,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
