"""Running a validation image under the device's emulator and reading the harness's report.

    run = run_image(img, device, images)      # run.predictions, run.scores, run.stack_peak, run.cycles

Cortex-M: QEMU system emulation (`device.toolchain.machine`: mps2-an386 for the Cortex-M4, microbit for
the Cortex-M0) with semihosting; the Curie's Lakemont core: qemu-i386 (user mode, the image's own
system calls); AVR: the project's libsimavr driver (validation/harness/simavr_run.c, built on first use),
which also counts cycles exactly. Protocol: validation/harness/harness.c.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebnn_core import Device

from .build import HARNESS, Image


class EmulatorError(RuntimeError):
    """The emulator is missing, or the program did not finish its run; the message is one line."""


@dataclass
class Run:
    predictions: np.ndarray  # (N,)
    scores: np.ndarray  # (N, classes)
    stack_per_image: np.ndarray  # (N,) bytes below the caller's stack pointer
    stack_peak: int
    stack_bottom_reached: bool
    stack_available: int
    cycles: np.ndarray | None  # (N,) exact cycles per inference (simavr), else None
    exit_code: int
    part: str  # the machine or MCU emulated


def needs_large_part(img: Image, device: Device) -> bool:
    """True when the image's RAM (static data, allowance, the caller's reserve) is more than the part has:
    a budget of all its RAM leaves no room for a caller. Such an image runs on the family's larger part
    (`device.toolchain.large_part`: same core, more RAM), and the report says so."""
    top = img.symbols.get("__stack_top", img.symbols.get("__stack", (0, 0, "")))[0]
    ram_end = img.ram_origin + int((device.ram_kb_total or 0) * 1024) + (1 if img.family == "avr" else 0)
    return bool(device.ram_kb_total) and top > ram_end


def emulator_command(device: Device, large: bool = False) -> list[str]:
    """The emulator and its fixed arguments; EmulatorError naming the key when it is not installed."""
    fam = device.toolchain.get("family")
    if fam == "cortex-m":
        exe = "qemu-system-arm"
        machine = device.toolchain.get("large_part" if large else "machine")
        cmd = [exe, "-M", str(machine), "-nographic", "-monitor", "none", "-serial", "none",
               "-chardev", "stdio,id=sh0", "-semihosting-config", "enable=on,target=native,chardev=sh0", "-kernel"]
    elif fam == "lakemont":
        exe = "qemu-i386"
        cmd = [exe]
    elif fam == "avr":
        exe = "simavr"  # the package that provides libsimavr; the driver itself is ours
        cmd = [str(simavr_driver())]
    else:
        raise EmulatorError(f"device={device.name}: no emulator for device.toolchain.family={fam}")
    if not shutil.which(exe):
        raise EmulatorError(f"device.toolchain.emulator={exe}: not installed (scripts/setup.sh installs it)")
    return cmd


def simavr_driver() -> Path:
    """Build validation/harness/simavr_run.c once per source version (cached beside the user's home)."""
    src = HARNESS / "simavr_run.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    exe = Path.home() / ".cache" / "ebnn-automl" / f"simavr_run-{digest}"
    if not exe.is_file():
        if not Path("/usr/include/simavr/sim_avr.h").is_file():
            raise EmulatorError("device.toolchain.emulator=simavr: libsimavr-dev is not installed "
                                "(scripts/setup.sh installs it)")
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_suffix(".tmp")
        r = subprocess.run(["cc", "-O2", "-o", str(tmp), str(src), "-lsimavr", "-lelf"], capture_output=True,
                           text=True)
        if r.returncode:
            raise EmulatorError(f"the simavr driver does not build: {r.stderr.strip().splitlines()[:1]}")
        tmp.replace(exe)
    return exe


def run_image(img: Image, device: Device, images: np.ndarray, classes: int, timeout: float = 1800) -> Run:
    """Feed `images` (N, C, H, W) uint8 to the image and parse what the harness reports."""
    work = img.elf.parent
    data = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
    (work / "images.u8").write_bytes(data)
    large = needs_large_part(img, device)
    cmd = emulator_command(device, large) + [str(img.elf)]
    part = str(device.toolchain.get("large_part" if large else "machine", device.part))
    if img.family == "avr":
        mmcu = next((f.split("=", 1)[1] for f in device.toolchain.get("cflags", []) if f.startswith("-mmcu=")),
                    "atmega328p")
        part = str(device.toolchain["large_part"]) if large else mmcu
        cmd += [part, str(int(device.clock_mhz * 1e6))]
    try:
        r = subprocess.run(cmd, cwd=work, input=data if img.family != "cortex-m" else b"", capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EmulatorError(f"{device.name}: the program did not finish within {timeout:.0f} s "
                            "(a lock-up or a fault loop)") from None
    out = r.stdout.decode(errors="replace").splitlines()
    rows = [ln.split()[1:] for ln in out if ln.startswith("R ")]
    done = [ln.split()[1:] for ln in out if ln.startswith("D ")]
    cycles = [int(ln.split()[1]) for ln in out if ln.startswith("K ")]
    if not done:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise EmulatorError(f"{device.name}: the program stopped after {len(rows)} of {len(images)} images "
                            f"(exit {r.returncode}{': ' + err[-1] if err else ''})")
    vals = np.array([[int(v) for v in row] for row in rows], dtype=np.int64).reshape(len(rows), classes + 2)
    n, peak, bottom, available = (int(v) for v in done[0])
    return Run(vals[:, 0], vals[:, 1:1 + classes], vals[:, -1], peak, bool(bottom), available,
               np.array(cycles, dtype=np.int64) if img.family == "avr" else None, r.returncode, part)
