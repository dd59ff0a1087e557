"""Helpers for tests and benchmarks: trained-looking random weights for any ArchSpec."""
from __future__ import annotations

import numpy as np
import torch

from .nn import BNN


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
