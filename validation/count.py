"""Instructions per inference of a validation image, counted under unicorn (Cortex-M, Lakemont).

    counts = count_instructions(img, device, images)     # one Count per image

The image runs as it does under QEMU: the same start-up code, the harness's semihosting calls (Cortex-M,
served by a hook on the `bkpt 0xab` of harness_semihost) or Linux system calls (Lakemont, `int 0x80`).
A block hook counts the instructions of every basic block executed (capstone decodes each block once),
between the harness's two marks around the inference call (harness_mark(1) and harness_mark(2), so a
count includes the call's own few instructions). Condition-failed instructions of an IT block count,
as they take their issue cycle. QEMU agrees exactly (tests/test_validation.py checks it once).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebnn_core import Device

from .build import Image
from .run import EmulatorError

PAGE = 0x1000


@dataclass
class Count:
    instructions: int
    mnemonics: dict[str, int]  # executed instructions by mnemonic (for cycle models)
    taken_branches: int


def _align(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def _load(uc, img: Image) -> None:
    """Map and fill every loadable segment (Cortex-M: at its load address, as flash holds it)."""
    from elftools.elf.elffile import ELFFile

    with open(img.elf, "rb") as f:
        elf = ELFFile(f)
        regions: list[tuple[int, int]] = []
        segs = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            at = seg["p_paddr"] if img.family == "cortex-m" else seg["p_vaddr"]
            segs.append((at, seg.data(), seg["p_memsz"]))
            regions.append((at & ~(PAGE - 1), _align(at + max(seg["p_memsz"], len(seg.data())))))
    # RAM and flash windows of the memory map, beyond what the segments hold (stack, .bss)
    regions.append((img.ram_origin, _align(img.ram_origin + img.budget_bytes + 64 * 1024)))
    regions.sort()
    merged: list[list[int]] = []
    for lo, hi in regions:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    for lo, hi in merged:
        uc.mem_map(lo, hi - lo)
    for at, data, _ in segs:
        uc.mem_write(at, data)


def count_instructions(img: Image, device: Device, images: np.ndarray, max_instructions: int = 2_000_000_000
                       ) -> list[Count]:
    import capstone
    import unicorn

    data = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
    if img.family == "cortex-m":
        from unicorn import arm_const as A

        cpu = {"cortex-m0": A.UC_CPU_ARM_CORTEX_M0, "cortex-m3": A.UC_CPU_ARM_CORTEX_M3,
               "cortex-m4": A.UC_CPU_ARM_CORTEX_M4}[str(device.toolchain.get("unicorn_cpu", "cortex-m4"))]
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(cpu)
        cs = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    elif img.family == "lakemont":
        uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    else:
        raise EmulatorError(f"device={device.name}: unicorn counts Cortex-M and Lakemont images only")
    _load(uc, img)

    state = {"pos": 0, "count": 0, "begin": 0, "done": False, "taken": 0, "prev_end": None, "prev_branch": False}
    blocks: dict[tuple[int, int], tuple[int, tuple[str, ...], bool]] = {}
    active = {"on": False}
    counts: list[Count] = []
    current: dict[str, int] = {}

    def on_block(uc_, address, size, _):
        key = (address, size)
        if key not in blocks:
            code = bytes(uc_.mem_read(address, size))
            insns = list(cs.disasm(code, address))
            last = insns[-1].mnemonic if insns else ""
            blocks[key] = (len(insns), tuple(i.mnemonic for i in insns), last.startswith(("b", "j", "cb")))
        n, mn, _ = blocks[key]
        state["count"] += n
        if active["on"]:
            for m in mn:
                current[m] = current.get(m, 0) + 1
            if state["prev_branch"] and address != state["prev_end"]:
                state["taken"] += 1
        state["prev_end"] = address + size
        state["prev_branch"] = blocks[key][2]

    def mark(uc_, which):
        if which == 1:
            state["begin"], state["taken"] = state["count"], 0
            current.clear()
            active["on"] = True
        elif which == 2 and active["on"]:
            active["on"] = False
            counts.append(Count(state["count"] - state["begin"], dict(current), state["taken"]))

    def read_input(uc_, buf, n):
        chunk = data[state["pos"]:state["pos"] + n]
        state["pos"] += len(chunk)
        uc_.mem_write(buf, chunk)
        return len(chunk)

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    mark_at = img.address("harness_mark") & (~1 if img.family == "cortex-m" else ~0)  # Thumb bit on Cortex-M
    if img.family == "cortex-m":
        from unicorn import arm_const as A

        def on_mark(uc_, address, size, _):
            mark(uc_, uc_.reg_read(A.UC_ARM_REG_R0))

        lo = img.address("harness_semihost") & ~1
        body = bytes(uc.mem_read(lo, img.symbols["harness_semihost"][1]))
        bkpt = next(lo + i for i in range(0, len(body) - 1, 2) if body[i:i + 2] == b"\xab\xbe")

        def on_bkpt(uc_, address, size, _):
            op, arg = uc_.reg_read(A.UC_ARM_REG_R0), uc_.reg_read(A.UC_ARM_REG_R1)
            w = [int.from_bytes(uc_.mem_read(arg + 4 * i, 4), "little") for i in range(3)] if op in (1, 6, 0x20) else []
            result = 0
            if op == 0x01:  # SYS_OPEN: the one input file
                result = 3
            elif op == 0x06:  # SYS_READ: returns the bytes not read
                result = w[2] - read_input(uc_, w[1], w[2])
            elif op == 0x20:  # SYS_EXIT_EXTENDED
                state["done"] = True
                uc_.emu_stop()
            uc_.reg_write(A.UC_ARM_REG_R0, result)
            uc_.reg_write(A.UC_ARM_REG_PC, (address + 2) | 1)

        uc.hook_add(unicorn.UC_HOOK_CODE, on_mark, begin=mark_at, end=mark_at)
        uc.hook_add(unicorn.UC_HOOK_CODE, on_bkpt, begin=bkpt, end=bkpt)
        sp = int.from_bytes(uc.mem_read(0, 4), "little")
        start = int.from_bytes(uc.mem_read(4, 4), "little")
        uc.reg_write(A.UC_ARM_REG_SP, sp)
    else:
        from unicorn import x86_const as X

        def on_mark(uc_, address, size, _):
            esp = uc_.reg_read(X.UC_X86_REG_ESP)
            mark(uc_, int.from_bytes(uc_.mem_read(esp + 4, 4), "little", signed=True))

        def on_intr(uc_, intno, _):
            if intno != 0x80:
                raise EmulatorError(f"{device.name}: unexpected interrupt {intno} under unicorn")
            nr, b, c, d = (uc_.reg_read(r) for r in (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX,
                                                     X.UC_X86_REG_EDX))
            result = d if nr == 4 else 0
            if nr == 3:
                result = read_input(uc_, c, d)
            elif nr == 1:
                state["done"] = True
                uc_.emu_stop()
            uc_.reg_write(X.UC_X86_REG_EAX, result)

        uc.hook_add(unicorn.UC_HOOK_CODE, on_mark, begin=mark_at, end=mark_at)
        uc.hook_add(unicorn.UC_HOOK_INTR, on_intr)
        start = img.address("_start")
    try:
        uc.emu_start(start | (1 if img.family == "cortex-m" else 0), 0xFFFFFFFF, count=max_instructions)
    except unicorn.UcError as e:
        raise EmulatorError(f"{device.name}: unicorn stopped: {e}") from None
    if not state["done"]:
        raise EmulatorError(f"{device.name}: unicorn did not reach the program's exit")
    return counts
