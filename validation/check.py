"""Validation of one FoldedModel on the host and on emulated devices: the figures of validation.json.

    report = validate_model(fm, devices, test_x, work, budgets={"curie": 15360}, images=100)
    report["ok"], report["failures"], report["devices"]["curie"]["ram"]

host: the generated C built natively with the host device's flags, run on every test image given;
every prediction and every class score must equal the NumPy reference. Each other device: a bare-metal
image (validation.build) run under its emulator (validation.run) on the first `images` test images,
checked the same way, measured (static RAM from the ELF, the painted stack peak, instructions under
unicorn or cycles under simavr, code size) and set beside the memory and latency models.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ebnn_core import Device, FoldedModel, latency_ms, reference_predict

from .build import BuildError, build_image, family_of
from .run import EmulatorError, run_image
from .stack import StackError, memory_plan_compiled

SCHEMA = "ebnn-automl/validation/1"
STACK_SLACK_BYTES = 64  # the model's stack may exceed the painted peak by at most this much


def _compare(pred, scores, ref_pred, ref_scores) -> dict[str, Any]:
    bad = np.flatnonzero((pred != ref_pred) | (scores != ref_scores).any(axis=1))
    return {"predictions": int((pred != ref_pred).sum()), "scores": int((scores != ref_scores).any(axis=1).sum()),
            "first_images": bad[:10].tolist()}


def validate_host(fm: FoldedModel, device: Device, lib: Path, test_x: np.ndarray, ref) -> dict[str, Any]:
    cc = device.toolchain.get("cc", "cc")
    flags = list(device.toolchain.get("cflags", []))
    exe = lib / "ebnn_validate_host"
    r = subprocess.run([cc, "-std=c99", *flags, "-I.", "main.c", "model.c", "ebnn.c", "-o", exe.name], cwd=lib,
                       capture_output=True, text=True)
    if r.returncode:
        return {"ok": False, "failures": [f"host: does not compile: {r.stderr.strip()[:300]}"]}
    (lib / "images.u8").write_bytes(np.ascontiguousarray(test_x).tobytes())
    r = subprocess.run([f"./{exe.name}", "-s", "images.u8"], cwd=lib, capture_output=True, text=True, timeout=3600)
    rows = [ln.split() for ln in r.stdout.splitlines()]
    if r.returncode or len(rows) != len(test_x):
        return {"ok": False, "failures": [f"host: the example program failed (exit {r.returncode}, "
                                          f"{len(rows)} of {len(test_x)} images)"]}
    vals = np.array(rows, dtype=np.int64)
    mism = _compare(vals[:, 0], vals[:, 1:], *ref)
    failures = [] if mism["predictions"] == mism["scores"] == 0 else [
        f"host: {mism['predictions']} predictions and {mism['scores']} score rows differ from the reference "
        f"(images {mism['first_images']})"]
    return {"toolchain": f"{cc} {' '.join(flags)}", "emulator": "native", "images_checked": len(test_x),
            "mismatches": mism, "ok": not failures, "failures": failures}


def validate_device(fm: FoldedModel, device: Device, lib: Path, work: Path, budget_bytes: int | None,
                    test_x: np.ndarray, ref, count_images: int, latency_budget_ms: float | None = None
                    ) -> dict[str, Any]:
    spec = fm.spec
    failures: list[str] = []
    try:
        mem = memory_plan_compiled(fm, device)
    except StackError as e:
        return {"ok": False, "failures": [str(e)]}
    budget = int(budget_bytes) if budget_bytes else mem.ram_bytes
    out: dict[str, Any] = {
        "toolchain": f"{device.toolchain.get('cc')} {' '.join(device.toolchain.get('cflags', []))}",
        "budget_bytes": budget,
        "ram": {"static_modelled": mem.ram_bytes - mem.stack_bytes, "stack_modelled": mem.stack_bytes,
                "total_modelled": mem.ram_bytes},
    }
    flash_budget = int(device.flash_kb * 1024) if device.flash_kb else None
    try:
        img = build_image(lib, device, work, budget, mem.stack_bytes)
    except BuildError as e:
        out.update(ok=False, failures=[e.reason])
        return out
    try:
        run = run_image(img, device, test_x, spec.classes)
    except EmulatorError as e:
        out.update(ok=False, failures=[str(e)])
        return out
    mism = _compare(run.predictions, run.scores, ref[0][:len(test_x)], ref[1][:len(test_x)])
    if mism["predictions"] or mism["scores"]:
        failures.append(f"{device.name}: {mism['predictions']} predictions and {mism['scores']} score rows differ "
                        f"from the reference (images {mism['first_images']})")
    static = img.static_bytes
    out["emulator"] = f"{device.toolchain.get('emulator')} ({run.part})"
    out["images_checked"] = int(len(run.predictions))
    out["mismatches"] = mism
    out["ram"].update(static_measured=static, model_static_measured=img.model_static_bytes,
                      stack_measured=run.stack_peak, total_measured=static + run.stack_peak,
                      stack_available=run.stack_available, stack_bottom_reached=run.stack_bottom_reached)
    if run.stack_bottom_reached:
        failures.append(f"{device.name}: the stack reached static data (the paint at the bottom of the "
                        f"{mem.stack_bytes} B allowance was overwritten)")
    if static != out["ram"]["static_modelled"]:
        failures.append(f"{device.name}: static RAM {static} B measured, {out['ram']['static_modelled']} B modelled")
    slack = mem.stack_bytes - run.stack_peak
    if run.stack_available < mem.stack_bytes:
        failures.append(f"{device.name}: the harness left the call {run.stack_available} B of stack, less than "
                        f"the {mem.stack_bytes} B allowance (its caller's reserve is too small)")
    if not 0 <= slack <= STACK_SLACK_BYTES:
        failures.append(f"{device.name}: stack {run.stack_peak} B measured, {mem.stack_bytes} B modelled "
                        f"(model - measured must be within 0..{STACK_SLACK_BYTES})")
    ms = img.model_sections
    params_flash = mem.params_bytes if device.params_in == "flash" else 0
    code_measured = ms.get(".text", 0) + max(0, ms.get(".rodata", 0) + ms.get(".progmem", 0) - params_flash)
    code = {"model_text_bytes": ms.get(".text", 0),
            "model_const_bytes": sum(ms.get(s, 0) for s in (".rodata", ".progmem")),
            "code_measured": code_measured, "code_modelled": mem.code_bytes,
            "flash_modelled": mem.flash_bytes,
            "image_flash_bytes": img.flash_bytes, "flash_budget_bytes": flash_budget}
    if code_measured != mem.code_bytes:
        failures.append(f"{device.name}: code {code_measured} B measured, {mem.code_bytes} B modelled")
    out["code"] = code
    if flash_budget and img.flash_bytes > flash_budget:
        failures.append(f"{device.name}: the image needs {img.flash_bytes} B of flash, the part has {flash_budget} B")
    lat = {"clock_mhz": device.clock_mhz, "latency_ms_modelled": round(latency_ms(spec, device), 4),
           "cycles_modelled": round(latency_ms(spec, device) * device.clock_mhz * 1000)}
    if run.cycles is not None and len(run.cycles):
        cyc = float(run.cycles.mean())
        lat.update(cycles_measured=int(round(cyc)), cycles_source="simavr (exact)",
                   latency_ms_measured=round(cyc / (device.clock_mhz * 1000), 4))
    if family_of(device).name in ("cortex-m", "lakemont") and count_images > 0:
        from .count import count_instructions

        try:
            counts = count_instructions(img, device, test_x[:count_images])
            if len(counts) != min(count_images, len(test_x)):
                raise EmulatorError(f"{device.name}: unicorn saw {len(counts)} marked inferences, expected "
                                    f"{min(count_images, len(test_x))}")
            lat["instructions_per_inference"] = int(round(np.mean([c.instructions for c in counts])))
            lat["instructions_source"] = f"unicorn, {len(counts)} images"
            if counts:
                from .cycles import core_of, trace_cycles

                core = core_of(device)
                cyc = float(np.mean([trace_cycles(c, core) for c in counts]))
                lat.update(cycles_estimated=int(round(cyc)),
                           cycles_estimated_source=f"unicorn trace x the {core} cycle table (validation/cycles.py)",
                           latency_ms_from_trace=round(cyc / (device.clock_mhz * 1000), 4))
        except EmulatorError as e:
            failures.append(str(e))
    measured_ms = lat.get("latency_ms_measured", lat.get("latency_ms_from_trace"))
    lat["latency_budget_ms"] = latency_budget_ms
    if latency_budget_ms and measured_ms is not None and measured_ms > latency_budget_ms:
        failures.append(f"{device.name}: {measured_ms:.1f} ms per inference measured, over the latency budget of "
                        f"{latency_budget_ms:g} ms")
    out["latency"] = lat
    out["ok"] = not failures
    out["failures"] = failures
    return out


def validate_model(fm: FoldedModel, devices: list[Device], test_x: np.ndarray, work: Path,
                   budgets: dict[str, int | None], images: int = 100, count_images: int = 3,
                   libs: dict[str, Path] | None = None, latency_budgets: dict[str, float | None] | None = None
                   ) -> dict[str, Any]:
    """Every device of `devices`; `libs` maps a device name to an existing C library folder for it (the one
    the user ships), otherwise the library is generated from the FoldedModel into work/<device>/lib."""
    from codegen import generate

    ref = reference_predict(fm, test_x)
    report: dict[str, Any] = {"schema": SCHEMA, "arch_hash": fm.spec.short_hash(), "arch_desc": fm.spec.describe(),
                              "devices": {}}
    for dev in devices:
        dwork = work / dev.name
        lib = (libs or {}).get(dev.name) or generate(fm, dev, dwork / "lib")
        if dev.toolchain.get("family") == "host":
            if Path(lib) != dwork / "lib":  # the user's folder stays as it is: build a copy
                shutil.copytree(lib, dwork / "lib", dirs_exist_ok=True)
                lib = dwork / "lib"
            res = validate_host(fm, dev, Path(lib), test_x, ref)
        else:
            res = validate_device(fm, dev, Path(lib), dwork, budgets.get(dev.name), test_x[:images], ref,
                                  count_images, (latency_budgets or {}).get(dev.name))
        report["devices"][dev.name] = res
    report["failures"] = [f for r in report["devices"].values() for f in r["failures"]]
    report["ok"] = not report["failures"]
    return report
