"""Hypothesis strategies shared by the property tests: random architectures and random trained-looking
weights (negative and zero batch-norm scales included)."""
from __future__ import annotations

from hypothesis import strategies as st

from ebnn_core import ArchSpec, ConvBlock, DenseBlock
from ebnn_core.arch import FUSIONS
from ebnn_core.testing import randomize  # noqa: F401  (re-exported for the tests)


@st.composite
def arch_specs(draw, max_hw: int = 14) -> ArchSpec:
    c = draw(st.integers(1, 3))
    h = draw(st.integers(3, max_hw))
    w = draw(st.integers(3, max_hw))
    shape = (c, h, w)
    blocks = []
    for _ in range(draw(st.integers(0, 2))):
        _, hh, ww = shape
        k = draw(st.integers(1, min(7, hh, ww)))
        pad = draw(st.integers(0, k - 1))
        stride = draw(st.integers(1, 2))
        filters = draw(st.integers(1, 9))
        h1 = (hh + 2 * pad - k) // stride + 1
        w1 = (ww + 2 * pad - k) // stride + 1
        pool = draw(st.sampled_from([0, 2, 3]))
        if pool > min(h1, w1):
            pool = 0
        ps = draw(st.integers(1, 2)) if pool else 0
        blk = ConvBlock(filters, k, stride, pad, pool, ps, draw(st.sampled_from(FUSIONS)))
        blocks.append(blk)
        shape = ArchSpec((c, h, w), 2, tuple(blocks)).shapes()[-2].out_shape
    for _ in range(draw(st.integers(0, 2))):
        blocks.append(DenseBlock(draw(st.integers(1, 40))))
    mode = draw(st.sampled_from(["uint8", "binary"]))
    return ArchSpec((c, h, w), draw(st.integers(2, 5)), tuple(blocks), input_mode=mode)
