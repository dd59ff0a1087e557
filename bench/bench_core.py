"""Core benchmarks, each a ratio against a float PyTorch model of the same shape measured in the same run.

    .venv/bin/python bench/bench_core.py [--presets conv-1,mlp-1,convpool-1] [--batches 40]

- training throughput (images/s): the BNN (sign + STE, weight clipping) vs the same layers in float
  (ReLU instead of sign, no clipping), same optimiser and batch size;
- inference time per image: the integer NumPy reference vs the float model in eval mode (torch, all cores).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ebnn_core import ArchSpec, ConvBlock, reference_predict  # noqa: E402
from ebnn_core.data import load_mnist  # noqa: E402
from ebnn_core.folded import fold  # noqa: E402
from ebnn_core.nn import BNN  # noqa: E402
from pipeline.config import arch_spec, compose, resolved  # noqa: E402


class FloatTwin(nn.Module):
    """The BNN's shapes with float weights and ReLU: the baseline."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        layers: list[nn.Module] = []
        for ls in spec.shapes():
            b = ls.block
            if isinstance(b, ConvBlock):
                layers += [nn.Conv2d(ls.in_shape[0], b.filters, b.kernel, b.stride, b.padding, bias=False)]
                layers += [nn.MaxPool2d(b.pool, b.effective_pool_stride)] if b.pool else []
                layers += [nn.BatchNorm2d(b.filters), nn.ReLU()]
            else:
                layers += [nn.Flatten(), nn.Linear(ls.in_size, ls.out_shape[0], bias=False), nn.BatchNorm1d(ls.out_shape[0])]
                layers += [nn.ReLU()] if b is not None else []
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.float() / 255)


def train_throughput(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, batches: int,
                     clip: bool) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for i in range(batches):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if clip:
            model.clip_weights()
    return batch * batches / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="conv-1,mlp-1,convpool-1,conv-2")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", type=int, default=2000, help="test images for inference timing")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = load_mnist()
    x = torch.from_numpy(data.train_x[: args.batch * args.batches])
    y = torch.from_numpy(data.train_y[: args.batch * args.batches])
    test = data.test_x[: args.images]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; training {args.batches} batches of "
          f"{args.batch}; inference over {args.images} test images")
    print(f"{'preset':<12} {'bnn img/s':>10} {'float img/s':>12} {'train ratio':>12} "
          f"{'ref us/img':>11} {'float us/img':>13} {'infer ratio':>12}")
    for name in args.presets.split(","):
        spec = arch_spec(resolved(compose("train", [f"arch={name}"])))
        bnn, twin = BNN(spec), FloatTwin(spec)
        train_throughput(twin, x[:args.batch], y[:args.batch], args.batch, 1, False)  # warm-up
        tw = train_throughput(twin, x, y, args.batch, args.batches, False)
        tb = train_throughput(bnn, x, y, args.batch, args.batches, True)
        bnn.eval(), twin.eval()
        folded = fold(bnn)
        t0 = time.perf_counter()
        reference_predict(folded, test)
        ref_us = (time.perf_counter() - t0) / len(test) * 1e6
        with torch.no_grad():
            tt = torch.from_numpy(test)
            t0 = time.perf_counter()
            for i in range(0, len(tt), 1000):
                twin(tt[i:i + 1000])
            float_us = (time.perf_counter() - t0) / len(test) * 1e6
        print(f"{name:<12} {tb:>10.0f} {tw:>12.0f} {tb / tw:>12.2f} {ref_us:>11.1f} {float_us:>13.1f} "
              f"{ref_us / float_us:>12.2f}")
    print("train ratio: BNN images/s over float images/s (higher is better); "
          "infer ratio: reference time over float time (lower is better)")


if __name__ == "__main__":
    main()
