"""BNN layers in PyTorch and the model built from an ArchSpec.

The forward pass is the inference semantics of DESIGN.md: sign(x) = +1 if x >= 0 else -1; a conv block
is binary conv -> optional max pool on the pre-activation -> batch norm -> sign; the first block reads
raw uint8 pixels (scaled by 1/255, a factor the folded threshold absorbs) or pixels binarized as
pixel >= BINARY_INPUT_THRESHOLD.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .arch import ArchSpec, ConvBlock, DenseBlock
from .semantics import BINARY_INPUT_THRESHOLD, BN_EPS, PIXEL_SCALE



class SignSTE(torch.autograd.Function):
    """Forward: +1 where x >= 0 else -1 (never 0). Backward: straight-through, zero where |x| > 1."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    return SignSTE.apply(x)


class ApproxSignSTE(SignSTE):
    """Forward as SignSTE. Backward: the derivative of a piecewise quadratic approximation of sign
    (Bi-Real Net's ApproxSign): 2 - 2|x| where |x| <= 1, else 0."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.clamp(2.0 - 2.0 * x.abs(), min=0.0)


ACTIVATION_STE = {"clipped": SignSTE.apply, "approxsign": ApproxSignSTE.apply}


class BinaryConv2d(nn.Conv2d):
    """Conv over sign(latent weights); no bias (batch norm carries it)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, sign_ste(self.weight), None, self.stride, self.padding)


class BinaryLinear(nn.Linear):
    """Dense over sign(latent weights); no bias (batch norm carries it)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, sign_ste(self.weight))


class InputQuantizer(nn.Module):
    """uint8 pixels -> what the first block sums: pixel/255, or ±1 in binary mode."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            x = x.to(torch.float32)
        if self.mode == "binary":
            return torch.where(x >= BINARY_INPUT_THRESHOLD, torch.ones_like(x), -torch.ones_like(x))
        return x / PIXEL_SCALE


class FusedConv(nn.Module):
    def __init__(self, in_ch: int, b: ConvBlock, ste: str = "clipped", bn_momentum: float = 0.1):
        super().__init__()
        self.conv = BinaryConv2d(in_ch, b.filters, b.kernel, b.stride, b.padding)
        self.pool = nn.MaxPool2d(b.pool, b.effective_pool_stride) if b.pool else nn.Identity()
        self.bn = nn.BatchNorm2d(b.filters, eps=BN_EPS, momentum=bn_momentum)
        self.sign = ACTIVATION_STE[ste]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sign(self.bn(self.pool(self.conv(x))))


class FusedDense(nn.Module):
    def __init__(self, n_in: int, units: int, binarize: bool = True, ste: str = "clipped", bn_momentum: float = 0.1):
        super().__init__()
        self.fc = BinaryLinear(n_in, units)
        self.bn = nn.BatchNorm1d(units, eps=BN_EPS, momentum=bn_momentum)
        self.binarize = binarize
        self.sign = ACTIVATION_STE[ste]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.fc(x.flatten(1)))
        return self.sign(y) if self.binarize else y


class BNN(nn.Module):
    """The network of an ArchSpec. Input: uint8 (or any numeric) tensor (B, C, H, W) of raw pixels."""

    def __init__(self, spec: ArchSpec, ste: str = "clipped", bn_momentum: float = 0.1):
        """ste: the activations' straight-through estimator (ACTIVATION_STE; the weights' is always the
        clipped one, as they stay in [-1, 1]); bn_momentum: of the running statistics the fold uses."""
        super().__init__()
        self.spec = spec
        self.quant = InputQuantizer(spec.input_mode)
        layers: list[nn.Module] = []
        for ls in spec.shapes():
            b = ls.block
            if isinstance(b, ConvBlock):
                layers.append(FusedConv(ls.in_shape[0], b, ste, bn_momentum))
            elif isinstance(b, DenseBlock):
                layers.append(FusedDense(ls.in_size, b.units, ste=ste, bn_momentum=bn_momentum))
            else:
                layers.append(FusedDense(ls.in_size, spec.classes, binarize=False, bn_momentum=bn_momentum))
        self.blocks = nn.ModuleList(layers[:-1])
        self.classifier = layers[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        for blk in self.blocks:
            x = blk(x)
        return self.classifier(x)

    @torch.no_grad()
    def clip_weights(self) -> None:
        """Keep latent weights in [-1, 1] (outside, the STE gradient would never bring them back)."""
        for m in self.modules():
            if isinstance(m, (BinaryConv2d, BinaryLinear)):
                m.weight.clamp_(-1.0, 1.0)


class FloatTwin(nn.Module):
    """The float network of an ArchSpec's shape, for baselines: the same conv and dense layers (filters,
    kernels, strides, padding, pooling, units) with float weights, batch norm and ReLU, on pixels / 255.
    Its weights cost 4 bytes each where the BNN's cost one bit."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        for ls in spec.shapes():
            b = ls.block
            if isinstance(b, ConvBlock):
                layers += [nn.Conv2d(ls.in_shape[0], b.filters, b.kernel, b.stride, b.padding, bias=False)]
                if b.pool:
                    layers.append(nn.MaxPool2d(b.pool, b.effective_pool_stride))
                layers += [nn.BatchNorm2d(b.filters), nn.ReLU()]
            else:
                units = b.units if isinstance(b, DenseBlock) else spec.classes
                layers += [nn.Flatten(), nn.Linear(ls.in_size, units, bias=False), nn.BatchNorm1d(units)]
                if isinstance(b, DenseBlock):
                    layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(torch.float32) / 255.0)

    def weight_count(self) -> int:
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
