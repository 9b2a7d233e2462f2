"""Make testdata/gifs/chelsea_interlaced.gif: a truly interlaced GIF of a real photo.

The shared corpus's `*_interlaced.gif` files turned out not to set the interlace
flag, so the end-to-end test needs one that does. Pillow interlaces single-frame
GIFs by default (not animated ones, whose frames it always writes progressive).
The photo is scikit-image's chelsea (CC0), taken from chelsea_static.gif.

    .local/venv/bin/python tools/make_interlaced_gif.py
"""
from pathlib import Path

from PIL import Image

root = Path(__file__).resolve().parent.parent / "testdata" / "gifs"
src = Image.open(root / "chelsea_static.gif").convert("RGB")
out = root / "chelsea_interlaced.gif"
src.save(out, interlace=True)

# Verify: walk the blocks and read each image descriptor's interlace bit.
data = out.read_bytes()
p = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
flags = []
while data[p] != 0x3B:
    if data[p] == 0x21:
        p += 2
    else:
        f = data[p + 9]
        flags.append(bool(f & 0x40))
        p += 10 + (3 * 2 ** ((f & 7) + 1) if f & 0x80 else 0) + 1
    while data[p]:
        p += data[p] + 1
    p += 1
assert flags and all(flags), flags
print(f"wrote {out} ({len(data)} bytes, {len(flags)} interlaced frame(s))")
