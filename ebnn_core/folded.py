"""FoldedModel: the integer-only form of a trained BNN, and the folding that makes it.

A fused block computes an integer sum S per output channel (pixels times ±1 weights on raw uint8
input, XNOR-popcount sums otherwise), max-pools it, and emits sign(a * s * S_max + b) where
a = gamma / sqrt(var + eps), b = beta - a * mean and s is the input scale (1/255 on raw pixels, else 1).
Folded, every channel keeps one integer threshold T and a flip flag:

    p    = OR over the pool window of (S >= T)     (no pool: the window is one position)
    bit  = p XOR flip

a > 0: T = ceil(-b / (a s)), flip 0.  a < 0: T = floor(-b / (a s)) + 1, flip 1 (max <= r is AND of
S <= r, i.e. NOT OR of S >= T).  a == 0: a constant: T = -S_bound (always true), flip 0 for +1, 1 for
-1. T is clamped to [-S_bound, S_bound + 1], which changes no output. The classifier keeps integer
scores A_c * S_c + B_c, A and B scaled from a and b so the largest possible |score| stays below 2^30.
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from .arch import ArchSpec, ConvBlock, DenseBlock, LayerShape
from .bits import bits_to_pm1, chw_index_to_stream_index, pack_bits, pm1_to_bits, unpack_bits, words_for
from .semantics import PIXEL_SCALE

FORMAT_VERSION = 1
SCORE_LIMIT = 2**30
HEADER_BYTES = 1 << 20  # limits on what `FoldedModel.load` reads from one file member
ARRAY_BYTES = 1 << 28  # far beyond any model for a microcontroller


class FoldedModelError(ValueError):
    """A file that is not a consistent FoldedModel; the message says what is wrong."""


@dataclass
class FoldedLayer:
    """One block (kind conv or dense) or the classifier, integers only."""

    kind: str  # conv | dense | classifier
    weights: np.ndarray  # uint32 words, the weight stream of ebnn_core.bits
    n_weight_bits: int
    threshold: np.ndarray | None = None  # int32 (F,)
    flip: np.ndarray | None = None  # uint8 (F,) 0/1
    constant: np.ndarray | None = None  # int8 (F,): 0 = data dependent, +1/-1 = constant output
    scale: np.ndarray | None = None  # int32 (classes,), classifier only
    offset: np.ndarray | None = None  # int32 (classes,), classifier only

    def weights_pm1(self, rows: int) -> np.ndarray:
        """(rows, n_weight_bits / rows) int8 ±1 view of the weight stream."""
        bits = unpack_bits(self.weights, self.n_weight_bits)
        return bits_to_pm1(bits).reshape(rows, -1)


@dataclass
class FoldedModel:
    spec: ArchSpec
    layers: list[FoldedLayer]
    meta: dict

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for i, ly in enumerate(self.layers):
            for key in ("weights", "threshold", "flip", "constant", "scale", "offset"):
                v = getattr(ly, key)
                if v is not None:
                    arrays[f"l{i}_{key}"] = v
        header = {
            "format": FORMAT_VERSION,
            "arch": self.spec.to_dict(),
            "arch_hash": self.spec.short_hash(),
            "layers": [{"kind": ly.kind, "n_weight_bits": ly.n_weight_bits} for ly in self.layers],
            "meta": self.meta,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FoldedModel":
        """Read a file written by `save`. Every array's npy header is checked against the ArchSpec before
        its data is read; anything else (not an npz, truncated, pickled or inconsistent) raises
        FoldedModelError (a ValueError) saying what is wrong."""
        with open(Path(path), "rb") as f:
            try:
                return _read(cls, zipfile.ZipFile(f))
            except FoldedModelError:
                raise
            except (OSError, EOFError, ValueError, KeyError, TypeError, RecursionError, zipfile.BadZipFile,
                    zlib.error) as e:
                raise FoldedModelError(f"not a FoldedModel file ({type(e).__name__}: {e})") from None


def _member(zf: zipfile.ZipFile, name: str, count: int | None, limit: int = ARRAY_BYTES) -> np.ndarray:
    """One array of the npz: 1-D integers (`count` of them when given); shape and dtype are checked before
    any data is read, so a crafted header cannot make us allocate or unpickle anything."""
    with zf.open(f"{name}.npy") as f:
        version = npformat.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise FoldedModelError(f"{name}: npy format version {version} is not 1.0 or 2.0")
        read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, _, dtype = read(f)
        n = shape[0] if len(shape) == 1 else -1
        if dtype.kind not in "iu" or n < 0 or (count is not None and n != count) or n * dtype.itemsize > limit:
            want = f"{count} integers" if count is not None else f"at most {limit} bytes of integers"
            raise FoldedModelError(f"{name}: a {dtype} array of shape {tuple(shape)}, expected {want}")
        a = np.frombuffer(f.read(n * dtype.itemsize), dtype=dtype)
    if a.size != n:
        raise FoldedModelError(f"{name}: truncated ({a.size} of {n} values)")
    return a


def _ints(a: np.ndarray, dtype, what: str) -> np.ndarray:
    info = np.iinfo(dtype)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        raise FoldedModelError(f"{what}: values outside {np.dtype(dtype).name}")
    return a.astype(dtype)


def _read_layer(zf: zipfile.ZipFile, spec: ArchSpec, ls: LayerShape, lh) -> FoldedLayer:
    i, b = ls.index, ls.block
    kind = "conv" if isinstance(b, ConvBlock) else "dense" if isinstance(b, DenseBlock) else "classifier"
    rows = ls.out_shape[0]
    n_bits = rows * (b.kernel ** 2 * ls.in_shape[0] if isinstance(b, ConvBlock) else ls.in_size)
    where = f"layer {i} ({kind})"
    if not isinstance(lh, dict) or lh.get("kind") != kind or lh.get("n_weight_bits") != n_bits:
        got = (lh.get("kind"), lh.get("n_weight_bits")) if isinstance(lh, dict) else lh
        raise FoldedModelError(f"{where}: header says (kind, n_weight_bits) = {got!r}, the ArchSpec needs "
                               f"({kind!r}, {n_bits})")

    def get(key: str, count: int, dtype) -> np.ndarray:
        return _ints(_member(zf, f"l{i}_{key}", count), dtype, f"{where}: {key}")

    weights = get("weights", words_for(n_bits), np.uint32)
    bound = sum_bound(spec, ls)
    if kind == "classifier":
        scale, offset = get("scale", rows, np.int32), get("offset", rows, np.int32)
        if np.any(np.abs(scale.astype(np.int64)) * bound + np.abs(offset.astype(np.int64)) >= 2**31):
            raise FoldedModelError(f"{where}: scale and offset let a score overflow int32")
        return FoldedLayer(kind, weights, n_bits, scale=scale, offset=offset)
    thr, flip = get("threshold", rows, np.int32), get("flip", rows, np.uint8)
    const = get("constant", rows, np.int8) if f"l{i}_constant.npy" in zf.namelist() else None
    if thr.min() < -bound or thr.max() > bound + 1:
        raise FoldedModelError(f"{where}: thresholds outside the sum range [{-bound}, {bound + 1}]")
    if flip.max() > 1 or (const is not None and np.any(np.abs(const.astype(np.int16)) > 1)):
        raise FoldedModelError(f"{where}: flips must be 0/1 and constants -1/0/1")
    return FoldedLayer(kind, weights, n_bits, thr, flip, const)


def _read(cls, zf: zipfile.ZipFile) -> FoldedModel:
    header = json.loads(_member(zf, "header", None, HEADER_BYTES).astype(np.uint8).tobytes().decode())
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise FoldedModelError(f"header format {got!r} is not {FORMAT_VERSION}")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise FoldedModelError(f"meta is a JSON {type(meta).__name__}, not an object")
    if not isinstance(header.get("arch"), dict):
        raise FoldedModelError("header has no ArchSpec object under 'arch'")
    try:
        spec = ArchSpec.from_dict(header["arch"])
    except (ValueError, TypeError, AttributeError) as e:
        raise FoldedModelError(f"arch: {e}") from None
    if header.get("arch_hash", spec.short_hash()) != spec.short_hash():
        raise FoldedModelError(f"arch_hash {header['arch_hash']!r} is not the ArchSpec's {spec.short_hash()}")
    shapes, lhs = spec.shapes(), header.get("layers")
    if not isinstance(lhs, list) or len(lhs) != len(shapes):
        raise FoldedModelError(f"layers: {len(lhs) if isinstance(lhs, list) else lhs!r} entries, the ArchSpec "
                               f"has {len(shapes)} layers")
    return cls(spec, [_read_layer(zf, spec, ls, lh) for ls, lh in zip(shapes, lhs)], meta)


def sum_bound(spec: ArchSpec, ls: LayerShape) -> int:
    """Largest |S| a block's integer sum can reach (pixels are at most 255)."""
    c = ls.in_shape[0]
    taps = ls.block.kernel ** 2 * c if isinstance(ls.block, ConvBlock) else ls.in_size
    on_pixels = ls.index == 0 and spec.input_mode == "uint8"
    return taps * (PIXEL_SCALE if on_pixels else 1)


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    gamma = bn.weight.detach().double().numpy()
    beta = bn.bias.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    a = gamma / np.sqrt(var + bn.eps)
    return a, beta - a * mean


