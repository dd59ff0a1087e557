"""Latency of a model on its device, measured under the device's emulator: the figure the search's
latency constraint uses (`search.latency: emulator`) and the calibration's ground truth
(bench/calibrate_latency.py).

    m = measure_latency(spec_or_folded, device)        # {"cycles", "latency_ms", "source", ...}

The model's C is generated (an ArchSpec gets seeded random weights: the kernels run in constant time,
so the weights do not change the count; tests/test_latency.py checks it against a trained model's),
built bare-metal with the validation harness (validation.build) and run:
- avr: simavr's exact cycle count (validation.run; an image whose static RAM is more than the 2 KB part
  holds runs on the same core's larger part, `device.toolchain.large_part`);
- cortex-m0, cortex-m4, curie: cycles from the unicorn instruction trace (validation.count) and the
  core's cycle table (validation.cycles, which states its sources and approximations).
Results are cached by content under ~/.cache/ebnn-automl/latency, keyed on what a measurement depends
on: the generated library's C and headers, the harness and measuring code of validation/, the toolchain,
the RAM given to the image, the images and the seed. A change to the code generator that does not
change the generated C keeps the cache; one that does changes the key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ebnn_core import ArchSpec, Device, FoldedModel, memory_plan

CACHE = Path.home() / ".cache" / "ebnn-automl" / "latency"
_ROOT = Path(__file__).resolve().parent.parent

# What determines a measurement besides the generated library: the harness it is linked with, how it is
# built and run, and how the trace becomes cycles (not this file: a change here that changes a figure
# changes one of these).
MEASURE_FILES = ("validation/build.py", "validation/run.py", "validation/count.py", "validation/cycles.py")


class LatencyError(RuntimeError):
    """The device cannot be measured here (no emulator or compiler); one line naming the key."""


def _tools_digest() -> str:
    h = hashlib.sha256()
    for p in [*(_ROOT / f for f in MEASURE_FILES), *sorted((_ROOT / "validation" / "harness").glob("*"))]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _library_digest(lib: Path) -> str:
    """The generated library's C and headers (what is compiled; not main.c, the Makefile or the sketch)."""
    from codegen.generate import LIBRARY_FILES

    h = hashlib.sha256()
    for name in sorted(LIBRARY_FILES):
        h.update(name.encode() + b"\0" + (lib / name).read_bytes() + b"\0")
    return h.hexdigest()


def random_weights(spec: ArchSpec, seed: int = 0) -> FoldedModel:
    from ebnn_core.folded import fold
    from ebnn_core.nn import BNN
    from ebnn_core.testing import randomize

    return fold(randomize(BNN(spec), seed))


def default_images(spec: ArchSpec, n: int = 1) -> np.ndarray:
    """Deterministic uint8 images of the spec's input shape (the count does not depend on the pixels)."""
    return np.random.default_rng(0).integers(0, 256, (n, *spec.input_shape), dtype=np.uint8)


def check_measurable(device: Device) -> None:
    """LatencyError naming the key when this machine cannot measure the device's latency."""
    import shutil

    fam = device.toolchain.get("family")
    if fam not in ("avr", "cortex-m", "lakemont"):
        raise LatencyError(f"device={device.name}: no emulator measures latency for device.toolchain.family={fam}")
    cc = device.toolchain.get("cc")
    if not cc or not shutil.which(str(cc)):
        raise LatencyError(f"device.toolchain.cc={cc}: not installed (scripts/setup.sh installs it)")
    if fam == "avr":
        from .run import EmulatorError, simavr_driver

        try:
            simavr_driver()
        except EmulatorError as e:
            raise LatencyError(str(e)) from None
    else:
        import importlib.util

        for mod in ("unicorn", "capstone", "elftools"):
            if importlib.util.find_spec(mod) is None:
                raise LatencyError(f"python package {mod}: not installed (pip install -e . installs it)")


def measure_latency(model: ArchSpec | FoldedModel, device: Device, images: np.ndarray | None = None,
                    seed: int = 0) -> dict:
    """Cycles per inference (mean over `images`; default: one deterministic image) of the model on the device,
    and its latency in ms at the device's clock. An ArchSpec runs with `random_weights(spec, seed)`."""
    from codegen import generate

    from .build import BuildError, build_image

    fm = model if isinstance(model, FoldedModel) else random_weights(model, seed)
    spec = fm.spec
    if images is None:
        images = default_images(spec)
    mem = memory_plan(spec, device)
    allowance = 2048 if device.word_bits <= 16 else 4096  # room for any frame: the stack is not measured here
    budget = mem.ram_bytes - mem.stack_bytes + allowance
    with tempfile.TemporaryDirectory(prefix="ebnn-latency-") as tmp:
        work = Path(tmp)
        t0 = time.time()
        lib = generate(fm, device, work / "lib")  # milliseconds; the cache is keyed on its C
        key = hashlib.sha256(json.dumps([
            _library_digest(lib), _tools_digest(), device.name, device.toolchain, device.word_bits, budget, allowance,
            seed, hashlib.sha256(images.tobytes()).hexdigest(), list(images.shape)]).encode())
        path = CACHE / f"{key.hexdigest()[:24]}.json"
        if path.is_file():
            try:
                out = json.loads(path.read_text())
                out["latency_ms"] = out["cycles"] / (device.clock_mhz * 1000.0)
                return out
            except (ValueError, KeyError, TypeError):
                pass
        check_measurable(device)
        try:
            img = build_image(lib, device, work / "img", budget, allowance)
        except BuildError:
            large = device.toolchain.get("large_part")
            if device.toolchain.get("family") != "avr" or not large:
                raise
            # static RAM beyond the 2 KB part's data region: build for the large part (same AVR core and
            # instruction timings, 16 KB SRAM); validation.run then runs it there
            tc = dict(device.toolchain)
            tc["cflags"] = [f"-mmcu={large}" if f.startswith("-mmcu=") else f for f in tc.get("cflags", [])]
            img = build_image(lib, dataclasses.replace(device, toolchain=tc), work / "img", budget, allowance)
        out: dict = {"spec": spec.to_json(), "device": device.name}
        if img.family == "avr":
            from .run import run_image

            run = run_image(img, device, images, spec.classes)
            out.update(cycles=float(np.mean(run.cycles)), source=f"simavr ({run.part}), exact")
        else:
            from .count import count_instructions
            from .cycles import core_of, trace_cycles
            from .run import EmulatorError

            counts = count_instructions(img, device, images)
            if len(counts) != len(images):
                raise EmulatorError(f"{device.name}: {len(counts)} of {len(images)} inferences counted")
            core = core_of(device)
            out.update(cycles=float(np.mean([trace_cycles(c, core) for c in counts])),
                       instructions=float(np.mean([c.instructions for c in counts])),
                       source=f"unicorn trace, {core} cycle table")
    out["seconds"] = round(time.time() - t0, 2)
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmpname = tempfile.mkstemp(dir=CACHE, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(out, f)
    os.replace(tmpname, path)
    out["latency_ms"] = out["cycles"] / (device.clock_mhz * 1000.0)
    return out
