#!/usr/bin/env python3
"""Generates the GIF conformance corpus: testdata/conformance/*.gif and expected.json.

One tiny GIF per quirk class (issue 11), each built byte by byte, with its expected rendering
decided by the browsers' rules (Chromium SkGifImageReader / Firefox nsGIFDecoder2; the rule and
its source for every class are in docs/conformance.md). The expectation is computed by the small
reference compositor below, which implements those rules on the pixel indices this script
encoded (it never decodes the file), and is then compared with Pillow: `pillow` in
expected.json records whether Pillow renders the same RGBA (alpha-0 pixels: RGB not compared)
and, where not, what it does.

The Rust test `conformance_corpus_matches_expected` (crates/gifcodec/src/tests.rs) decodes every
file with autotag's decoder and compares each frame's RGBA with expected.json pixel by pixel.

Usage: python3 tools/gen_conformance.py [--check]   (Pillow needed for the comparison column;
--check regenerates in memory and fails if the committed files differ.)
"""

import json
import os
import random
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "conformance")

PAL4 = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


# ---- byte-level GIF building ---------------------------------------------------------------

def pal_bytes(pal, size_bits=None):
    """Colour table padded to 2**(size_bits+1) entries; returns (bytes, size_bits)."""
    n = len(pal)
    if size_bits is None:
        size_bits = max(0, (max(n, 2) - 1).bit_length() - 1)
    entries = 2 ** (size_bits + 1)
    b = b"".join(bytes(c) for c in pal) + b"\x00\x00\x00" * (entries - n)
    return b, size_bits


def header(w, h, gpal=None, version=b"89a"):
    flags = 0
    table = b""
    if gpal is not None:
        table, bits = pal_bytes(gpal)
        flags = 0x80 | (bits << 4) | bits
    return b"GIF" + version + struct.pack("<HHBBB", w, h, flags, 0, 0) + table


def gce(transparent=None, disposal=0, delay=10, size=4):
    packed = (disposal & 7) << 2 | (1 if transparent is not None else 0)
    body = struct.pack("<BHB", packed, delay, transparent or 0)
    body = (body + b"\x00" * 8)[:size]
    return b"\x21\xf9" + bytes([size]) + body + b"\x00"


def ext(label, blocks):
    out = b"\x21" + bytes([label])
    for blk in blocks:
        out += bytes([len(blk)]) + blk
    return out + b"\x00"


def sub_blocks(data, terminate=True):
    out = b""
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out += bytes([len(chunk)]) + chunk
    return out + (b"\x00" if terminate else b"")


def lzw_encode(indices, min_size, clear_first=True, end_code=True, clear_every=None, extra=b""):
    """GIF LZW: LSB-first codes; the decoder widens its codes when its table size reaches
    `grow_at` (2**width; one bit later for minimum code size 1, as Chromium and Firefox do), and
    this encoder mirrors the decoder, which lags one code behind it. At 4096 codes the table is
    kept (deferred clear). `clear_every`: emit a clear code every n pixels."""
    clear, end = 1 << min_size, (1 << min_size) + 1
    lag = 1 if min_size == 1 else 0
    codes = []  # (code, width)
    st = {}

    def reset():
        st.update(table={(i,): i for i in range(clear)}, nxt=end + 1, width=min_size + 1,
                  grow_at=1 << (min_size + 1 + lag))

    def after_last_code():
        # The decoder adds the entry the encoder made one code earlier: size nxt.
        if st["nxt"] == st["grow_at"] and st["width"] < 12:
            st["width"] += 1
            st["grow_at"] <<= 1

    reset()
    if clear_first:
        codes.append((clear, st["width"]))
    cur = ()
    since = 0
    for p in indices:
        if clear_every and since == clear_every:
            if cur:
                codes.append((st["table"][cur], st["width"]))
                after_last_code()
                cur = ()
            codes.append((clear, st["width"]))
            reset()
            since = 0
        since += 1
        cand = cur + (p,)
        if cand in st["table"]:
            cur = cand
            continue
        codes.append((st["table"][cur], st["width"]))
        if st["nxt"] < 4096:
            st["table"][cand] = st["nxt"]
            st["nxt"] += 1
            if st["nxt"] - 1 == st["grow_at"] and st["width"] < 12:
                st["width"] += 1
                st["grow_at"] <<= 1
        cur = (p,)
    if cur:
        codes.append((st["table"][cur], st["width"]))
        after_last_code()
    if end_code:
        codes.append((end, st["width"]))
    acc = nbits = 0
    out = bytearray()
    for c, w in codes:
        assert c < (1 << w), "code %d does not fit %d bits" % (c, w)
        acc |= c << nbits
        nbits += w
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out) + extra


