"""Memory and latency models: what an ArchSpec costs on a device, exactly and before any training.

    dev = Device.from_dict(yaml.safe_load(open("conf/device/curie.yaml")))
    mem = memory_plan(spec, dev)     # mem.ram_bytes, mem.flash_bytes, mem.model_bytes, mem.arena
    ops = op_counts(spec)            # generic work: pixel adds, XNOR-popcount words, compares, pool ops
    latency_ms(spec, dev)            # per kernel path cost terms (latency_terms) x dev.cycles, over the clock

The code generator allocates from `memory_plan`, so the estimate and the binary cannot drift.

Storage (all streams in 32-bit words, ebnn_core.bits):
- weights (layouts in c_runtime/ebnn.h): on a bit stream, each filter or row padded to whole words;
  a conv on raw pixels one byte per (filter, kernel row, chunk of up to 4 taps of the row), the
  array padded to a word; a dense layer on raw pixels one word per (8 outputs, 4 pixels);
- thresholds: int16 per channel when the layer's sum bound fits, else int32, the array padded to a
  whole word (an odd int16 count gets one unused entry); flips: a bit stream;
- classifier: weights, int32 scale and int32 offset per class;
- activations: one arena; layer i's packed output sits at its start (i even) or its end (i odd),
  so the arena is the largest pair of consecutive packed layers (the binarized input is layer 0 in
  binary mode; on raw pixels the first block reads the caller's input buffer), plus 8 bytes of read
  slack at its end (a kernel reads up to 8 bytes from the first byte of a run of bits);
- scratch, per pooled conv block by fusion: recompute 0; rowbuffer `pool` rows of conv output bits;
  unfused the whole conv output; the scratch region is the largest over blocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arch import ArchSpec, ConvBlock, LayerShape
from .bits import words_for
from .folded import sum_bound

WORD_BYTES = 4
PARAMS_IN = ("ram", "flash")
OP_KEYS = ("pixel_add", "xnor_word", "compare", "pool_op", "output")  # OpCounts (generic work, bench/)
# The latency model's cost terms, one per thing the C kernels spend time on (latency_terms); the device
# file's `cycles:` section gives the cycles of each (fitted by bench/calibrate_latency.py).
COST_KEYS = ("inference", "pack_pixel", "pass", "clear_word",
             "lane_window", "lane_tap", "lane_madd", "lane_word",
             "table_window", "table_tap", "table_chunk", "table_entry", "table_lookup", "table_filter",
             "table_wide_tap",
             "bit_window", "window_word", "bit_filter", "xnor_word", "xnor_border_word",
             "border_window", "bit_store", "pool_read",
             "dense_table", "dense_lookup", "pixel_output", "dense_word", "dense_long_word", "output",
             "bit_bound", "table_border_tap", "bit_border_row", "pool_window", "table_acc_spill", "xnor_nibble",
             "dense_var_lookup", "table_reg_lookup", "table_pair_entry", "table_pair_lookup")
CYCLE_KEYS = COST_KEYS


class DeviceError(ValueError):
    """A device description that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class Device:
    name: str
    clock_mhz: float
    params_in: str = "ram"
    ram_kb: float | None = None  # default RAM budget
    latency_ms: float | None = None  # default latency budget
    ram_kb_total: float | None = None
    flash_kb: float | None = None
    stack_bytes: int = 256  # stack figure when the inference is not compiled (the host; lower-bound checks)
    stack_call_bytes: int = 0  # added to the compiled frame of the inference (validation/stack.py)
    word_bits: int = 32
    has_popcount: bool = False
    popcount: str = "builtin"  # how the C kernels count bits: builtin or swar
    cycles: dict = field(default_factory=dict)
    # the latency model's stated error bound: |estimate / measured - 1| at most this on the calibration's
    # held-out ArchSpecs (bench/calibrate_latency.py writes it); the search measures what the model cannot
    # decide within it (search.latency)
    latency_tolerance: float = 0.0
    part: str = ""
    toolchain: dict = field(default_factory=dict)
    platformio: dict = field(default_factory=dict)  # platform, board, framework of the generated PlatformIO project

    @classmethod
    def from_dict(cls, d: Any) -> "Device":
        d = dict(d)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise DeviceError(f"device: unknown keys {sorted(unknown)}")
        dev = cls(**d)
        if dev.params_in not in PARAMS_IN:
            raise DeviceError(f"device.params_in must be one of {PARAMS_IN} but got {dev.params_in!r}")
        if not (isinstance(dev.clock_mhz, (int, float)) and dev.clock_mhz > 0):
            raise DeviceError(f"device.clock_mhz must be a positive number but got {dev.clock_mhz!r}")
        tol = dev.latency_tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            raise DeviceError(f"device.latency_tolerance must be a fraction in [0, 1) but got {tol!r}")
        for k in CYCLE_KEYS:
            v = dev.cycles.get(k)
            if not isinstance(v, (int, float)) or v < 0:
                raise DeviceError(f"device.cycles.{k} must be a non-negative number but got {v!r}")
        return dev


