"""Stage `codegen`: FoldedModel -> a C library folder for a device.

    python -m pipeline codegen arch=conv-1 dataset=mnist device=curie
    python -m pipeline codegen folded=artifacts/train/conv-1/folded.npz device=avr out=/tmp/avr-conv1
"""
from __future__ import annotations

from pathlib import Path

from .config import device, resolved
from .errors import UserError


def codegen(cfg) -> Path:
    d = resolved(cfg)
    dev = device(d)
    arts = Path(d["paths"]["artifacts"])
    name = d["arch"].get("name")
    folded = Path(d["folded"]) if d.get("folded") else arts / "train" / name / "folded.npz"
    if not folded.is_file():
        hint = "" if d.get("folded") else f"; train it first: python -m pipeline train arch={name}"
        raise UserError(f"folded={folded}: no FoldedModel file there{hint}")
    from codegen import generate
    from ebnn_core import FoldedModel, memory_plan

    try:
        fm = FoldedModel.load(folded)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"folded={folded}: not a FoldedModel file ({e})") from None
    label = fm.meta.get("arch_name") if d.get("folded") else name
    out = Path(d["out"]) if d.get("out") else arts / "c" / (label or fm.spec.short_hash())
    generate(fm, dev, out)
    mem = memory_plan(fm.spec, dev)
    print(f"wrote {out} ({fm.spec.describe()}, hash {fm.spec.short_hash()}) for {dev.name}: "
          f"params {mem.params_bytes} B in {dev.params_in}, arena {mem.activation_bytes + mem.scratch_bytes} B, "
          f"ram_bytes {mem.ram_bytes}")
    print(f"build: cd {out} && make && ./ebnn_example images.u8")
    return out