def fold_thresholds(a: np.ndarray, b: np.ndarray, input_scale_den: int, bound: int):
    """Thresholds, flips and constant flags for sign(a * S / den + b), S an integer in [-bound, bound]."""
    f = len(a)
    thr = np.zeros(f, dtype=np.int64)
    flip = np.zeros(f, dtype=np.uint8)
    const = np.zeros(f, dtype=np.int8)
    for j in range(f):
        aj, bj = float(a[j]), float(b[j])
        if aj == 0.0 or not math.isfinite(-bj * input_scale_den / aj):
            const[j] = 1 if bj >= 0 else -1
            thr[j] = -bound
            flip[j] = 0 if bj >= 0 else 1
            continue
        r = -bj * input_scale_den / aj
        if aj > 0:
            t = math.ceil(r)
        else:
            t = math.floor(r) + 1
            flip[j] = 1
        thr[j] = min(max(t, -bound), bound + 1)
    return thr.astype(np.int32), flip, const


def fold(model, meta: dict | None = None) -> FoldedModel:
    """Trained BNN -> FoldedModel (eval-mode batch norm statistics)."""
    spec = model.spec
    shapes = spec.shapes()
    mods = list(model.blocks) + [model.classifier]
    layers: list[FoldedLayer] = []
    for ls, m in zip(shapes, mods):
        on_pixels = ls.index == 0 and spec.input_mode == "uint8"
        den = PIXEL_SCALE if on_pixels else 1
        bound = sum_bound(spec, ls)
        if isinstance(ls.block, ConvBlock):
            w = m.conv.weight.detach().numpy()  # (F, C, K, K)
            w = np.transpose(w, (0, 2, 3, 1))  # (F, ky, kx, c): the weight stream order
            bits = pm1_to_bits(w).reshape(-1)
            a, b = _bn_affine(m.bn)
            thr, flip, const = fold_thresholds(a, b, den, bound)
            layers.append(FoldedLayer("conv", pack_bits(bits), bits.size, thr, flip, const))
            continue
        w = m.fc.weight.detach().numpy()  # (U, N) with N in CHW order
        if ls.in_shape[1:] != (1, 1) and not on_pixels:
            w = w[:, chw_index_to_stream_index(ls.in_shape)]  # columns in the stream's HWC order
        bits = pm1_to_bits(w).reshape(-1)
        a, b = _bn_affine(m.bn)
        if isinstance(ls.block, DenseBlock):
            thr, flip, const = fold_thresholds(a, b, den, bound)
            layers.append(FoldedLayer("dense", pack_bits(bits), bits.size, thr, flip, const))
        else:
            a = a / den
            worst = float(np.max(np.abs(a) * bound + np.abs(b))) + 1.0
            k = (SCORE_LIMIT - 1) / worst
            scale = np.round(a * k).astype(np.int64)
            offset = np.round(b * k).astype(np.int64)
            assert np.all(np.abs(scale) * bound + np.abs(offset) < 2**31), "classifier scores overflow int32"
            layers.append(FoldedLayer("classifier", pack_bits(bits), bits.size,
                                      scale=scale.astype(np.int32), offset=offset.astype(np.int32)))
    return FoldedModel(spec, layers, dict(meta or {}))
