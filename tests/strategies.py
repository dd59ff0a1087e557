"""Hypothesis strategies shared by the property tests: random architectures and random trained-looking
weights (negative and zero batch-norm scales included)."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from ebnn_core import ArchSpec, ConvBlock, DenseBlock
from ebnn_core.arch import FUSIONS
from ebnn_core.nn import BNN


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


def randomize(model: BNN, seed: int) -> BNN:
    """Random latent weights and batch-norm statistics spread over each layer's sum range, with some
    negative and some exactly zero scales."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = model.spec
    for ls, m in zip(spec.shapes(), list(model.blocks) + [model.classifier]):
        lin = m.conv if hasattr(m, "conv") else m.fc
        with torch.no_grad():
            lin.weight.copy_(torch.rand(lin.weight.shape, generator=g) * 2 - 1)
            bn = m.bn
            n = bn.num_features
            taps = lin.weight[0].numel()
            scale = 1.0 if (ls.index > 0 or spec.input_mode == "binary") else 0.5  # pixels/255 average ~0.5
            spread = max(1.0, np.sqrt(taps)) * scale
            bn.running_mean.copy_(torch.from_numpy(rng.normal(0, spread, n)))
            bn.running_var.copy_(torch.from_numpy(rng.uniform(0.2, 4.0, n) * spread ** 2))
            gamma = rng.uniform(-1.5, 1.5, n)
            gamma[rng.random(n) < 0.15] = 0.0
            bn.weight.copy_(torch.from_numpy(gamma))
            bn.bias.copy_(torch.from_numpy(rng.uniform(-1, 1, n)))
    return model.eval()
