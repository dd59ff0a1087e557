"""ArchSpec: one binarized network, described once, spoken by search, training, memory model and codegen.

    spec = ArchSpec(input_shape=(1, 28, 28), classes=10,
                    blocks=(ConvBlock(filters=8, kernel=3, pool=2),))
    spec.to_json(); ArchSpec.from_json(text) == spec; spec.short_hash()

Every block but the last classifier is "fused": binary linear op -> optional max pool on the
pre-activation -> batch norm -> sign. The classifier (binary dense -> batch norm -> integer scores) is
implied and always last. Shapes are computed here once (`ArchSpec.shapes()`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Union

INPUT_MODES = ("uint8", "binary")
FUSIONS = ("recompute", "rowbuffer", "unfused")
FUSION_CODES = {"recompute": "r", "rowbuffer": "b", "unfused": "u"}  # one letter each in describe()


class ArchSpecError(ValueError):
    """An ArchSpec that cannot describe a network; the message names the block and the value."""


@dataclass(frozen=True)
class ConvBlock:
    """Binary conv -> optional max pool (pre-activation) -> batch norm -> sign."""

    filters: int
    kernel: int = 3
    stride: int = 1
    padding: int = 0  # zero padding: padded taps contribute nothing to the sum
    pool: int = 0  # pool window; 0 = no pooling
    pool_stride: int = 0  # 0 = same as the window
    fusion: str = "recompute"  # how pooling is fused: recompute | rowbuffer | unfused
    kind: str = field(default="conv", init=False)

    @property
    def effective_pool_stride(self) -> int:
        return self.pool_stride or self.pool


@dataclass(frozen=True)
class DenseBlock:
    """Binary dense -> batch norm -> sign."""

    units: int
    kind: str = field(default="dense", init=False)


Block = Union[ConvBlock, DenseBlock]


@dataclass(frozen=True)
class LayerShape:
    """What one block sees and produces. Conv output shapes are (C, H, W); dense ones (N, 1, 1)."""

    index: int
    block: Block | None  # None for the classifier
    in_shape: tuple[int, int, int]
    conv_shape: tuple[int, int, int]  # before pooling (== out_shape when no pool or dense)
    out_shape: tuple[int, int, int]

    @property
    def in_size(self) -> int:
        c, h, w = self.in_shape
        return c * h * w

    @property
    def out_size(self) -> int:
        c, h, w = self.out_shape
        return c * h * w


@dataclass(frozen=True)
class ArchSpec:
    input_shape: tuple[int, int, int]  # (C, H, W) of the raw uint8 input
    classes: int
    blocks: tuple[Block, ...] = ()
    input_mode: str = "uint8"  # uint8: first block sums raw pixels; binary: pixel >= 128 -> +1

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        self.validate()

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        if len(self.input_shape) != 3 or any(v < 1 for v in self.input_shape):
            raise ArchSpecError(f"input_shape must be three positive ints (C, H, W) but got {self.input_shape}")
        if self.classes < 2:
            raise ArchSpecError(f"classes must be at least 2 but got {self.classes}")
        if self.input_mode not in INPUT_MODES:
            raise ArchSpecError(f"input_mode must be one of {INPUT_MODES} but got {self.input_mode!r}")
        self.shapes()  # raises on any block that does not fit

    def shapes(self) -> list[LayerShape]:
        """Per block, then the classifier: input, pre-pool and output shapes. Validates as it goes."""
        out: list[LayerShape] = []
        shape = self.input_shape
        seen_dense = False
        for i, b in enumerate(self.blocks):
            where = f"blocks[{i}] ({getattr(b, 'kind', type(b).__name__)})"
            if isinstance(b, ConvBlock):
                if seen_dense:
                    raise ArchSpecError(f"{where}: a conv block cannot follow a dense block")
                c, h, w = shape
                for key in ("filters", "kernel", "stride"):
                    if getattr(b, key) < 1:
                        raise ArchSpecError(f"{where}: {key} must be >= 1 but got {getattr(b, key)}")
                if b.padding < 0:
                    raise ArchSpecError(f"{where}: padding must be >= 0 but got {b.padding}")
                if b.padding >= b.kernel:
                    raise ArchSpecError(f"{where}: padding {b.padding} must be smaller than kernel {b.kernel}")
                if b.fusion not in FUSIONS:
                    raise ArchSpecError(f"{where}: fusion must be one of {FUSIONS} but got {b.fusion!r}")
                hp, wp = h + 2 * b.padding, w + 2 * b.padding
                if b.kernel > hp or b.kernel > wp:
                    raise ArchSpecError(f"{where}: kernel {b.kernel} larger than the padded {hp}x{wp} input")
                h1 = (hp - b.kernel) // b.stride + 1
                w1 = (wp - b.kernel) // b.stride + 1
                conv_shape = (b.filters, h1, w1)
                if b.pool < 0 or b.pool_stride < 0:
                    raise ArchSpecError(f"{where}: pool {b.pool} and pool_stride {b.pool_stride} must be >= 0")
                if b.pool == 1:
                    raise ArchSpecError(f"{where}: pool window 1 is no pooling; use pool=0")
                if b.pool == 0 and b.pool_stride:
                    raise ArchSpecError(f"{where}: pool_stride {b.pool_stride} given without a pool window")
                if b.pool:
                    if b.pool > h1 or b.pool > w1:
                        raise ArchSpecError(f"{where}: pool window {b.pool} larger than its {h1}x{w1} feature map")
                    ps = b.effective_pool_stride
                    out_shape = (b.filters, (h1 - b.pool) // ps + 1, (w1 - b.pool) // ps + 1)
                else:
                    out_shape = conv_shape
                out.append(LayerShape(i, b, shape, conv_shape, out_shape))
                shape = out_shape
            elif isinstance(b, DenseBlock):
                seen_dense = True
                if b.units < 1:
                    raise ArchSpecError(f"{where}: units must be >= 1 but got {b.units}")
                o = (b.units, 1, 1)
                out.append(LayerShape(i, b, shape, o, o))
                shape = o
            else:
                raise ArchSpecError(f"{where}: unknown block type {type(b).__name__}")
        o = (self.classes, 1, 1)
        out.append(LayerShape(len(self.blocks), None, shape, o, o))
        return out

    # ---- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "input_mode": self.input_mode,
            "blocks": [_block_to_dict(b) for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArchSpec":
        unknown = set(d) - {"input_shape", "classes", "input_mode", "blocks"}
        if unknown:
            raise ArchSpecError(f"unknown ArchSpec keys {sorted(unknown)}")
        for key in ("input_shape", "classes"):
            if key not in d:
                raise ArchSpecError(f"ArchSpec is missing key {key!r}")
        blocks = tuple(_block_from_dict(i, b) for i, b in enumerate(d.get("blocks") or ()))
        return cls(
            input_shape=tuple(d["input_shape"]),
            classes=int(d["classes"]),
            blocks=blocks,
            input_mode=d.get("input_mode", "uint8"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        return cls.from_dict(json.loads(text))

    def short_hash(self) -> str:
        """12 hex digits of sha256 over the canonical JSON: stable across processes and versions."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def network(self) -> "ArchSpec":
        """The same network with every pooled block's fusion set to recompute. Fusion is how the C computes
        a pooled block (bit-exact every way): it changes RAM, code and latency, never the function, so
        two ArchSpecs with one network train to the same weights for a seed."""
        return dataclasses.replace(self, blocks=tuple(
            dataclasses.replace(b, fusion="recompute") if isinstance(b, ConvBlock) else b for b in self.blocks))

    def network_hash(self) -> str:
        """short_hash of network(): one value for ArchSpecs that differ only in fusion."""
        return self.network().short_hash()

    def describe(self) -> str:
        """One line for tables, e.g. 'u8-C8k3p1P2r-C16k3-D64': input mode, then per block C<filters>k<kernel>
        [s<stride>][p<padding>][P<pool>[s<pool stride>]<fusion: r recompute, b rowbuffer, u unfused>] or
        D<units>."""
        parts = ["u8" if self.input_mode == "uint8" else "bin"]
        for b in self.blocks:
            if isinstance(b, ConvBlock):
                s = f"C{b.filters}k{b.kernel}"
                s += f"s{b.stride}" if b.stride != 1 else ""
                s += f"p{b.padding}" if b.padding else ""
                if b.pool:
                    s += f"P{b.pool}"
                    s += f"s{b.effective_pool_stride}" if b.effective_pool_stride != b.pool else ""
                    s += FUSION_CODES[b.fusion]
                parts.append(s)
            else:
                parts.append(f"D{b.units}")
        return "-".join(parts)


def _block_to_dict(b: Block) -> dict[str, Any]:
    d = dataclasses.asdict(b)
    return d


_BLOCK_TYPES = {"conv": ConvBlock, "dense": DenseBlock}


def _block_from_dict(i: int, d: dict[str, Any]) -> Block:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _BLOCK_TYPES:
        raise ArchSpecError(f"blocks[{i}]: kind must be one of {sorted(_BLOCK_TYPES)} but got {kind!r}")
    cls = _BLOCK_TYPES[kind]
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(d) - names
    if unknown:
        raise ArchSpecError(f"blocks[{i}] ({kind}): unknown keys {sorted(unknown)}")
    try:
        vals = {k: (v if k == "fusion" else int(v)) for k, v in d.items()}
    except (TypeError, ValueError) as e:
        raise ArchSpecError(f"blocks[{i}] ({kind}): non-integer value in {d}") from e
    return cls(**vals)