# ---- memory -------------------------------------------------------------------------------------

def stream_bytes(n_bits: int) -> int:
    return WORD_BYTES * words_for(n_bits)


PIXEL_GROUP = 8  # outputs of a first layer on raw pixels computed together (EBNN_GROUP in ebnn.c)


def pixel_weight_bytes(outputs: int, taps: int) -> int:
    """A dense layer on raw pixels stores one 32-bit word per (group of 8 outputs, chunk of 4 pixels)."""
    return WORD_BYTES * -(-outputs // PIXEL_GROUP) * -(-taps // 4)


def pixel_conv_chunks(kernel: int, channels: int) -> int:
    """Chunks per filter of a conv on raw pixels: each kernel row's K * C taps in runs of up to 4."""
    return kernel * -(-(kernel * channels) // 4)


def weight_bytes(spec: ArchSpec, ls: LayerShape) -> int:
    """The weight array of one layer as the C runtime stores it (layouts: c_runtime/ebnn.h)."""
    f = ls.out_shape[0]
    b = ls.block
    if ls.index == 0 and spec.input_mode == "uint8":
        if isinstance(b, ConvBlock):
            return padded_bytes(f * pixel_conv_chunks(b.kernel, ls.in_shape[0]))
        return pixel_weight_bytes(f, ls.in_size)
    taps = b.kernel ** 2 * ls.in_shape[0] if isinstance(b, ConvBlock) else ls.in_size
    return f * stream_bytes(taps)


def padded_bytes(n: int) -> int:
    """Every parameter array is a whole number of words, so arrays pack without alignment padding."""
    return WORD_BYTES * -(-int(n) // WORD_BYTES)


def threshold_bytes_each(bound: int) -> int:
    """int16 thresholds when every threshold in [-bound, bound + 1] fits, else int32."""
    return 2 if bound + 1 <= 32767 else 4


@dataclass(frozen=True)
class LayerMemory:
    index: int
    kind: str
    weight_bytes: int
    threshold_bytes: int
    flip_bytes: int
    classifier_bytes: int  # scale + offset
    out_bytes: int  # packed output stream (0 for the classifier)
    scratch_bytes: int
    threshold_ctype: str

    @property
    def params_bytes(self) -> int:
        return self.weight_bytes + self.threshold_bytes + self.flip_bytes + self.classifier_bytes


@dataclass(frozen=True)
class MemoryReport:
    layers: tuple[LayerMemory, ...]
    params_bytes: int
    activation_bytes: int
    scratch_bytes: int
    slack_bytes: int  # read slack after the arena (READ_SLACK_BYTES when there is an arena)
    input_bytes: int
    stack_bytes: int
    params_in: str
    arena: tuple[tuple[int, int], ...]  # (offset, size) of each packed activation in the arena
    code_bytes: int = 0  # the inference's code (validation.stack compiles it; 0: not compiled)

    @property
    def ram_bytes(self) -> int:
        """Everything the device holds in RAM for one inference."""
        params = self.params_bytes if self.params_in == "ram" else 0
        return params + self.arena_bytes + self.input_bytes + self.stack_bytes

    @property
    def arena_bytes(self) -> int:
        """The one static arena of the generated C: activations, then scratch, then the read slack."""
        return self.activation_bytes + self.scratch_bytes + self.slack_bytes

    @property
    def flash_bytes(self) -> int:
        """Model constants in flash (in RAM mode their initial values are in flash too) and the code of the
        inference when it was compiled (code_bytes)."""
        return self.params_bytes + self.code_bytes

    @property
    def model_bytes(self) -> int:
        """The paper's accounting: parameters plus temporaries."""
        return self.params_bytes + self.arena_bytes

    def as_dict(self) -> dict[str, int | str]:
        return {
            "ram_bytes": self.ram_bytes,
            "flash_bytes": self.flash_bytes,
            "model_bytes": self.model_bytes,
            "params_bytes": self.params_bytes,
            "activation_bytes": self.activation_bytes,
            "scratch_bytes": self.scratch_bytes,
            "slack_bytes": self.slack_bytes,
            "input_bytes": self.input_bytes,
            "stack_bytes": self.stack_bytes,
            "code_bytes": self.code_bytes,
            "params_in": self.params_in,
        }


def _scratch(ls: LayerShape) -> int:
    b = ls.block
    if not isinstance(b, ConvBlock) or not b.pool:
        return 0
    f, h1, w1 = ls.conv_shape
    if b.fusion == "rowbuffer":
        return stream_bytes(b.pool * w1 * f)
    if b.fusion == "unfused":
        return stream_bytes(h1 * w1 * f)
    return 0


READ_SLACK_BYTES = 8  # after the arena: a kernel reads up to 8 bytes from a run's first byte


def arena_plan(sizes: list[int]) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Place packed layers alternately at the start and the end of one arena; return (size, places)."""
    if not sizes:
        return 0, ()
    total = max(sizes) if len(sizes) == 1 else max(a + b for a, b in zip(sizes, sizes[1:]))
    places = tuple((0 if i % 2 == 0 else total - s, s) for i, s in enumerate(sizes))
    return total, places


def memory_plan(spec: ArchSpec, device: Device, stack_bytes: int | None = None, code_bytes: int = 0) -> MemoryReport:
    """Static sizes are exact here; the stack of the inference call and the size of its code are the
    compiler's figures, which validation.stack measures and passes as `stack_bytes` (None: the device's
    fixed `stack_bytes`) and `code_bytes` (0: code not counted)."""
    layers = []
    for ls in spec.shapes():
        bound = sum_bound(spec, ls)
        f = ls.out_shape[0]
        weights = weight_bytes(spec, ls)
        if ls.block is None:
            layers.append(LayerMemory(ls.index, "classifier", weights, 0, 0, 2 * 4 * spec.classes, 0, 0, ""))
            continue
        tb = threshold_bytes_each(bound)
        layers.append(LayerMemory(
            ls.index, ls.block.kind, weights, padded_bytes(f * tb), stream_bytes(f), 0,
            stream_bytes(ls.out_size), _scratch(ls), "int16_t" if tb == 2 else "int32_t"))
    act_sizes = [lm.out_bytes for lm in layers if lm.kind != "classifier"]
    c, h, w = spec.input_shape
    if spec.input_mode == "binary":
        act_sizes = [stream_bytes(c * h * w)] + act_sizes
    act, places = arena_plan(act_sizes)
    scratch = max((lm.scratch_bytes for lm in layers), default=0)
    return MemoryReport(
        layers=tuple(layers),
        params_bytes=sum(lm.params_bytes for lm in layers),
        activation_bytes=act,
        scratch_bytes=scratch,
        slack_bytes=READ_SLACK_BYTES if act + scratch else 0,
        input_bytes=c * h * w,
        stack_bytes=int(device.stack_bytes if stack_bytes is None else stack_bytes),
        params_in=device.params_in,
        arena=places,
        code_bytes=int(code_bytes),
    )


# ---- generic operation counts (bench/: work per second; not the latency model) --------------------

@dataclass
class OpCounts:
    pixel_add: int = 0
    xnor_word: int = 0
    compare: int = 0
    pool_op: int = 0
    output: int = 0

    def __iadd__(self, o: "OpCounts") -> "OpCounts":
        for k in OP_KEYS:
            setattr(self, k, getattr(self, k) + getattr(o, k))
        return self

    def as_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in OP_KEYS}

    @property
    def total(self) -> int:
        """The work a kernel cannot avoid: XNOR-popcount words + pixel adds + compares."""
        return self.xnor_word + self.pixel_add + self.compare


def _valid_taps(n_in: int, n_out: int, k: int, stride: int, pad: int) -> np.ndarray:
    """For each output coordinate along one axis, how many of the k taps fall inside the input."""
    start = np.arange(n_out) * stride - pad
    lo = np.maximum(start, 0)
    hi = np.minimum(start + k, n_in)
    return np.maximum(hi - lo, 0)


def _multiplicity(n_conv: int, n_pool: int, window: int, stride: int, fusion: str, pooled: bool) -> np.ndarray:
    """How many times each conv output coordinate is computed along one axis."""
    if not pooled or fusion == "unfused":
        return np.ones(n_conv, dtype=np.int64)
    m = np.zeros(n_conv, dtype=np.int64)
    for o in range(n_pool):
        m[o * stride:o * stride + window] += 1
    return m if fusion == "recompute" else (m > 0).astype(np.int64)


def block_ops(spec: ArchSpec, ls: LayerShape) -> OpCounts:
    on_pixels = ls.index == 0 and spec.input_mode == "uint8"
    ops = OpCounts()
    b = ls.block
    if isinstance(b, ConvBlock):
        c, h, w = ls.in_shape
        f, h1, w1 = ls.conv_shape
        _, ho, wo = ls.out_shape
        ps = b.effective_pool_stride
        my = _multiplicity(h1, ho, b.pool, ps, b.fusion, bool(b.pool))
        mx = _multiplicity(w1, wo, b.pool, ps, b.fusion, bool(b.pool))
        vy = _valid_taps(h, h1, b.kernel, b.stride, b.padding)
        vx = _valid_taps(w, w1, b.kernel, b.stride, b.padding)
        rows = int(np.sum(my * vy))
        positions = int(my.sum() * mx.sum())
        if on_pixels:
            ops.pixel_add = f * c * rows * int(np.sum(mx * vx))
        else:
            words = np.array([words_for(v * c) for v in vx])
            ops.xnor_word = f * rows * int(np.sum(mx * words))
        ops.compare = f * positions
        ops.output = f * positions
        if b.pool:
            ops.pool_op = f * ho * wo * b.pool * b.pool
        return ops
    n = ls.in_size
    u = ls.out_shape[0]
    if on_pixels:
        ops.pixel_add = u * n
    else:
        ops.xnor_word = u * words_for(n)
    ops.compare = u  # a threshold compare, or the classifier's multiply-add and argmax step
    ops.output = u
    return ops


def op_counts(spec: ArchSpec) -> list[OpCounts]:
    """Per block (the classifier last); a binary-mode input adds its C*H*W packing compares first."""
    per = [block_ops(spec, ls) for ls in spec.shapes()]
    if spec.input_mode == "binary":
        c, h, w = spec.input_shape
        per[0].compare += c * h * w
    return per


def total_ops(spec: ArchSpec) -> OpCounts:
    tot = OpCounts()
    for o in op_counts(spec):
        tot += o
    return tot




# ---- latency: per kernel path cost terms ----------------------------------------------------------
#
# The generated C (c_runtime/ebnn_kernels.h, specialized per layer) takes one of these paths per block:
# - conv on raw pixels, packed lanes (ebnn_lane_conv_fire) when the device's word is wider than 16 bits
#   (EBNN_PIXEL_LANES, codegen) and the pass's filters fit 2 lane words with taps * words <= 32: per
#   window (lane_window) every tap inside the input is loaded and summed once (lane_tap) and
#   multiply-added into each lane word (lane_madd), then each lane word compared at once (lane_word);
# - otherwise signed subset-sum tables (ebnn_pixel_conv_fire): per window (table_window) its taps loaded
#   (table_tap), per chunk of up to 4 taps of a kernel row (table_chunk) a table of 2^len entries
#   (table_entry), one lookup per chunk and filter (table_lookup) and a threshold compare per filter
#   (table_filter); a chunk of at most 2 taps (K = 2 on one channel) has a 4-entry table the compiler
#   keeps in registers (table_pair_entry, table_pair_lookup); on 8-bit cores a pass of at most 4 filters
#   keeps its accumulators in registers (table_reg_lookup), above 8 filters they spill on every core
#   (table_acc_spill: lookups beyond the 8th filter); a border window checks every tap (table_border_tap);
# - binary conv (ebnn_bit_conv_fire): per window (bit_window) the K rows copied into a cleared buffer
#   (window_word: words cleared and copied; a border window copies its valid rows and sets a mask, a loop
#   over its rows: bit_border_row), then per filter (bit_filter) an XNOR-popcount over the window's words
#   (xnor_word; masked on border windows: xnor_border_word; a window of at most 4 bits, K = 2 on one
#   channel, lets the compiler fold the popcount: xnor_nibble); the pass first turns each threshold into
#   a mismatch bound (bit_bound);
# - a window reaching into the padding takes the bounds-checked variant (border_window, every path);
#   pooling by fusion: recompute calls a window for every pool window covering it (no early exit by
#   default, EBNN_POOL_EARLY_EXIT: constant time; pool_window: the loop over them); rowbuffer/unfused
#   compute each needed conv position once, store its bits (bit_store) and OR them back (pool_read);
#   every output position of a pass is one more bit_store;
# - dense on raw pixels (ebnn_pixel_dense_sums): per pass and 4 pixels a 16-entry table (dense_table),
#   then one lookup per output (dense_lookup; dense_var_lookup when the outputs per pass are not a
#   compile-time constant: 4 passes and more), and each output (pixel_output); dense on
#   bits: words * outputs (dense_word; dense_long_word again for rows of more than 32 words, which the
#   compiler does not unroll whole) and each output (output); the classifier is a dense layer of `classes`
#   outputs; passes of EBNN_CONV_PASS filters/outputs (pass: 32, 8 on cores of at most 16 bits);
# - every conv and dense block clears its packed output first (clear_word: its words);
# - a binary-mode input packs C*H*W pixels (pack_pixel); one fixed cost per inference (inference).

def conv_pass_size(device: Device, spec: ArchSpec | None = None) -> int:
    """EBNN_CONV_PASS as codegen sets it: 8 on cores of at most 16 bits, else 32; for a model (`spec`), no
    more than the smallest of 8, 16, 32 that covers its widest layer, so no pass buffer is larger than a
    layer can fill (passes must be a multiple of the pixel group, 8, and divide the 32 flip bits of a word)."""
    base = 8 if device.word_bits <= 16 else 32
    if spec is None:
        return base
    widest = max([ls.out_shape[0] for ls in spec.shapes()])
    return min(base, next(p for p in (8, 16, 32) if p >= widest or p == 32))


LANE_LIMIT = 32  # taps * lane words of a pass at most, for the lanes (EBNN_LANE_LIMIT)


def lane_slots(spec: ArchSpec, device: Device) -> int:
    """EBNN_LANE_SLOTS: lane words the work area holds, the most any pass of the model uses; 0 when no pass
    uses the lanes (codegen then turns them off, EBNN_PIXEL_LANES 0)."""
    lanes = lanes_per_word(device)
    first = spec.shapes()[0]
    if not lanes or spec.input_mode != "uint8" or not isinstance(first.block, ConvBlock):
        return 0
    taps = first.block.kernel ** 2 * first.in_shape[0]
    used = [taps * -(-n // lanes) for n in pass_sizes(first.out_shape[0], conv_pass_size(device, spec))
            if uses_lanes(device, taps, n)]
    return max(used, default=0)


def lanes_per_word(device: Device) -> int:
    """EBNN_LANES: 16-bit lanes in an ebnn_lanes word (64-bit hosts: 4), 0 when the lanes are off."""
    if device.word_bits <= 16:
        return 0  # EBNN_PIXEL_LANES 0: a 32-bit multiply is a library call there
    return 4 if device.word_bits >= 64 else 2


def uses_lanes(device: Device, taps: int, n: int) -> bool:
    """ebnn_use_lanes for a pass of n filters of a conv on raw pixels with `taps` = K*K*C taps."""
    lanes = lanes_per_word(device)
    if not lanes:
        return False
    words = -(-n // lanes)
    return words <= 2 and taps <= 64 and taps * words <= LANE_LIMIT


def pass_sizes(outputs: int, p: int) -> list[int]:
    """The filters (outputs) of each pass of a layer, passes of p."""
    return [min(p, outputs - f0) for f0 in range(0, outputs, p)]


def _conv_calls(ls: LayerShape) -> np.ndarray:
    """ebnn_conv_fire calls per conv position (h1, w1) in a pass: recompute calls a position once for every
    pool window covering it (the kernels' early exit, EBNN_POOL_EARLY_EXIT, is off by default: constant
    time); rowbuffer and unfused compute each needed position once."""
    b = ls.block
    _, h1, w1 = ls.conv_shape
    _, ho, wo = ls.out_shape
    if not b.pool or b.fusion == "unfused":
        return np.ones((h1, w1))
    ps = b.effective_pool_stride
    m = np.zeros((h1, w1))
    if b.fusion == "recompute":
        for oy in range(ho):
            for ox in range(wo):
                m[oy * ps:oy * ps + b.pool, ox * ps:ox * ps + b.pool] += 1.0
        return m
    rows = (ho - 1) * ps + b.pool  # rowbuffer: conv rows up to the last window, columns too
    cols = (wo - 1) * ps + b.pool
    m[:rows, :cols] = 1.0
    return m


def _conv_terms(spec: ArchSpec, ls: LayerShape, device: Device, t: dict[str, float]) -> None:
    b = ls.block
    c, h, w = ls.in_shape
    f, h1, w1 = ls.conv_shape
    _, ho, wo = ls.out_shape
    k = b.kernel
    on_pixels = ls.index == 0 and spec.input_mode == "uint8"
    vy = _valid_taps(h, h1, k, b.stride, b.padding)
    vx = _valid_taps(w, w1, k, b.stride, b.padding)
    interior = np.outer(vy == k, vx == k)
    border = ~interior
    taps = k * k * c
    kc = k * c
    valid = np.outer(vy, vx) * c  # taps inside the input per window
    fw = words_for(taps)
    m = _conv_calls(ls)
    t["clear_word"] += words_for(f * ho * wo)
    for n in pass_sizes(f, conv_pass_size(device, spec)):
        calls = float(m.sum())
        bcalls = float((m * border).sum())
        t["pass"] += 1
        t["border_window"] += bcalls
        if on_pixels:
            loaded = float((m * valid).sum())
            if uses_lanes(device, taps, n):
                t["lane_window"] += calls
                t["lane_tap"] += loaded
                t["lane_madd"] += loaded * -(-n // lanes_per_word(device))
                t["lane_word"] += calls * -(-n // lanes_per_word(device))
            else:
                lens = [min(4, kc - 4 * r) for r in range(-(-kc // 4))]
                t["table_window"] += calls
                t["table_tap"] += loaded
                t["table_chunk"] += calls * k * len(lens)
                t["table_wide_tap"] += loaded if kc > 4 else 0.0  # rows of more than one chunk
                # a chunk of at most 2 taps: its 4-entry table can live in registers (no indexed loads)
                small = sum(1 for ln in lens if ln <= 2)
                t["table_entry"] += calls * k * sum(2 ** ln for ln in lens if ln > 2)
                t["table_pair_entry"] += calls * k * sum(2 ** ln for ln in lens if ln <= 2)
                t["table_pair_lookup"] += calls * k * small * n
                # 8-bit cores (no lanes there, so few-filter passes take the tables): at most 4 filters keep
                # their accumulators in registers through the window
                few = n <= 4 and device.word_bits <= 16
                t["table_reg_lookup" if few else "table_lookup"] += calls * k * (len(lens) - small) * n
                t["table_filter"] += calls * n
                t["table_border_tap"] += bcalls * taps
                t["table_acc_spill"] += calls * k * len(lens) * max(0, n - 8)
        else:
            row_words = np.array([words_for(v * c) for v in vx])
            gather = np.where(interior, k * words_for(kc), 2 * np.outer(vy, row_words)) + fw  # + clearing
            t["bit_window"] += calls
            t["window_word"] += float((m * gather).sum())
            t["bit_filter"] += calls * n
            if taps <= 4:  # a window of at most 4 bits: the popcount folds to a few instructions
                t["xnor_nibble"] += (calls - bcalls) * n
            else:
                t["xnor_word"] += (calls - bcalls) * n * fw
            t["xnor_border_word"] += bcalls * n * fw
            t["bit_bound"] += n
            t["bit_border_row"] += float((m * border * np.outer(vy, np.ones_like(vx))).sum())
        if b.pool and b.fusion != "recompute":
            t["bit_store"] += float((m > 0).sum())  # conv bits put into the scratch rows
            t["pool_read"] += ho * wo * b.pool * b.pool
        if b.pool and b.fusion == "recompute":
            t["pool_window"] += ho * wo * b.pool * b.pool
        t["bit_store"] += ho * wo


def _dense_terms(spec: ArchSpec, ls: LayerShape, device: Device, t: dict[str, float]) -> None:
    n_in = ls.in_size
    u = ls.out_shape[0]
    on_pixels = ls.index == 0 and spec.input_mode == "uint8"
    p = conv_pass_size(device, spec)
    passes = pass_sizes(u, p)
    # 4 passes and more: the compiler keeps the pass loop and the outputs per pass are no longer a constant
    # in the lookups (up to 3 passes of whole groups it folds them: avr-gcc -Os, u8-D8..D24 against
    # u8-D32..D48; a shorter last pass is slower too, u8-D12 > u8-D16 on AVR, but is not priced here so
    # that the estimate stays monotone in the outputs)
    var_n = len(passes) >= 4
    t["clear_word"] += words_for(u) if ls.block is not None else 0
    for n in passes:
        t["pass"] += 1
        if on_pixels:
            nq = -(-n_in // 4)
            t["dense_table"] += nq
            t["dense_var_lookup" if var_n else "dense_lookup"] += nq * n
            t["pixel_output"] += n
        else:
            t["dense_word"] += n * words_for(n_in)
            t["dense_long_word"] += n * words_for(n_in) if words_for(n_in) > 32 else 0
            t["output"] += n


def latency_terms(spec: ArchSpec, device: Device) -> dict[str, float]:
    """How many times the generated C on `device` does each costed thing in one inference (COST_KEYS)."""
    t = {k: 0.0 for k in COST_KEYS}
    t["inference"] = 1.0
    if spec.input_mode == "binary":
        c, h, w = spec.input_shape
        t["pack_pixel"] = float(c * h * w)
    for ls in spec.shapes():
        if isinstance(ls.block, ConvBlock):
            _conv_terms(spec, ls, device, t)
        else:
            _dense_terms(spec, ls, device, t)
    return t


def latency_cycles(spec: ArchSpec, device: Device) -> float:
    t = latency_terms(spec, device)
    return float(sum(t[k] * device.cycles[k] for k in COST_KEYS))


def latency_ms(spec: ArchSpec, device: Device) -> float:
    return latency_cycles(spec, device) / (device.clock_mhz * 1000.0)