def image(left, top, w, h, indices, lpal=None, interlaced=False, min_size=2, lzw=None, terminate=True, **kw):
    flags = 0x40 if interlaced else 0
    table = b""
    if lpal is not None:
        table, bits = pal_bytes(lpal)
        flags |= 0x80 | bits
    rows = [indices[r * w:(r + 1) * w] for r in range(h)] if w else []
    if interlaced:
        order = [r for start, step in ((0, 8), (4, 8), (2, 4), (1, 2)) for r in range(start, h, step)]
        stream = [p for r in order for p in rows[r]]
    else:
        stream = list(indices)
    data = lzw if lzw is not None else lzw_encode(stream, min_size, **kw)
    return b"\x2c" + struct.pack("<HHHHB", left, top, w, h, flags) + table + bytes([min_size]) + sub_blocks(data, terminate)


# ---- reference compositor (browser rules) --------------------------------------------------

def render(sw, sh, frames, first_grows=True, gif87=False):
    """frames: dicts with rect (l, t, w, h), pixels (indices in frame row order, possibly
    fewer than w*h: drawn as far as they go), pal (list or None), transparent, disposal,
    interlaced. Returns (w, h, [rgba bytes per frame])."""
    if frames and first_grows:
        l, t, w, h = frames[0]["rect"]
        if sw < w or sh < h or gif87:
            sw, sh = w, h
            frames[0] = dict(frames[0], rect=(0, 0, w, h))
    canvas = [(0, 0, 0, 0)] * (sw * sh)
    out = []
    for f in frames:
        l, t, w, h = f["rect"]
        if w == 0 or h == 0:
            w, h = sw, sh
        pal = f.get("pal")
        trans = f.get("transparent")
        disp = f.get("disposal", 0)
        saved = list(canvas)
        if f.get("interlaced"):
            order = [r for start, step in ((0, 8), (4, 8), (2, 4), (1, 2)) for r in range(start, h, step)]
        else:
            order = list(range(h))
        pixels = f["pixels"]
        for k, idx in enumerate(pixels[:w * h]):
            fy, fx = order[k // w], k % w
            x, y = l + fx, t + fy
            if x >= sw or y >= sh or idx == trans:
                continue
            c = pal[idx] if pal is not None and idx < len(pal) else (0, 0, 0)
            canvas[y * sw + x] = tuple(c) + (255,)
        out.append(bytes(v for p in canvas for v in p))
        d = 3 if disp == 4 else disp
        if d == 2:
            for y in range(t, min(t + h, sh)):
                for x in range(l, min(l + w, sw)):
                    canvas[y * sw + x] = (0, 0, 0, 0)
        elif d == 3:
            for y in range(t, min(t + h, sh)):
                for x in range(l, min(l + w, sw)):
                    canvas[y * sw + x] = saved[y * sw + x]
    return sw, sh, out


# ---- the cases -----------------------------------------------------------------------------

def px(w, h, seed, colours=4):
    r = random.Random(seed)
    return [r.randrange(colours) for _ in range(w * h)]


def F(rect, pixels, pal=PAL4, transparent=None, disposal=0, interlaced=False):
    return dict(rect=rect, pixels=pixels, pal=pal, transparent=transparent, disposal=disposal, interlaced=interlaced)


def simple(sw, sh, frames, gpal=PAL4, version=b"89a", trailer=True, between=None, before=b""):
    """Bytes for frames with a GCE each; `between[i]` = bytes inserted before frame i's GCE."""
    b = header(sw, sh, gpal, version) + before
    for i, f in enumerate(frames):
        if between and i in between:
            b += between[i]
        b += gce(f.get("transparent"), f.get("disposal", 0))
        l, t, w, h = f["rect"]
        b += image(l, t, w, h, f["pixels"], lpal=f.get("lpal"), interlaced=f.get("interlaced", False),
                   min_size=f.get("min_size", 2))
    return b + (b";" if trailer else b"")


CASES = []


def case(name, klass, rule, data, expect=None, error=None, warnings=(), gif_frames=None):
    CASES.append(dict(name=name, klass=klass, rule=rule, data=data, expect=expect, error=error,
                      warnings=list(warnings)))


def build():
    CASES.clear()
    a, b, c = px(4, 4, 1), px(4, 4, 2), px(2, 2, 3)
    two = [F((0, 0, 4, 4), a), F((1, 1, 2, 2), c)]
    base = simple(4, 4, two)
    case("baseline", "baseline", "plain two-frame GIF", base, render(4, 4, [dict(f) for f in two]))

    # End-of-stream variants.
    case("eos_no_trailer", "end of stream", "end of data between blocks ends the file",
         base[:-1], render(4, 4, [dict(f) for f in two]))
    cut = base[:-1]
    cut = cut[:-3]  # inside the second frame's data sub-block (its last data bytes and terminator gone)
    f2 = [F((0, 0, 4, 4), a), F((1, 1, 2, 2), c)]
    # How many indices of frame 2 the remaining data holds is decided by the LZW stream; the
    # expectation is computed from a decode of the same prefix below.
    case("eos_cut_in_second_frame", "end of stream", "cut inside a block after a complete frame: keep frames, "
         "draw the cut frame as far as its data goes, warn truncated", cut, ("partial", f2, 4, 4), warnings=["truncated"])
    case("eos_cut_in_first_frame", "end of stream", "no complete frame: truncated", base[:40], error="truncated")
    case("eos_cut_in_extension_after_frame", "end of stream", "cut inside an extension after a frame",
         base[:base.index(b"\x21\xf9", base.index(b"\x21\xf9") + 1)] + b"\x21\xf9\x04\x00", render(4, 4, [dict(two[0])]),
         warnings=["truncated"])
    case("eos_trailer_then_garbage", "end of stream", "bytes after the trailer are ignored",
         base + b"garbage\x00\x01", render(4, 4, [dict(f) for f in two]))

    # Junk between blocks.
    third = [F((0, 0, 4, 4), a), F((1, 1, 2, 2), c), F((0, 0, 4, 4), b)]
    case("junk_between_frames", "stray bytes", "a byte that starts no block ends the file (Chromium, Firefox)",
         simple(4, 4, third, between={2: b"\x00"}), render(4, 4, [dict(f) for f in two]))
    case("junk_zero_padding_after_frames", "stray bytes", "zero padding after the last frame ends the file",
         base[:-1] + b"\x00" * 16, render(4, 4, [dict(f) for f in two]))
    case("junk_before_first_frame", "stray bytes", "junk before any frame: nothing to show",
         simple(4, 4, two, before=b"\x00\x00"), error="invalid_block")

    # Extensions.
    case("ext_unknown_label_2a", "unknown extensions", "unknown extension labels are skipped",
         simple(4, 4, two, before=ext(0x2A, [])), render(4, 4, [dict(f) for f in two]))
    case("ext_unknown_with_data", "unknown extensions", "unknown extension with sub-blocks between frames is skipped",
         simple(4, 4, two, between={1: ext(0x99, [b"\x2c\x21\x3b" * 20, b"\x00\x01"])}), render(4, 4, [dict(f) for f in two]))
    case("ext_plain_text", "unknown extensions", "plain text extension (0x01) is not rendered",
         simple(4, 4, two, before=ext(0x01, [bytes(12), b"hello"])), render(4, 4, [dict(f) for f in two]))
    case("ext_comment_and_app", "unknown extensions", "comment and non-NETSCAPE application extensions are skipped",
         simple(4, 4, two, before=ext(0xFE, [b"hi"]) + ext(0xFF, [b"XMP DataXMP", b"<x/>"])), render(4, 4, [dict(f) for f in two]))
    gt = [F((0, 0, 4, 4), a, transparent=1), F((1, 1, 2, 2), c)]
    short_gce = header(4, 4, PAL4) + gce(1, size=3) + image(0, 0, 4, 4, a) + b";"
    case("gce_short_block", "malformed extensions", "graphic control extension shorter than 4 bytes is ignored",
         short_gce, render(4, 4, [F((0, 0, 4, 4), a)]))
    long_gce = header(4, 4, PAL4) + gce(1, size=6) + image(0, 0, 4, 4, a) + b";"
    case("gce_long_block", "malformed extensions", "longer graphic control extension: first 4 bytes used",
         long_gce, render(4, 4, [F((0, 0, 4, 4), a, transparent=1)]))
    two_gce = header(4, 4, PAL4) + gce(None) + gce(2) + image(0, 0, 4, 4, a) + b";"
    case("gce_twice", "malformed extensions", "two graphic control extensions before an image: the last wins",
         two_gce, render(4, 4, [F((0, 0, 4, 4), a, transparent=2)]))
    case("gce_after_last_image", "malformed extensions", "a graphic control extension with no image after it is ignored",
         base[:-1] + gce(1) + b";", render(4, 4, [dict(f) for f in two]))

    # Disposal.
    def disp(d, first_rect=(0, 0, 4, 4)):
        fr = [F(first_rect, px(first_rect[2], first_rect[3], 7)), F((1, 1, 2, 2), c, disposal=d, transparent=0),
              F((0, 0, 2, 2), px(2, 2, 9))]
        return simple(4, 4, fr), render(4, 4, [dict(f) for f in fr])
    for d, what in [(1, "keep"), (2, "background clears the rectangle to transparent"),
                    (3, "restore previous"), (4, "4 is restore previous (both browsers)"),
                    (5, "undefined 5 behaves as keep"), (7, "undefined 7 behaves as keep")]:
        data, exp = disp(d)
        case(f"disposal_{d}", "disposal values", what, data, exp)
    fr = [F((1, 1, 2, 2), c, disposal=3), F((0, 0, 4, 4), a, transparent=0)]
    case("previous_on_first_frame", "restore-previous", "restore previous on the first frame restores transparency",
         simple(4, 4, fr), render(4, 4, [dict(f) for f in fr]))
    fr = [F((0, 0, 4, 4), a), F((0, 0, 3, 3), px(3, 3, 11), disposal=3), F((1, 1, 3, 3), px(3, 3, 12), disposal=3),
          F((2, 2, 2, 2), c)]
    case("previous_chain", "restore-previous", "consecutive restore-previous frames restore to the last kept canvas",
         simple(4, 4, fr), render(4, 4, [dict(f) for f in fr]))
    fr = [F((0, 0, 4, 4), a), F((2, 2, 4, 4), px(4, 4, 13), disposal=3), F((0, 0, 1, 1), [3])]
    case("previous_partly_offscreen", "restore-previous", "restore previous of a clipped rectangle",
         simple(4, 4, fr), render(4, 4, [dict(f) for f in fr]))

    # LZW.
    # The bytes quoted in issue 11.
    tp = bytes.fromhex("47 49 46 38 39 61 01 00 01 00 80 00 00 c0 c0 c0 00 00 00 21 f9 04 01 00 00 00 00 2c 00 00 00 00"
                       " 01 00 01 00 00 01 01 32 00 3b")
    case("lzw_tracking_pixel_code_size_1", "LZW code sizes", "minimum code size 1 (the classic 1x1 tracking pixel)",
         tp, render(1, 1, [F((0, 0, 1, 1), [0], pal=[(192, 192, 192), (0, 0, 0)], transparent=0)]))
    # Size 1 with dictionary entries defined but never used (2-bit codes throughout): longer
    # size-1 streams are ill-defined (both browsers' code mask breaks once codes widen).
    p1 = [0, 1, 1, 0]
    g = header(2, 2, [(10, 20, 30), (200, 100, 0)]) + image(0, 0, 2, 2, p1, min_size=1) + b";"
    case("lzw_code_size_1_multi", "LZW code sizes", "minimum code size 1, four pixels, entries defined",
         g, render(2, 2, [F((0, 0, 2, 2), p1, pal=[(10, 20, 30), (200, 100, 0)])]))
    g = header(4, 4, PAL4) + image(0, 0, 4, 4, a, min_size=8) + b";"
    case("lzw_code_size_8_small_palette", "LZW code sizes", "code size larger than the palette needs",
         g, render(4, 4, [F((0, 0, 4, 4), a)]))
    g = header(4, 4, PAL4) + image(0, 0, 4, 4, a, min_size=12, lzw=b"\x00") + b";"
    case("lzw_code_size_12", "LZW code sizes", "code size 12 leaves no code space: both browsers fail",
         g, error="invalid_lzw_code_size")
    for name, kw, rule in [("lzw_no_leading_clear", dict(clear_first=False), "no clear code at the start"),
                           ("lzw_no_end_code", dict(end_code=False), "no end code"),
                           ("lzw_clear_mid_stream", dict(clear_every=5), "clear codes in the middle"),
                           ("lzw_extra_data_after_end", dict(extra=b"\xff\x13\x37" * 4), "data after the end code is ignored")]:
        g = header(4, 4, PAL4) + image(0, 0, 4, 4, a, **kw) + b";"
        case(name, "LZW table edge cases", rule, g, render(4, 4, [F((0, 0, 4, 4), a)]))
    big = px(64, 80, 31, 256)
    pal256 = [((i * 37) % 256, (i * 91) % 256, i) for i in range(256)]
    g = header(64, 80, pal256) + image(0, 0, 64, 80, big, min_size=8) + b";"
    case("lzw_full_table_deferred_clear", "LZW table edge cases", "4096-entry table kept without a clear (deferred clear)",
         g, render(64, 80, [F((0, 0, 64, 80), big, pal=pal256)]))
    g = header(4, 4, PAL4) + image(0, 0, 4, 4, a, lzw=bytes([0x04 | (0x07 << 3) & 0xF8, 0x3F, 0x00])) + b";"
    case("lzw_invalid_code", "LZW table edge cases", "a code beyond the table: corrupt image data",
         g, error="corrupt_image_data")

    # Image data shorter than the frame.
    g = header(4, 4, PAL4) + image(0, 0, 4, 4, a[:6]) + b";"
    case("short_data_end_code", "image data shorter than the frame", "drawn as far as it goes, rest transparent",
         g, render(4, 4, [F((0, 0, 4, 4), a[:6])]))
    g = header(4, 4, PAL4) + b"\x2c" + struct.pack("<HHHHB", 0, 0, 4, 4, 0) + b"\x02\x00" + b";"
    case("short_data_no_blocks", "image data shorter than the frame", "no data sub-blocks: frame draws nothing",
         g, render(4, 4, [F((0, 0, 4, 4), [])]))
    fr = [F((0, 0, 4, 4), a), F((0, 0, 4, 4), b[:7])]
    g = header(4, 4, PAL4) + image(0, 0, 4, 4, a) + image(0, 0, 4, 4, b[:7]) + b";"
    case("short_data_over_previous", "image data shorter than the frame", "undrawn pixels show the previous frame",
         g, render(4, 4, [dict(f) for f in fr]))
    il = px(3, 5, 41)
    g = header(3, 5, PAL4) + image(0, 0, 3, 5, il[:4], interlaced=True) + b";"
    # Interlaced stream order: rows 0, 4, 2, 1, 3; 4 indices = row 0 and the first pixel of row 4.
    order = [0, 4, 2, 1, 3]
    stream = [p for r in order for p in il[r * 3:(r + 1) * 3]]
    case("short_data_interlaced", "image data shorter than the frame", "interlaced: rows in pass order, as far as data goes",
         header(3, 5, PAL4) + image(0, 0, 3, 5, il, interlaced=True, lzw=lzw_encode(stream[:4], 2)) + b";",
         render(3, 5, [F((0, 0, 3, 5), stream[:4] and [None] * 0 + stream[:4], interlaced=True)]))

    # Screen / frame size disagreements.
    fr = [F((1, 1, 4, 3), px(4, 3, 51)), F((1, 1, 2, 2), c)]
    case("screen_smaller_than_first_frame", "screen/frame sizes", "screen grows to the first frame, offset 0 (Firefox)",
         simple(2, 2, fr), render(2, 2, [dict(f) for f in fr]))
    fr = [F((0, 0, 3, 2), px(3, 2, 52)), F((1, 1, 2, 2), c)]
    case("screen_zero", "screen/frame sizes", "0x0 screen takes the first frame's size", simple(0, 0, fr),
         render(0, 0, [dict(f) for f in fr]))
    fr = [F((0, 0, 4, 4), a), F((2, 1, 6, 6), px(6, 6, 53))]
    case("later_frame_larger_clipped", "screen/frame sizes", "later frames are clipped to the screen", simple(4, 4, fr),
         render(4, 4, [dict(f) for f in fr]))
    fr = [F((0, 0, 4, 4), a), F((9, 9, 2, 2), c)]
    case("later_frame_outside", "screen/frame sizes", "a later frame entirely outside draws nothing", simple(4, 4, fr),
         render(4, 4, [dict(f) for f in fr]))
    fr = [F((2, 2, 2, 2), c), F((0, 0, 1, 1), [1])]
    case("gif87a_first_frame_smaller", "screen/frame sizes", "GIF87a: the screen takes the first frame's size (Firefox)",
         simple(8, 8, fr, version=b"87a"), render(8, 8, [dict(f) for f in fr], gif87=True))
    fr = [F((2, 2, 2, 2), c), F((0, 0, 1, 1), [1])]
    case("gif89a_first_frame_smaller", "screen/frame sizes", "GIF89a: a smaller first frame keeps its offset",
         simple(8, 8, fr), render(8, 8, [dict(f) for f in fr]))

    # Palettes.
    pal2 = [(9, 99, 199), (50, 60, 70)]
    g = header(4, 4, pal2) + image(0, 0, 4, 4, a) + b";"
    case("index_beyond_palette", "indices beyond the palette", "indices past the table are opaque black",
         g, render(4, 4, [F((0, 0, 4, 4), a, pal=pal2)]))
    g = header(4, 4, None) + image(0, 0, 4, 4, a) + b";"
    case("no_colour_table", "missing palettes", "no global or local table: opaque black", g,
         render(4, 4, [F((0, 0, 4, 4), a, pal=None)]))
    g = header(4, 4, None) + image(0, 0, 4, 4, a, lpal=PAL4) + image(1, 1, 2, 2, c) + b";"
    case("local_palette_only", "missing palettes", "local table only; the next frame without any table is black",
         g, render(4, 4, [F((0, 0, 4, 4), a), F((1, 1, 2, 2), c, pal=None)]))
    g = header(4, 4, PAL4) + gce(9) + image(0, 0, 4, 4, a) + b";"
    case("transparent_index_beyond_palette", "indices beyond the palette", "transparent index past the table",
         g, render(4, 4, [F((0, 0, 4, 4), a, transparent=9)]))

    # Zero-size frames, zero delays.
    g = header(4, 4, PAL4) + image(0, 0, 4, 4, a) + b"\x2c" + struct.pack("<HHHHB", 0, 0, 0, 0, 0) + b"\x02" + sub_blocks(lzw_encode(b, 2)) + b";"
    case("zero_size_frame", "zero-size frames", "a 0x0 frame takes the screen's size (both browsers)",
         g, render(4, 4, [F((0, 0, 4, 4), a), F((0, 0, 0, 0), b)]))
    g = header(4, 4, PAL4) + gce(None, delay=0) + image(0, 0, 4, 4, a) + gce(None, delay=0) + image(1, 1, 2, 2, c) + b";"
    case("zero_delays", "zero delays", "zero delays do not change what each frame shows",
         g, render(4, 4, [F((0, 0, 4, 4), a), F((1, 1, 2, 2), c)]))

    # Bombs stay bombs.
    g = header(1, 1, PAL4) + image(0, 0, 1, 1, [0])[:1] + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x4c\x01\x00;"
    case("grow_bomb", "limits", "canvas growth counts against the same limits", g, error="too_large")


def resolve_partial(c):
    """eos_cut_in_second_frame: the cut frame draws the indices its remaining data holds; find
    how many by decoding the remaining LZW bytes with a textbook decoder."""
    kind, frames, sw, sh = c["expect"]
    data = c["data"]
    # Second image descriptor: last ',' block; data starts after descriptor + code size.
    start = data.rfind(b"\x2c\x01\x00\x01\x00\x02\x00\x02\x00")
    pos = start + 10
    min_size = data[pos]
    pos += 1
    lzw = b""
    while pos < len(data):
        n = data[pos]
        if n == 0:
            break
        lzw += data[pos + 1:pos + 1 + n]
        pos += 1 + n
    got = textbook_decode(lzw, min_size, 4)
    frames[1] = dict(frames[1], pixels=got)
    c["expect"] = render(sw, sh, [dict(f) for f in frames])


def textbook_decode(data, min_size, n):
    clear, end = 1 << min_size, (1 << min_size) + 1
    width = min_size + 1
    table = [[i] for i in range(clear)] + [None, None]
    out, prev = [], None
    acc = nbits = pos = 0
    while len(out) < n:
        while nbits < width and pos < len(data):
            acc |= data[pos] << nbits
            pos += 1
            nbits += 8
        if nbits < width:
            break
        code = acc & ((1 << width) - 1)
        acc >>= width
        nbits -= width
        if code == clear:
            table = [[i] for i in range(clear)] + [None, None]
            width, prev = min_size + 1, None
            continue
        if code == end:
            break
        if code < len(table) and table[code] is not None:
            s = table[code]
            if prev is not None and len(table) < 4096:
                table.append(prev + [s[0]])
        elif prev is not None and code == len(table):
            s = prev + [prev[0]]
            table.append(s)
        else:
            break
        out += s
        prev = s
        if len(table) == (1 << width) and width < 12:
            width += 1
    return out[:n]


def pillow_compare(c):
    try:
        from PIL import Image, ImageFile
    except ImportError:
        return "not run (no Pillow)"
    import io
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        im = Image.open(io.BytesIO(c["data"]))
        frames = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append((im.size, im.convert("RGBA").tobytes()))
    except Exception as e:  # noqa: BLE001 - recording what Pillow does
        if c["error"]:
            return "agrees (fails: %s)" % type(e).__name__
        import re
        return "differs: fails (%s: %s)" % (type(e).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(e))[:80])
    if c["error"]:
        return "differs: decodes %d frame(s) where browsers fail" % len(frames)
    w, h, exp = c["expect"]
    if len(frames) != len(exp):
        return "differs: %d frames, browsers %d" % (len(frames), len(exp))
    for i, ((size, got), want) in enumerate(zip(frames, exp)):
        if size != (w, h):
            return "differs: frame %d size %dx%d, browsers %dx%d" % (i, size[0], size[1], w, h)
        for k in range(0, len(want), 4):
            if want[k + 3] != got[k + 3] or (want[k + 3] and want[k:k + 3] != got[k:k + 3]):
                return "differs: frame %d pixel %d: %s, browsers %s" % (i, k // 4, tuple(got[k:k + 4]), tuple(want[k:k + 4]))
    return "agrees"


def main():
    build()
    manifest = []
    for c in CASES:
        if isinstance(c["expect"], tuple) and c["expect"] and c["expect"][0] == "partial":
            resolve_partial(c)
        entry = dict(file=c["name"] + ".gif", klass=c["klass"], rule=c["rule"], warnings=c["warnings"])
        if c["error"]:
            entry["error"] = c["error"]
        else:
            w, h, frames = c["expect"]
            entry.update(width=w, height=h, frames=[f.hex() for f in frames])
        entry["pillow"] = pillow_compare(c)
        manifest.append(entry)
    check = "--check" in sys.argv
    os.makedirs(OUT, exist_ok=True)
    text = json.dumps(manifest, indent=1) + "\n"
    mismatch = []
    for c in CASES:
        path = os.path.join(OUT, c["name"] + ".gif")
        if check:
            if not os.path.exists(path) or open(path, "rb").read() != c["data"]:
                mismatch.append(path)
        else:
            open(path, "wb").write(c["data"])
    path = os.path.join(OUT, "expected.json")
    if check:
        if not os.path.exists(path) or open(path).read() != text:
            mismatch.append(path)
        if mismatch:
            sys.exit("out of date: " + ", ".join(mismatch))
    else:
        open(path, "w").write(text)
    agree = sum(1 for m in manifest if m["pillow"].startswith("agrees"))
    print("%d cases, Pillow agrees on %d" % (len(manifest), agree))
    for m in manifest:
        if not m["pillow"].startswith("agrees"):
            print("  %-36s %s" % (m["file"], m["pillow"]))


if __name__ == "__main__":
    main()
