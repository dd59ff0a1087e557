"""FoldedModel -> a self-contained C library folder.

    generate(folded, device, out_dir, samples=(images, labels))
        # model.h, model.c, ebnn_config.h, ebnn.[ch], main.c, Makefile (host example, `make run` on the
        # sample images against the reference's answers, `make device` with the device's toolchain),
        # arduino/ebnn_model/ (sketch + copies of the same files), platformio/ (the device's board)

Every value is computed here; the templates only loop. The arena is sized and laid out by
ebnn_core.resources.memory_plan, the same planner as the memory model, so the two cannot drift. Free
text (device name, descriptions, the ArchSpec JSON, comments) goes through ebnn_core.safe.c_comment,
so no value can end a C comment; layer kinds come from the ArchSpec, never from the file.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import jinja2
import numpy as np

from ebnn_core import ConvBlock, DenseBlock, Device, FoldedModel, memory_plan
from ebnn_core.bits import words_for
from ebnn_core.resources import PIXEL_GROUP, conv_pass_size, lane_slots, padded_bytes, pixel_conv_chunks
from ebnn_core.safe import c_comment
from ebnn_core.semantics import BINARY_INPUT_THRESHOLD

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "c_runtime"
RUNTIME_FILES = ("ebnn.h", "ebnn_kernels.h", "ebnn.c")
TEMPLATES = Path(__file__).resolve().parent / "templates"
FUSION_C = {"recompute": "EBNN_FUSION_RECOMPUTE", "rowbuffer": "EBNN_FUSION_ROWBUFFER", "unfused": "EBNN_FUSION_UNFUSED"}
LIBRARY_FILES = ("model.h", "model.c", "ebnn_config.h") + RUNTIME_FILES
PER_LINE = {"uint32_t": 6, "int16_t": 12, "int32_t": 6, "uint8_t": 16}
SAMPLE_FILES = ("test_images.u8", "test_labels.txt", "expected.txt")
# What may reach the generated Makefile and platformio.ini from a device file: compiler names, flags and
# board names, never a shell or Make metacharacter ($, ;, quotes, spaces inside a token, newlines).
TOKEN = re.compile(r"[A-Za-z0-9_.+=,:/-]{1,200}")


class CodegenError(ValueError):
    """A value that cannot go into generated files; the message names the key and the value."""


def _token(value, key: str) -> str:
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        raise CodegenError(f"{key}={value!r}: not a plain compiler, flag or board name "
                           "(letters, digits and _.+=,:/- only)")
    return value


def toolchain_context(device: Device) -> dict:
    """The device's compiler, archiver and flags for `make device`, each checked to be a plain token."""
    tc = device.toolchain or {}
    cc = _token(tc.get("cc", "cc"), "device.toolchain.cc")
    flags = [_token(f, "device.toolchain.cflags") for f in (tc.get("cflags") or [])]
    ar = re.sub(r"(^|-)(gcc|cc|clang)$", r"\1ar", cc) if re.search(r"(^|-)(gcc|cc|clang)$", cc) else "ar"
    pio = {k: _token(v, f"device.platformio.{k}") for k, v in (device.platformio or {}).items()
           if k in ("platform", "board", "framework")}
    return {"device_cc": cc, "device_ar": ar, "device_cflags": " ".join(flags), "pio": pio}


def _lines(values: np.ndarray, ctype: str) -> list[str]:
    if ctype == "uint32_t":
        items = [f"0x{int(v):08X}u" for v in values]
    elif ctype == "uint8_t":
        items = [f"0x{int(v):02X}u" for v in values]
    elif ctype == "int32_t":
        # INT32_MIN cannot be written as a literal; no folded value reaches it (|T| <= bound + 1)
        items = [f"{int(v)}L" if int(v) >= -2147483647 else "(-2147483647L - 1)" for v in values]
    else:
        items = [str(int(v)) for v in values]
    n = PER_LINE[ctype]
    return [", ".join(items[i:i + n]) + "," for i in range(0, len(items), n)]


