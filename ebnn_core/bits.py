"""The packing convention, written once. The C runtime header (c_runtime/ebnn.h) states the same.

- A binary value is one bit: 1 means +1, 0 means -1 (sign(x) = +1 if x >= 0, so sign(0) is bit 1).
- A vector of n values is a *bit stream*: value i is bit (i % 32) of 32-bit word i // 32, least
  significant bit first; the stream occupies ceil(n / 32) words, unused high bits are 0.
- A conv activation of shape (C, H, W) is streamed in HWC order: value (c, y, x) is bit
  (y * W + x) * C + c. A kernel row of K taps over C channels is then K * C contiguous bits.
- A conv weight tensor (F, C, K, K) is one stream per filter in (ky, kx, c) order, the filters
  concatenated without padding: filter f, tap (ky, kx), channel c is bit ((f * K + ky) * K + kx) * C + c.
- A dense weight matrix (U, N) is streamed row after row: bit u * N + n, where n indexes the input
  stream (so a dense layer after a conv block reads its input in HWC order).
- Padding is zero: a tap outside the input contributes nothing to the sum (it is skipped).
- The C runtime stores the weights of a first layer on raw pixels in a grouped layout of its own
  (c_runtime/ebnn.h, codegen.generate.pixel_group_words); the FoldedModel keeps the streams above.
"""
from __future__ import annotations

import numpy as np

WORD_BITS = 32


def words_for(n_bits: int) -> int:
    """Number of 32-bit words a stream of n_bits occupies."""
    return -(-int(n_bits) // WORD_BITS)


def pm1_to_bits(values: np.ndarray) -> np.ndarray:
    """Map ±1 (or any sign) to bits with the project's sign rule: bit = value >= 0."""
    return (np.asarray(values) >= 0).astype(np.uint8)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a 0/1 array into little-endian uint32 words (LSB first)."""
    bits = np.asarray(bits, dtype=np.uint8)
    n = bits.shape[-1]
    nw = words_for(n)
    padded = np.zeros(bits.shape[:-1] + (nw * WORD_BITS,), dtype=np.uint8)
    padded[..., :n] = bits
    by = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(by).view("<u4").astype(np.uint32)


def unpack_bits(words: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of pack_bits: (..., nwords) uint32 -> (..., n_bits) 0/1 uint8."""
    w = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    by = w.view(np.uint8)
    return np.unpackbits(by, axis=-1, bitorder="little")[..., :n_bits]


def bits_to_pm1(bits: np.ndarray) -> np.ndarray:
    """0/1 -> -1/+1 as int8."""
    return (np.asarray(bits, dtype=np.int8) * 2 - 1).astype(np.int8)


def chw_to_stream(x: np.ndarray) -> np.ndarray:
    """(..., C, H, W) -> (..., H*W*C) in the stream's HWC order."""
    *lead, c, h, w = x.shape
    return np.moveaxis(x, -3, -1).reshape(*lead, h * w * c)


def stream_to_hwc(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(..., H*W*C) -> (..., H, W, C)."""
    c, h, w = shape
    return x.reshape(*x.shape[:-1], h, w, c)


def chw_index_to_stream_index(shape: tuple[int, int, int]) -> np.ndarray:
    """perm such that stream[j] = chw_flat[perm[j]] for a (C, H, W) tensor."""
    c, h, w = shape
    idx = np.arange(c * h * w).reshape(c, h, w)
    return chw_to_stream(idx)
