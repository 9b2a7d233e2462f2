#!/usr/bin/env python3
"""Calibrate the model's scoring data (`tools/scoring.json`) on the calibration part of the
labelled GIF set (issue 14; `docs/quality.md`).

Input: the per-frame scores `autotag eval --dump-frames` writes for the calibration part:

    autotag eval --labels .local/evalset/calibration/labels.jsonl --full-work --dump-frames .local/evalset/calibration/frames.jsonl
    .local/venv/bin/python tools/calibrate_scoring.py .local/evalset/calibration/frames.jsonl [--out tools/scoring.json]

The rule it fits is the one `crates/model/src/scoring.rs` applies (re-implemented here in numpy;
`autotag eval` on the calibration part after export must print the figures this script prints):

1. frames with a luma standard deviation under `blank_luma_std` contribute nothing;
2. consecutive frames whose score vectors have a cosine similarity >= `scene_similarity` are one
   scene; a scene's tag score is the mean over its frames weighted by display time (`shown`);
3. each scene offers its `per_scene_top_k` best tags reaching their threshold; the `max_tags`
   best offers are suggested.

The search: every (scene_similarity, per_scene_top_k, threshold) of a small grid, each with
per-tag thresholds fitted on the same part (a tag offered at least `--min-support` times gets the
lowest threshold at which its offers are at least `--tag-precision` right; thresholds are only
ever raised above the default, since a tag precise on the calibration classes is not
necessarily precise on others). The winner maximises scene recall + recall among the settings
whose calibration precision is at least `--precision` (a margin above the 0.95 goal: the
evaluation part's classes are not the calibration part's). Deterministic.

`duplicate_distance` and `duplicate_histogram_distance` (issue 16: a frame this close to an
inferred one reuses its scores) are not
searched here: it trades model work for quality, and was chosen by `autotag eval` runs on the
calibration part over a range of values (docs/quality.md, "Less model work per GIF"); they are
carried into the output as set below.
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# Content-free frames. On the calibration part, 1 % of the sampled frames have a luma standard
# deviation under 12 and 0.1 % are exactly 0 (the black steps of fades); a photo's frame has
# 20-80. 4 (1.6 % of the luma range) drops black/white/grey frames and the darkest fade steps
# and keeps any frame that shows a picture.
BLANK_LUMA_STD = 4.0
# Thumbnail distance (0-255) and colour-histogram distance (0-1) under which a sampled frame
# reuses an inferred frame's scores: together they infer 42 % fewer frames on the calibration part
# at equal IOU (docs/quality.md, "Less model work per GIF").
DUPLICATE_DISTANCE = 8.0
DUPLICATE_HISTOGRAM_DISTANCE = 0.05
MAX_TAGS = 10
GRID = {
    "scene_similarity": [0.5, 0.7, 0.85],
    "per_scene_top_k": [2, 3, 5],
    "threshold": [0.3, 0.35, 0.4, 0.45, 0.5],
}


def load(path):
    rows = []
    vocab = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            vocab = vocab or r.get("vocab")
            rows.append(r)
    if not vocab:
        sys.exit(f"{path}: no vocabulary on the first line (write it with autotag eval --dump-frames)")
    for r in rows:
        fr = r["frames"]
        r["F"] = np.array([f["scores"] for f in fr], dtype=np.float64).reshape(len(fr), len(vocab))
        r["L"] = np.array([f["luma_std"] for f in fr], dtype=np.float64)
        r["W"] = np.array([f.get("shown", 1.0) for f in fr], dtype=np.float64)
    return rows, vocab


def scenes(F, sim):
    """Index lists of consecutive frames whose cosine similarity is >= sim."""
    out = []
    for i in range(len(F)):
        if out:
            a, b = F[i - 1], F[i]
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            c = 1.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))
            if c >= sim:
                out[-1].append(i)
                continue
        out.append([i])
    return out


def offers(r, p):
    """tag index -> best scene mean among the scenes offering it (before thresholds)."""
    keep = r["L"] >= p["blank_luma_std"]
    F, W = r["F"][keep], r["W"][keep]
    out = {}
    for s in scenes(F, p["scene_similarity"]):
        m = (F[s] * W[s][:, None]).sum(0) / W[s].sum() if W[s].sum() > 0 else F[s].mean(0)
        for i in np.argsort(-m, kind="stable")[: p["per_scene_top_k"]]:
            out[int(i)] = max(out.get(int(i), 0.0), float(m[i]))
    return out


def suggest(r, p, th, vocab):
    o = offers(r, p)
    sel = [i for i, s in o.items() if s >= th.get(i, p["threshold"])]
    sel.sort(key=lambda i: (-o[i], i))
    return [vocab[i] for i in sel[: p["max_tags"]]]


def metrics(rows, sugg):
    """The eval figures this search optimises (micro precision/recall, scene recall)."""
    tp = ns = nt = sc = sr = 0
    for r, s in zip(rows, sugg):
        truth = set(r["truth"])
        if not truth:
            continue
        s = set(s)
        ns += len(s)
        tp += len(truth & s)
        nt += len(truth)
        for scene in r["scenes"] or [r["truth"]]:
            if scene:
                sc += 1
                sr += bool(set(scene) & s)
    return {"precision": tp / max(ns, 1), "recall": tp / max(nt, 1), "scene_recall": sr / max(sc, 1),
            "tags_per_gif": ns / max(len(rows), 1)}


def fit_tag_thresholds(rows, p, vocab, target, min_support):
    per = {}
    for r in rows:
        truth = set(r["truth"])
        for i, s in offers(r, p).items():
            per.setdefault(i, []).append((s, vocab[i] in truth))
    th = {}
    for i, c in per.items():
        if len(c) < min_support:
            continue
        c.sort(reverse=True)
        best, tp = None, 0
        for n, (s, ok) in enumerate(c, 1):
            tp += ok
            if tp / n >= target:
                best = s
        t = 1.0 if best is None else best
        if t > p["threshold"]:
            th[i] = round(t, 4)
    return th


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("frames", help="autotag eval --dump-frames output of the calibration part")
    ap.add_argument("--out", default=os.path.join(HERE, "scoring.json"))
    ap.add_argument("--precision", type=float, default=0.97, help="calibration precision to keep (default 0.97)")
    ap.add_argument("--tag-precision", type=float, default=0.95)
    ap.add_argument("--min-support", type=int, default=8)
    a = ap.parse_args()
    rows, vocab = load(a.frames)
    best = None
    for sim in GRID["scene_similarity"]:
        for k in GRID["per_scene_top_k"]:
            for t in GRID["threshold"]:
                p = {"blank_luma_std": BLANK_LUMA_STD, "duplicate_distance": DUPLICATE_DISTANCE,
                     "duplicate_histogram_distance": DUPLICATE_HISTOGRAM_DISTANCE,
                     "scene_similarity": sim, "per_scene_top_k": k,
                     "max_tags": MAX_TAGS, "threshold": t}
                th = fit_tag_thresholds(rows, p, vocab, a.tag_precision, a.min_support)
                m = metrics(rows, [suggest(r, p, th, vocab) for r in rows])
                ok = m["precision"] >= a.precision
                key = (ok, m["scene_recall"] + m["recall"] if ok else m["precision"])
                if best is None or key > best[0]:
                    best = (key, p, th, m)
    _, p, th, m = best
    scoring = dict(p)
    scoring["tag_thresholds"] = {vocab[i]: t for i, t in sorted(th.items(), key=lambda x: vocab[x[0]])}
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(scoring, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, a.out)
    print(json.dumps({"out": a.out, "gifs": len(rows), "calibration": {k: round(v, 4) for k, v in m.items()},
                      "scoring": {k: v for k, v in scoring.items() if k != "tag_thresholds"},
                      "tag_thresholds": len(th)}, indent=1))


if __name__ == "__main__":
    main()
