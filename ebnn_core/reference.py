"""NumPy reference inference over a FoldedModel: integers only, packed bits between blocks.

Deliberately plain: each block unpacks its input stream (ebnn_core.bits), sums ±1 products with
integer matrix products, thresholds, ORs over pool windows, XORs the flip and packs the result. No
float is created anywhere. The three pooling fusions give the same bits, so one path serves them all.

    pred, scores = predict(folded, images_uint8)      # images (B, C, H, W) uint8
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .arch import ConvBlock, DenseBlock
from .bits import chw_to_stream, pack_bits, stream_to_hwc, unpack_bits, bits_to_pm1
from .folded import FoldedModel
from .semantics import BINARY_INPUT_THRESHOLD


def _conv_sums(x_hwc: np.ndarray, w: np.ndarray, b: ConvBlock) -> np.ndarray:
    """x (B, H, W, C) int, w (F, K*K*C) ±1 in (ky, kx, c) order -> S (B, H1, W1, F) int64."""
    p, k, s = b.padding, b.kernel, b.stride
    if p:
        x_hwc = np.pad(x_hwc, ((0, 0), (p, p), (p, p), (0, 0)))  # zero: padded taps add nothing
    win = sliding_window_view(x_hwc, (k, k), axis=(1, 2))[:, ::s, ::s]  # (B, H1, W1, C, ky, kx)
    win = np.moveaxis(win, 3, 5)  # (B, H1, W1, ky, kx, C)
    bsz, h1, w1 = win.shape[:3]
    cols = win.reshape(bsz * h1 * w1, -1)
    out = cols.astype(np.int32) @ w.T.astype(np.int32)
    return out.reshape(bsz, h1, w1, -1).astype(np.int64)


def _or_pool(p: np.ndarray, window: int, stride: int) -> np.ndarray:
    """p (B, H, W, F) bool -> OR over window x window patches with the given stride."""
    win = sliding_window_view(p, (window, window), axis=(1, 2))[:, ::stride, ::stride]
    return win.any(axis=(-1, -2))


def _block_bits(s: np.ndarray, thr: np.ndarray, flip: np.ndarray) -> np.ndarray:
    return ((s >= thr.astype(np.int64)) ^ flip.astype(bool)).astype(np.uint8)


def predict(fm: FoldedModel, images: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Class indices (B,) int64 and integer scores (B, classes) int64 for uint8 images (B, C, H, W)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 raw pixels but got {images.dtype}")
    want = fm.spec.input_shape
    if images.ndim != 4 or tuple(images.shape[1:]) != want:
        raise ValueError(f"images must have shape (B, {want[0]}, {want[1]}, {want[2]}) but got {images.shape}")
    preds, scores = [], []
    for i in range(0, len(images), chunk):
        p, sc = _predict_chunk(fm, images[i:i + chunk])
        preds.append(p)
        scores.append(sc)
    if not preds:
        return np.zeros(0, np.int64), np.zeros((0, fm.spec.classes), np.int64)
    return np.concatenate(preds), np.concatenate(scores)


def _predict_chunk(fm: FoldedModel, images: np.ndarray):
    spec = fm.spec
    shapes = spec.shapes()
    bsz = len(images)
    if spec.input_mode == "binary":
        bits = (images >= BINARY_INPUT_THRESHOLD).astype(np.uint8)
        state = ("stream", pack_bits(chw_to_stream(bits)), spec.input_shape)
    else:
        state = ("pixels", images, spec.input_shape)

    for ls, ly in zip(shapes, fm.layers):
        kind, data, shape = state
        n_in = shape[0] * shape[1] * shape[2]
        if kind == "stream":
            vals = bits_to_pm1(unpack_bits(data, n_in))  # (B, n_in) ±1 in HWC order
        else:
            vals = data.astype(np.int32)  # raw pixels, CHW
        if isinstance(ls.block, ConvBlock):
            b = ls.block
            x = stream_to_hwc(vals, shape) if kind == "stream" else np.moveaxis(vals, 1, -1)
            s = _conv_sums(x, ly.weights_pm1(b.filters), b)
            p = s >= ly.threshold.astype(np.int64)
            if b.pool:
                p = _or_pool(p, b.pool, b.effective_pool_stride)
            out = (p ^ ly.flip.astype(bool)).astype(np.uint8)
            assert out.shape[1:] == (ls.out_shape[1], ls.out_shape[2], ls.out_shape[0]), (out.shape, ls.out_shape)
            state = ("stream", pack_bits(out.reshape(bsz, -1)), ls.out_shape)
            continue
        x = vals.reshape(bsz, -1)  # stream order, or raw CHW pixels for a first layer on pixels
        rows = ls.out_shape[0]
        s = (x.astype(np.int32) @ ly.weights_pm1(rows).T.astype(np.int32)).astype(np.int64)
        if isinstance(ls.block, DenseBlock):
            state = ("stream", pack_bits(_block_bits(s, ly.threshold, ly.flip)), ls.out_shape)
        else:
            sc = s * ly.scale.astype(np.int64) + ly.offset.astype(np.int64)
            return np.argmax(sc, axis=1).astype(np.int64), sc
    raise AssertionError("FoldedModel has no classifier layer")
