"""Bare-metal images of a generated model for its device, with the project's own start-up code and
linker scripts (validation/harness/), and what their ELF files say.

    img = build_image(lib_dir, device, work_dir, budget_bytes=15360, allowance=424)
    img.static_bytes, img.sections, img.symbols

The RAM region of an image is laid out as the memory model counts it: the model's static data (its
parameters when they live in RAM, the arena, the input buffer), then the stack allowance the memory
model gives the inference call, then the caller's reserve (the harness's main(), the user's frame,
not counted by the model). The linker script asserts static RAM + allowance <= the RAM budget, so an
over-budget model does not link, and the message names the budget.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ebnn_core import Device

HARNESS = Path(__file__).resolve().parent / "harness"


class BuildError(RuntimeError):
    """A toolchain refused the image; `reason` is one line, `log` the compiler's or linker's output."""

    def __init__(self, reason: str, log: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.log = log


@dataclass(frozen=True)
class Family:
    """How images of one device family are built and run."""

    name: str
    sources: tuple[str, ...]
    linker_script: str
    reserve_bytes: int  # the caller's stack above the allowance (harness main() and its I/O calls)
    guard_bytes: int  # painted below the allowance: a call running past it writes there
    flash_origin: int = 0
    ram_origin: int = 0
    std: str = "-std=c99"


FAMILIES = {
    "cortex-m": Family("cortex-m", ("harness.c", "port_cortex_m.c"), "cortex_m.ld.in", 160, 256, 0x0, 0x20000000),
    "lakemont": Family("lakemont", ("harness.c", "port_lakemont.c"), "lakemont.ld.in", 160, 256, 0x08000000, 0x20000000),
    "avr": Family("avr", ("harness.c", "port_avr.c"), "avr_budget.ld.in", 64, 64, 0x0, 0x800100, std="-std=gnu99"),
}


def family_of(device: Device) -> Family | None:
    name = device.toolchain.get("family")
    return FAMILIES.get(name) if name else None


@dataclass
class Image:
    elf: Path
    family: str
    budget_bytes: int
    allowance: int
    sections: dict[str, int]  # name -> size in bytes
    symbols: dict[str, tuple[int, int, str]]  # name -> (address, size, section)
    model_sections: dict[str, int] = field(default_factory=dict)  # sections of model.o alone
    ram_origin: int = 0

    @property
    def static_bytes(self) -> int:
        """RAM the image holds before any call: .data + .bss (the port's own bytes excluded)."""
        return self.sections.get(".data", 0) + self.sections.get(".bss", 0)

    @property
    def model_static_bytes(self) -> int:
        """The model's statics by symbol: its RAM parameter arrays, the arena, the input buffer."""
        return sum(size for name, (_, size, sec) in self.symbols.items()
                   if sec in (".data", ".bss") and (name.startswith("ebnn_") or name == "ebnn_input_image"))

    @property
    def flash_bytes(self) -> int:
        """What the image puts in flash: vectors, code, constants and the initial values of .data."""
        return sum(self.sections.get(s, 0) for s in (".vectors", ".text", ".rodata", ".data"))

    def address(self, symbol: str) -> int:
        return self.symbols[symbol][0]


def _tool(device: Device, name: str) -> str:
    """A binutils tool of the device's toolchain (arm-none-eabi-size for arm-none-eabi-gcc)."""
    cc = device.toolchain.get("cc", "cc")
    prefix = cc[: -len("gcc")] if cc.endswith("gcc") else ""
    return prefix + name


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _elf_tables(path: Path) -> tuple[dict[str, int], dict[str, tuple[int, int, str]]]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(path, "rb") as f:
        elf = ELFFile(f)
        secs = [elf.get_section(i) for i in range(elf.num_sections())]
        sections = {s.name: int(s["sh_size"]) for s in secs if s.name and s["sh_flags"] & 0x2}  # SHF_ALLOC
        symbols = {}
        for s in secs:
            if isinstance(s, SymbolTableSection):
                for sym in s.iter_symbols():
                    idx = sym["st_shndx"]
                    sec = secs[idx].name if isinstance(idx, int) and idx < len(secs) else str(idx)
                    if sym.name:
                        symbols[sym.name] = (int(sym["st_value"]), int(sym["st_size"]), sec)
    return sections, symbols


def object_sections(path: Path) -> dict[str, int]:
    """Sizes of the sections of an object file (.text, .rodata*, .data, .bss), summed by prefix."""
    sections, _ = _elf_tables(path)
    out: dict[str, int] = {}
    for name, size in sections.items():
        key = next((p for p in (".text", ".rodata", ".data", ".bss", ".progmem") if name.startswith(p)), name)
        out[key] = out.get(key, 0) + size
    return out


def build_image(lib: Path, device: Device, work: Path, budget_bytes: int, allowance: int,
                flash_bytes: int | None = None) -> Image:
    """Compile the C library in `lib` with the harness for the device's family and link it into
    work/app.elf. Raises BuildError with one line (over budget: naming the budget)."""
    fam = family_of(device)
    if fam is None:
        raise BuildError(f"device={device.name}: no bare-metal family (device.toolchain.family)")
    cc = device.toolchain["cc"]
    if not shutil.which(cc):
        raise BuildError(f"device.toolchain.cc={cc}: not installed (scripts/setup.sh installs it)")
    work.mkdir(parents=True, exist_ok=True)
    cflags = [f for f in device.toolchain.get("cflags", []) if f not in ("-static", "-no-pie", "-nostdlib")]
    common = [*cflags, fam.std, "-Wall", "-Wextra", "-fno-asynchronous-unwind-tables", "-fno-stack-protector",
              "-fstack-usage", f"-I{lib}", f"-I{HARNESS}"]
    objs = []
    for src in [lib / "model.c", *(HARNESS / s for s in fam.sources)]:
        obj = work / (src.stem + ".o")
        r = _run([cc, *common, "-c", str(src), "-o", str(obj)], work)
        if r.returncode:
            raise BuildError(f"{device.name}: {src.name} does not compile: {_first_error(r.stderr)}", r.stderr)
        objs.append(str(obj))
    message = (f"ebnn: static RAM + stack allowance of {allowance} B exceed the RAM budget of "
               f"{budget_bytes} B")
    subst = {"@BUDGET@": str(budget_bytes), "@ALLOWANCE@": str(allowance), "@BUDGET_MESSAGE@": message,
             "@STACK_BYTES@": str(allowance + fam.reserve_bytes), "@GUARD_BYTES@": str(fam.guard_bytes),
             "@RAM_ORIGIN@": hex(fam.ram_origin), "@FLASH_ORIGIN@": hex(fam.flash_origin),
             "@RAM_LENGTH@": str(budget_bytes + fam.reserve_bytes + fam.guard_bytes + 64),
             "@FLASH_LENGTH@": str(flash_bytes or 16 << 20)}
    script = (HARNESS / fam.linker_script).read_text()
    for k, v in subst.items():
        script = script.replace(k, v)
    ld = work / fam.linker_script.removesuffix(".in")
    ld.write_text(script)
    elf = work / "app.elf"
    if fam.name == "avr":
        link = [cc, *cflags, *objs, str(ld), f"-Wl,--defsym=__stack=__heap_start+{fam.guard_bytes + allowance + fam.reserve_bytes - 1}",
                "-Wl,--undefined=_mmcu", "-o", str(elf)]
    else:
        link = [cc, *cflags, "-nostdlib", "-static", *(["-no-pie"] if fam.name == "lakemont" else []),
                "-Wl,--build-id=none", "-T", str(ld), *objs, "-lgcc", "-o", str(elf)]
    r = _run(link, work)
    if r.returncode:
        if "ebnn: static RAM" in r.stderr:
            raise BuildError(f"{device.name}: does not link: {message}", r.stderr)
        raise BuildError(f"{device.name}: does not link: {_first_error(r.stderr)}", r.stderr)
    sections, symbols = _elf_tables(elf)
    return Image(elf, fam.name, budget_bytes, allowance, sections, symbols,
                 object_sections(work / "model.o"), fam.ram_origin)


def _first_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if "region" in ln or "overflow" in ln]  # the part's RAM/flash
    lines += [ln.strip() for ln in log.splitlines() if "error" in ln.lower() and "collect2" not in ln]
    return (lines or [ln.strip() for ln in log.splitlines() if ln.strip()] or ["(no output)"])[0][:300]
