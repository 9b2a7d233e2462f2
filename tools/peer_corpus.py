#!/usr/bin/env python3
"""Peer corpus: the test GIFs other projects ship in their registry packages, run through
autotag's decoder and Pillow (issue 11).

Fetches, into the git-ignored folder peer-corpus/ (never committed):
  * Pillow's sdist Tests/images/*.gif      (pip download --no-deps --no-binary pillow pillow)
  * the `image` and `gif` crates' GIFs     (cargo fetch from a scratch project, then cargo's
                                            registry src/ folder)
  * npm gifwrap and gifuct-js              (npm pack NAME)
then runs `cargo run --release -p gifcodec --example probe` (default limits) and Pillow over
every file, compares the first 20 frames in RGBA (alpha 0: RGB not compared) and prints a
Markdown report: files per source, how many each decoder accepts, pixel agreements, and every
disagreement (the reason to prefer ours is written up in docs/conformance.md).

Usage: python3 tools/peer_corpus.py [--no-fetch]   (needs pip, cargo, npm; Pillow for the
comparison: run it with the project venv's python, e.g. .local/venv/bin/python)
"""

import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DIR = os.path.join(ROOT, "peer-corpus")
MAX_FRAMES = 20


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def fetch_pillow():
    dest = os.path.join(DIR, "pillow")
    os.makedirs(dest, exist_ok=True)
    tmp = tempfile.mkdtemp()
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "pillow", "pillow", "-d", tmp])
    for sdist in glob.glob(os.path.join(tmp, "*.tar.gz")):
        with tarfile.open(sdist) as t:
            for m in t.getmembers():
                if "/Tests/images/" in m.name and m.name.lower().endswith(".gif") and m.isfile():
                    with open(os.path.join(dest, os.path.basename(m.name)), "wb") as f:
                        f.write(t.extractfile(m).read())
    shutil.rmtree(tmp)


def fetch_crates():
    scratch = os.path.join(DIR, "cargo-scratch")
    os.makedirs(os.path.join(scratch, "src"), exist_ok=True)
    with open(os.path.join(scratch, "Cargo.toml"), "w") as f:
        f.write('[package]\nname = "peer-corpus-scratch"\nversion = "0.0.0"\nedition = "2021"\n\n'
                '[dependencies]\nimage = { version = "0.25", default-features = false, features = ["gif"] }\n'
                'gif = "0.14"\n\n[workspace]\n')
    with open(os.path.join(scratch, "src", "lib.rs"), "w") as f:
        f.write("")
    run(["cargo", "fetch", "--quiet", "--manifest-path", os.path.join(scratch, "Cargo.toml")])
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    for crate in ("image", "gif"):
        dest = os.path.join(DIR, crate + "-crate")
        os.makedirs(dest, exist_ok=True)
        dirs = sorted(glob.glob(os.path.join(home, "registry", "src", "*", crate + "-[0-9]*")))
        if not dirs:
            continue
        src = dirs[-1]  # newest version fetched
        for path in glob.glob(os.path.join(src, "**", "*.gif"), recursive=True):
            rel = os.path.relpath(path, src).replace(os.sep, "__")
            shutil.copy(path, os.path.join(dest, rel))


def fetch_npm():
    for pkg in ("gifwrap", "gifuct-js"):
        dest = os.path.join(DIR, pkg)
        os.makedirs(dest, exist_ok=True)
        tmp = tempfile.mkdtemp()
        run(["npm", "pack", "--silent", pkg], cwd=tmp, stdout=subprocess.DEVNULL)
        for tgz in glob.glob(os.path.join(tmp, "*.tgz")):
            with tarfile.open(tgz) as t:
                for m in t.getmembers():
                    if m.name.lower().endswith(".gif") and m.isfile():
                        rel = m.name.replace("package/", "", 1).replace("/", "__")
                        with open(os.path.join(dest, rel), "wb") as f:
                            f.write(t.extractfile(m).read())
        shutil.rmtree(tmp)


def pillow_frames(path):
    from PIL import Image
    im = Image.open(path)
    out = []
    for i in range(min(getattr(im, "n_frames", 1), MAX_FRAMES)):
        im.seek(i)
        out.append((im.size, im.convert("RGBA").tobytes()))
    return out