def pixel_group_words(weights_pm1: np.ndarray) -> np.ndarray:
    """A first layer on raw pixels, (outputs, taps) ±1 -> the runtime's grouped layout: word g * nq + q
    holds, in bits 4j..4j+3, the weights of output 8g + j for taps 4q..4q+3 (+1 = bit 1, missing = 0)."""
    outputs, taps = weights_pm1.shape
    groups, nq = -(-outputs // PIXEL_GROUP), -(-taps // 4)
    bits = np.zeros((groups * PIXEL_GROUP, nq * 4), dtype=np.uint64)
    bits[:outputs, :taps] = weights_pm1 > 0
    o, t = np.meshgrid(np.arange(groups * PIXEL_GROUP), np.arange(nq * 4), indexing="ij")
    shift = (4 * (o % PIXEL_GROUP) + t % 4).astype(np.uint64)
    words = np.zeros(groups * nq, dtype=np.uint64)
    np.add.at(words, ((o // PIXEL_GROUP) * nq + t // 4).ravel(), (bits << shift).ravel())
    return words.astype(np.uint32)


def pixel_conv_bytes(weights_pm1: np.ndarray, kernel: int, channels: int) -> np.ndarray:
    """A conv on raw pixels, (filters, K*K*C) ±1 in (ky, kx, c) order -> one byte per (filter, kernel row
    ky, chunk r of up to 4 of the row's K*C taps): bit i is tap 4r + i of the row (+1 = 1), byte
    (f * K + ky) * ceil(K*C / 4) + r; the array padded with zeros to a whole word."""
    f = weights_pm1.shape[0]
    kc = kernel * channels
    cq = -(-kc // 4)
    rows = np.zeros((f, kernel, cq * 4), dtype=np.uint8)
    rows[:, :, :kc] = (weights_pm1 > 0).reshape(f, kernel, kc)
    chunks = (rows.reshape(f, kernel, cq, 4) << np.arange(4, dtype=np.uint8)).sum(axis=3).astype(np.uint8)
    out = np.zeros(padded_bytes(f * pixel_conv_chunks(kernel, channels)), dtype=np.uint8)
    out[:chunks.size] = chunks.reshape(-1)
    return out


def padded_rows(weights_pm1: np.ndarray) -> np.ndarray:
    """(rows, n) ±1 -> each row a bit stream of ceil(n / 32) words (LSB first, +1 = 1), rows back to back."""
    rows, n = weights_pm1.shape
    bits = np.zeros((rows, words_for(n) * 32), dtype=np.uint8)
    bits[:, :n] = weights_pm1 > 0
    return np.packbits(bits.reshape(-1), bitorder="little").view("<u4").astype(np.uint32)


def _array(name: str, ctype: str, values: np.ndarray, comment: str) -> dict:
    values = np.asarray(values)
    return {"name": name, "ctype": ctype, "count": int(values.size), "lines": _lines(values.reshape(-1), ctype),
            "comment": c_comment(comment)}


def build_context(fm: FoldedModel, device: Device) -> dict:
    spec = fm.spec
    mem = memory_plan(spec, device)
    shapes = spec.shapes()
    arrays: list[dict] = []
    steps: list[dict] = []
    arena_words = mem.arena_bytes // 4
    places = [off // 4 for off, _ in mem.arena]  # word offsets of the packed layers, in order
    scratch_word = mem.activation_bytes // 4
    shift = 1 if spec.input_mode == "binary" else 0  # places[0] holds the binarized input in binary mode
    if spec.input_mode == "binary":
        steps.append({"kind": "pack", "index": 0, "dims": spec.input_shape, "threshold": BINARY_INPUT_THRESHOLD,
                      "out_word": places[0]})
    for ls, ly, lm in zip(shapes, fm.layers, mem.layers):
        i = ls.index
        kind = {ConvBlock: "conv", DenseBlock: "dense"}.get(type(ls.block), "classifier")
        if ly.kind != kind:  # the kind names C identifiers (ebnn_<kind>_params)
            raise ValueError(f"layer {i}: kind {ly.kind!r}, but the ArchSpec has a {kind} layer there")
        on_pixels = i == 0 and spec.input_mode == "uint8"
        wname = f"ebnn_l{i}_weights"
        pm1 = ly.weights_pm1(ls.out_shape[0] if ls.block is not None else spec.classes)
        conv_on_pixels = on_pixels and isinstance(ls.block, ConvBlock)
        if conv_on_pixels:
            wctype = "uint8_t"
            words = pixel_conv_bytes(pm1, ls.block.kernel, ls.in_shape[0])
            note = f"{ly.n_weight_bits} weight bits on raw pixels, a byte per (filter, kernel row, 4 taps)"
        elif on_pixels:
            wctype = "uint32_t"
            words = pixel_group_words(pm1)
            note = f"{ly.n_weight_bits} weight bits on raw pixels, grouped by 8 outputs x 4 pixels"
        else:
            wctype = "uint32_t"
            words, note = padded_rows(pm1), f"{ly.n_weight_bits} weight bits, each filter or row padded to words"
        assert words.nbytes == lm.weight_bytes, (words.nbytes, lm.weight_bytes)
        arrays.append(_array(wname, wctype, words, f"layer {i} ({kind}): {note}"))
        step = {"index": i, "kind": kind, "in_pixels": on_pixels,
                "in_word": None if on_pixels else places[i - 1 + shift]}
        fields: list[tuple[str, str]] = []
        if kind != "classifier":
            tctype = lm.threshold_ctype
            tname, fname = f"ebnn_l{i}_thresholds", f"ebnn_l{i}_flips"
            thr = np.zeros(lm.threshold_bytes // (2 if tctype == "int16_t" else 4), dtype=np.int64)
            thr[:len(ly.threshold)] = ly.threshold  # padded to a whole word, as the memory model counts
            arrays.append(_array(tname, tctype, thr, f"layer {i}: one threshold per channel"))
            flips = np.zeros(((len(ly.flip) + 31) // 32) * 32, dtype=np.uint8)
            flips[:len(ly.flip)] = ly.flip
            fwords = np.packbits(flips, bitorder="little").view("<u4")
            arrays.append(_array(fname, "uint32_t", fwords, f"layer {i}: flip bits"))
            thr_fields = [("thr16", tname if tctype == "int16_t" else "NULL"),
                          ("thr32", tname if tctype == "int32_t" else "NULL"), ("flips", fname)]
            step["out_word"] = places[i + shift]
        if isinstance(ls.block, ConvBlock):
            b = ls.block
            (c, h, w), (f, h1, w1), (_, ho, wo) = ls.in_shape, ls.conv_shape, ls.out_shape
            fields += [("in.c", c), ("in.h", h), ("in.w", w), ("conv.c", f), ("conv.h", h1), ("conv.w", w1),
                       ("out.c", f), ("out.h", ho), ("out.w", wo), ("kernel", b.kernel), ("stride", b.stride),
                       ("padding", b.padding), ("pool", b.pool), ("pool_stride", b.effective_pool_stride),
                       ("fusion", FUSION_C[b.fusion]), ("weights", "NULL" if conv_on_pixels else wname),
                       ("chunks", wname if conv_on_pixels else "NULL")] + thr_fields
            step["comment"] = f"block {i}: conv {b}"
            step["scratch"] = f"ebnn_arena + {scratch_word}" if lm.scratch_bytes else "NULL"
        elif isinstance(ls.block, DenseBlock):
            fields += [("n_in", f"{ls.in_size}u"), ("n_out", ls.out_shape[0]), ("weights", wname)] + thr_fields
            step["comment"] = f"block {i}: dense {ls.block.units} units"
        else:
            sname, oname = f"ebnn_l{i}_scale", f"ebnn_l{i}_offset"
            arrays.append(_array(sname, "int32_t", ly.scale, "classifier: integer scale per class"))
            arrays.append(_array(oname, "int32_t", ly.offset, "classifier: integer offset per class"))
            fields += [("n_in", f"{ls.in_size}u"), ("classes", spec.classes), ("weights", wname),
                       ("scale", sname), ("offset", oname)]
            step["comment"] = f"classifier: {spec.classes} classes"
        step["fields"] = [(k, str(v)) for k, v in fields]
        step["comment"] = c_comment(step["comment"])
        steps.append(step)
    return {
        "arch_hash": spec.short_hash(), "arch_desc": c_comment(spec.describe()),
        "arch_json": c_comment(spec.to_json()), "device": c_comment(device.name), "params_in": c_comment(device.params_in), "popcount": device.popcount,
        "conv_pass": conv_pass_size(device, spec),  # 8 on small cores; never wider than the widest layer
        "lane_slots": max(1, lane_slots(spec, device)),
        "window_words": max([words_for(ls.block.kernel ** 2 * ls.in_shape[0]) for ls in shapes
                             if isinstance(ls.block, ConvBlock) and not (ls.index == 0 and spec.input_mode == "uint8")]
                            or [1]) + 1,  # + 1: the generic (ebnn.c) path may touch one word more
        "pixel_group": PIXEL_GROUP,
        "pixel_lanes": lane_slots(spec, device) > 0,  # only where a pass of this model uses them
        "input_shape": spec.input_shape, "input_size": int(np.prod(spec.input_shape)), "classes": spec.classes,
        "mem": mem.as_dict(), "arena_bytes": mem.arena_bytes, "arena_words": arena_words,
        "arena_places": [list(p) for p in mem.arena], "scratch_offset": mem.activation_bytes,
        "arrays": arrays, "steps": steps, "has_blocks": any(s["kind"] in ("conv", "dense") for s in steps),
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def _write_samples(fm: FoldedModel, out: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """A few test images for `make run`, with their labels and the reference's answers (class, scores),
    the lines the example program prints with -s."""
    from ebnn_core import reference_predict

    images = np.ascontiguousarray(images, dtype=np.uint8)
    pred, scores = reference_predict(fm, images)
    (out / "test_images.u8").write_bytes(images.tobytes())
    (out / "test_labels.txt").write_text("".join(f"{int(y)}\n" for y in labels))
    (out / "expected.txt").write_text("".join(f"{int(p)}" + "".join(f" {int(v)}" for v in row) + "\n"
                                              for p, row in zip(pred, scores)))


def generate(fm: FoldedModel, device: Device, out_dir: str | Path,
             samples: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """samples: (images, labels) for `make run` (uint8, the model's input shape); None: none written
    and `make run` says so."""
    out = Path(out_dir)
    ctx = {**build_context(fm, device), **toolchain_context(device)}
    if samples is not None and tuple(samples[0].shape[1:]) != tuple(fm.spec.input_shape):
        raise CodegenError(f"samples: images of shape {tuple(samples[0].shape[1:])}, the model reads "
                           f"{tuple(fm.spec.input_shape)}")
    ctx["n_samples"] = 0 if samples is None else int(len(samples[0]))
    out.mkdir(parents=True, exist_ok=True)
    env = _env()
    for template, name in (("model.h.j2", "model.h"), ("model.c.j2", "model.c"), ("ebnn_config.h.j2", "ebnn_config.h"),
                           ("main.c.j2", "main.c"), ("Makefile.j2", "Makefile")):
        (out / name).write_text(env.get_template(template).render(**ctx))
    for name in RUNTIME_FILES:
        shutil.copyfile(RUNTIME_DIR / name, out / name)
    sketch = out / "arduino" / "ebnn_model"
    sketch.mkdir(parents=True, exist_ok=True)
    (sketch / "ebnn_model.ino").write_text(env.get_template("sketch.ino.j2").render(**ctx))
    for name in LIBRARY_FILES:
        shutil.copyfile(out / name, sketch / name)
    pio = out / "platformio"
    (pio / "src").mkdir(parents=True, exist_ok=True)
    (pio / "platformio.ini").write_text(env.get_template("platformio.ini.j2").render(**ctx))
    main = "main.c" if ctx["pio"].get("platform") == "native" else "arduino/ebnn_model/ebnn_model.ino"
    for name in (main, *LIBRARY_FILES):
        shutil.copyfile(out / name, pio / "src" / Path(name).name)
    if samples is not None:
        _write_samples(fm, out, *samples)
    else:
        for name in SAMPLE_FILES:
            (out / name).unlink(missing_ok=True)
    return out
