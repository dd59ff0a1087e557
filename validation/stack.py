"""The stack of the inference call and the size of its code, as the memory model counts them: the
compiler's own figures.

    stack = inference_stack_bytes(spec_or_folded, device)
    mem = memory_plan_compiled(spec_or_folded, device)     # memory_plan with that stack

The kernels inline into one function, `ebnn_predict_scores`, specialized to the model's layers, so its
stack is one frame whose size only the compiler knows: the generated model.c is compiled with the
device's toolchain and flags and `-fstack-usage`, and the frame of `ebnn_predict_scores` plus the
device's `stack_call_bytes` (what the call itself and the library helpers it calls add: the return
address and arguments on x86, libgcc's division and multiplication on ARM and AVR; calibrated against
painted peaks, tests/test_validation.py) is the figure. What is counted: everything below the caller's
stack pointer at the call; the caller's own frame (main() and its locals) is the user's.

An ArchSpec without trained weights is compiled with seeded random ones (the frame depends on the code,
which hardly depends on the weights; validation measures the real model). Results are cached by
content (the spec or model, the device's code generation settings, the toolchain, the runtime sources)
under ~/.cache/ebnn-automl/stack.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ebnn_core import ArchSpec, Device, FoldedModel, MemoryReport, memory_plan

CACHE = Path.home() / ".cache" / "ebnn-automl" / "stack"
_ROOT = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    """The device's compiler is missing or refused the model; the message is one line naming the key."""


def _sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((_ROOT / "c_runtime").glob("*")) + sorted((_ROOT / "codegen" / "templates").glob("*.j2")):
        h.update(p.name.encode() + p.read_bytes())
    h.update((_ROOT / "codegen" / "generate.py").read_bytes())
    return h.hexdigest()


_DIGEST: str | None = None


def _key(model: ArchSpec | FoldedModel, device: Device) -> str:
    global _DIGEST
    if _DIGEST is None:
        _DIGEST = _sources_digest()
    h = hashlib.sha256(_DIGEST.encode() + b"figures-v2")
    if isinstance(model, FoldedModel):
        h.update(model.spec.to_json().encode())
        for ly in model.layers:
            for v in (ly.weights, ly.threshold, ly.flip, ly.scale, ly.offset):
                if v is not None:
                    h.update(v.tobytes())
    else:
        h.update(b"random-weights:" + model.to_json().encode())
    h.update(json.dumps([device.toolchain.get("cc"), device.toolchain.get("cflags"), device.params_in,
                         device.popcount, device.word_bits], sort_keys=True).encode())
    return h.hexdigest()[:32]


def frame_bytes(model: ArchSpec | FoldedModel, device: Device) -> int:
    """-fstack-usage of the inference's call chain in the model's generated C for the device (cached)."""
    return compiled_figures(model, device)[0]


def code_bytes(model: ArchSpec | FoldedModel, device: Device) -> int:
    """Flash the inference's code takes beyond the parameters: model.o's .text, and whatever constants
    (.rodata, AVR's .progmem) are not parameter arrays (cached with the frame)."""
    return compiled_figures(model, device)[1]


def compiled_figures(model: ArchSpec | FoldedModel, device: Device) -> tuple[int, int]:
    """(frame bytes, code bytes) of the model's generated C compiled for the device (cached by content)."""
    key = _key(model, device)
    cached = CACHE / f"{key}.json"
    if cached.is_file():
        try:
            d = json.loads(cached.read_text())
            return int(d["frame_bytes"]), int(d["code_bytes"])
        except (ValueError, KeyError, TypeError):
            pass
    cc = device.toolchain.get("cc")
    if not cc or not shutil.which(cc):
        raise StackError(f"device.toolchain.cc={cc}: not installed; the stack of the inference is measured with "
                         "the device's compiler (scripts/setup.sh installs it)")
    from codegen import generate

    fm = model if isinstance(model, FoldedModel) else _random_weights(model)
    flags = [f for f in device.toolchain.get("cflags", []) if f not in ("-static", "-no-pie", "-nostdlib")]
    std = "-std=gnu99" if device.toolchain.get("family") == "avr" else "-std=c99"
    with tempfile.TemporaryDirectory(prefix="ebnn-stack-") as tmp:
        lib = generate(fm, device, Path(tmp) / "lib")
        r = subprocess.run([cc, *flags, std, "-fno-asynchronous-unwind-tables", "-fno-stack-protector",
                            "-fstack-usage", "-I.", "-c", "model.c", "-o", "model.o"], cwd=lib, capture_output=True,
                           text=True)
        if r.returncode:
            raise StackError(f"device={device.name}: model.c does not compile: {r.stderr.strip()[:300]}")
        frame = _su_chain(lib / "model.su")
        from .build import object_sections

        sec = object_sections(lib / "model.o")
        spec = fm.spec
        params = memory_plan(spec, device).params_bytes if device.params_in == "flash" else 0
        code = sec.get(".text", 0) + max(0, sec.get(".rodata", 0) + sec.get(".progmem", 0) - params)
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmpname = tempfile.mkstemp(dir=CACHE, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"frame_bytes": frame, "code_bytes": code, "device": device.name}, f)
    os.replace(tmpname, cached)
    return frame, code


def _su_chain(su: Path) -> int:
    """The frames of model.c's functions added up: they form one call chain (ebnn_predict ->
    ebnn_predict_scores -> the parts GCC splits off it, e.g. ebnn_predict_scores.part.0), so the sum
    bounds the deepest path (the caller's wrapper frames are a few bytes at most)."""
    frames = {}
    for ln in su.read_text().splitlines():
        parts = ln.split()
        if len(parts) >= 3:
            frames[parts[0].split(":")[-1]] = int(parts[-2].rstrip(","))
    if "ebnn_predict_scores" not in frames:
        raise StackError(f"{su.name}: no stack usage of ebnn_predict_scores")
    return sum(frames.values())


def _random_weights(spec: ArchSpec) -> FoldedModel:
    from ebnn_core.folded import fold
    from ebnn_core.nn import BNN
    from ebnn_core.testing import randomize

    return fold(randomize(BNN(spec), 0))


def inference_stack_bytes(model: ArchSpec | FoldedModel, device: Device) -> int:
    """The memory model's stack figure: the compiled frame plus the device's call overhead."""
    return frame_bytes(model, device) + int(device.stack_call_bytes)


def memory_plan_compiled(model: ArchSpec | FoldedModel, device: Device) -> MemoryReport:
    """memory_plan with the compiled stack (the host, which has no budget, keeps its fixed figure)."""
    spec = model.spec if isinstance(model, FoldedModel) else model
    if device.toolchain.get("family") == "host":
        return memory_plan(spec, device)
    frame, code = compiled_figures(model, device)
    return memory_plan(spec, device, stack_bytes=frame + int(device.stack_call_bytes), code_bytes=code)
