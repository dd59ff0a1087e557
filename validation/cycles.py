"""Cycles per inference derived from an instruction trace (validation.count), one table per core.

    cycles = trace_cycles(count, "cortex-m0")     # count: a validation.count.Count

Unicorn counts instructions, not cycles. These tables turn the executed mnemonics and the taken
branches of one inference into cycles; they are approximations, stated here once:

- cortex-m0 (ARM DDI 0432C, Cortex-M0 TRM, table 3-1 "Cortex-M0 instruction summary"): 1 cycle per
  instruction; loads and stores (LDR*, STR*) 2; MULS 1 (the nRF51 has the single-cycle multiplier);
  PUSH, POP, LDM, STM 1 + N where N, the register count, is not in the mnemonic and is taken as 4;
  a taken branch costs 2 more (B<cond>/B taken 3, not taken 1); BL 4 (1 + 2 taken + 1); BX/BLX 3.
- cortex-m4 (ARM DDI 0439B, Cortex-M4 TRM, table 3-1 "Cortex-M4 instruction set summary"): 1 cycle per
  instruction; loads 2 (LDR*, the pipelining of neighbouring loads not modelled), stores 1; PUSH, POP,
  LDM, STM 1 + N with N taken as 4; MUL/MLA/MLS/SMULL/UMULL/UMLAL 1; UDIV/SDIV 7 (2..12, data
  dependent); a taken branch 2 more (1 + P, P = 1..3 for the pipeline refill; 2 taken here).
- lakemont (the Curie's Quark core; no public per-instruction timing): 1 cycle per instruction plus 1
  per taken branch, the in-order, single-issue core's pipeline refill.
- avr: not needed (simavr counts cycles exactly, validation.run).
"""
from __future__ import annotations

import re

REGISTER_COUNT = 4  # registers of a PUSH/POP/LDM/STM whose list the mnemonic does not give

_ARM_COND = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al")
_COND_RE = re.compile(r"^(.*?)(" + "|".join(_ARM_COND) + r")$")

TAKEN_EXTRA = {"cortex-m0": 2, "cortex-m4": 2, "lakemont": 1}


def _arm_base(mn: str) -> str:
    """A Thumb mnemonic without its width qualifier (.w/.n) and condition (ldrne -> ldr, bne -> b)."""
    mn = mn.split(".")[0].lower()
    if mn in ("bl", "blx", "bx", "bics", "bic", "cbz", "cbnz", "bfi", "bfc", "bkpt"):
        return mn
    m = _COND_RE.match(mn)
    if m and m.group(1) and m.group(1) not in ("s",):
        base = m.group(1)
        if base in ("b", "ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "str", "strb", "strh", "mov", "movs", "add",
                    "adds", "sub", "subs", "orr", "orrs", "and", "ands", "eor", "eors", "cmp", "it", "lsl", "lsr",
                    "lsls", "lsrs", "asr", "asrs", "mul", "muls", "mvn", "mvns", "rsb", "rsbs", "bx", "pop", "push",
                    "ldm", "stm", "ubfx", "sbfx", "uxtb", "uxth", "sxtb", "sxth", "adc", "adcs", "sbc", "sbcs", "tst",
                    "cmn", "mla", "mls", "bic", "bics", "orn", "teq", "clz", "ldrd", "strd"):
            return base
    return mn


def arm_cycles(mn: str, core: str) -> int:
    """Cycles of one Thumb instruction (without the taken-branch refill) on cortex-m0 or cortex-m4."""
    b = _arm_base(mn)
    if b in ("push", "pop") or b.startswith(("ldm", "stm")):
        return 1 + REGISTER_COUNT
    if b.startswith("ldr"):
        return 2 * (2 if b == "ldrd" else 1)
    if b.startswith("str"):
        return 2 if core == "cortex-m0" else (2 if b == "strd" else 1)
    if b == "bl":
        return 2  # + 2 taken = 4
    if b in ("udiv", "sdiv"):
        return 7
    return 1


def trace_cycles(count, core: str) -> float:
    """Cycles of one inference from its executed mnemonics and taken branches (a validation.count.Count)."""
    if core in ("cortex-m0", "cortex-m4"):
        base = sum(n * arm_cycles(mn, core) for mn, n in count.mnemonics.items())
    elif core == "lakemont":
        base = sum(count.mnemonics.values())
    else:
        raise ValueError(f"no cycle table for core {core!r} (cortex-m0, cortex-m4, lakemont)")
    return float(base + TAKEN_EXTRA[core] * count.taken_branches)


def core_of(device) -> str:
    """The cycle table of a device: its unicorn CPU for Cortex-M, lakemont for the Curie's family."""
    fam = device.toolchain.get("family")
    if fam == "cortex-m":
        return str(device.toolchain.get("unicorn_cpu", "cortex-m4"))
    if fam == "lakemont":
        return "lakemont"
    raise ValueError(f"device={device.name}: no trace cycle table for family {fam!r}")