def compare(ours, theirs):
    """None if equal (alpha-aware), else a short description of the first difference."""
    w, h, frames = ours
    if len(frames) != len(theirs):
        return "frames compared: ours %d, Pillow %d" % (len(frames), len(theirs))
    for i, (mine, (size, pil)) in enumerate(zip(frames, theirs)):
        if size != (w, h):
            return "frame %d: size ours %dx%d, Pillow %dx%d" % (i, w, h, size[0], size[1])
        diff = 0
        first = None
        for k in range(0, len(mine), 4):
            a, b = mine[k:k + 4], pil[k:k + 4]
            if a[3] != b[3] or (a[3] and a[:3] != b[:3]):
                diff += 1
                if first is None:
                    first = (k // 4 % w, k // 4 // w, tuple(a), tuple(b))
        if diff:
            return "frame %d: %d of %d pixels differ, first at (%d, %d): ours %s, Pillow %s" % (
                (i, diff, w * h) + first)
    return None


def main():
    if "--no-fetch" not in sys.argv:
        os.makedirs(DIR, exist_ok=True)
        for f in (fetch_pillow, fetch_crates, fetch_npm):
            try:
                f()
            except (subprocess.CalledProcessError, OSError) as e:
                print("fetch failed: %s: %s" % (f.__name__, e), file=sys.stderr)
    sources = sorted(d for d in os.listdir(DIR) if d != "cargo-scratch" and os.path.isdir(os.path.join(DIR, d)))
    files = [(s, p) for s in sources for p in sorted(glob.glob(os.path.join(DIR, s, "*"))) if p.lower().endswith(".gif")]
    rgba = tempfile.mkdtemp()
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    res = run(["cargo", "run", "--quiet", "--release", "-p", "gifcodec", "--example", "probe", "--", "--rgba", rgba,
               "--max-frames", str(MAX_FRAMES)] + [p for _, p in files], cwd=ROOT, env=env, capture_output=True, text=True)
    ours = [json.loads(line) for line in res.stdout.splitlines()]
    report = {s: dict(files=0, ours_ok=0, pillow_ok=0, agree=0, rows=[]) for s in sources}
    for i, ((src, path), o) in enumerate(zip(files, ours)):
        r = report[src]
        r["files"] += 1
        name = os.path.basename(path)
        try:
            theirs = pillow_frames(path)
            perr = None
        except Exception as e:  # noqa: BLE001 - recording what Pillow does
            theirs, perr = None, "%s: %s" % (type(e).__name__, str(e)[:100])
        r["pillow_ok"] += perr is None
        if o["ok"]:
            r["ours_ok"] += 1
            n = min(o["frames"], MAX_FRAMES)
            w, h = o["width"], o["height"]
            frames = []
            for k in range(n):
                p = os.path.join(rgba, "%d.%d.rgba" % (i, k))
                frames.append(open(p, "rb").read() if os.path.exists(p) else b"")
            if perr:
                r["rows"].append((name, "ours %dx%d, %d frames%s; Pillow fails: %s" % (
                    w, h, o["frames"], " " + str(o["warnings"]) if o["warnings"] else "", perr)))
            else:
                d = compare((w, h, frames), theirs)
                if d is None:
                    r["agree"] += 1
                else:
                    r["rows"].append((name, d))
        else:
            if perr:
                r["agree"] += 1
                r["rows"].append((name, "both fail: ours `%s` (%s); Pillow %s" % (o["reason"], o["error"], perr)))
            else:
                r["rows"].append((name, "ours dead `%s` (%s); Pillow decodes %d frame(s)" % (o["reason"], o["error"], len(theirs))))
    shutil.rmtree(rgba)
    print("| source | files | autotag decodes | Pillow decodes | same outcome (pixels equal, or both fail) |")
    print("| --- | --- | --- | --- | --- |")
    for s in sources:
        r = report[s]
        print("| %s | %d | %d | %d | %d |" % (s, r["files"], r["ours_ok"], r["pillow_ok"], r["agree"]))
    for s in sources:
        if report[s]["rows"]:
            print("\n**%s** — disagreements and shared failures:\n" % s)
            for name, why in report[s]["rows"]:
                print("- `%s`: %s" % (name, why))


if __name__ == "__main__":
    main()
