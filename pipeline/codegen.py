"""Stage `codegen`: FoldedModel -> a C library folder for a device.

    python -m pipeline codegen arch=conv-1 dataset=mnist device=curie
    python -m pipeline codegen folded=artifacts/train/conv-1/folded.npz device=avr out=/tmp/avr-conv1

The FoldedModel is read and checked before anything is created. Without `out=` the folder is
${paths.artifacts}/c/<name>, where <name> (the arch, or `meta.arch_name` of the file) must be a safe
name (ebnn_core.safe), so no file can send the output elsewhere; `out=` is the user's choice, anywhere.
"""
from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from ebnn_core.safe import safe_name, shown

from . import artifacts as A
from .config import device, resolved
from .errors import UserError


def _make_folder(out: Path, key: str, value) -> Path | None:
    """mkdir -p `out` and check it is writable, else a UserError naming key=value that leaves nothing
    behind. Returns the topmost folder created (None if `out` existed), for removal if a later step fails."""
    top = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as e:
        if top is not None and top.is_dir():
            shutil.rmtree(top, ignore_errors=True)
        raise UserError(f"{key}={shown(str(value))}: cannot create or write the folder {out} "
                        f"({e.strerror or e})") from None
    return top


def _load(folded: Path, key: str = "folded"):
    from ebnn_core import FoldedModel

    try:
        return FoldedModel.load(folded)
    except OSError as e:
        raise UserError(f"{key}={shown(str(folded))}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise UserError(f"{key}={shown(str(folded))}: {e}") from None


def _samples(d: dict, fm):
    """The first `samples` test images of the dataset the model was trained on (its meta, else the
    config's) with their labels, for the library's `make run`; None when there are none to give."""
    from .config import positive_int

    if d.get("samples", 0) == 0:
        return None
    n = positive_int(d, "samples")
    from ebnn_core.data import DataError, load_splits

    ds = dict(d["dataset"])
    trained_on = fm.meta.get("dataset") if isinstance(fm.meta.get("dataset"), str) else None
    if trained_on and trained_on != ds.get("name"):
        print(f"note: no sample images for make run (the model was trained on {trained_on}, dataset= is "
              f"{ds.get('name')})")
        return None
    try:
        splits = load_splits(ds)
    except DataError as e:
        raise UserError(str(e)) from None
    if tuple(splits.input_shape) != tuple(fm.spec.input_shape):
        print(f"note: no sample images for make run ({ds.get('name')} images are {tuple(splits.input_shape)}, "
              f"the model reads {tuple(fm.spec.input_shape)})")
        return None
    return splits.test_x[:n], splits.test_y[:n]


def _write(fm, dev, out: Path, key: str, value, d: dict) -> Path:
    """Generate the library into `out` (created here, removed again if writing fails), with folded.npz."""
    from codegen import generate
    from codegen.generate import CodegenError, toolchain_context
    from ebnn_core import memory_plan

    try:
        toolchain_context(dev)  # a device value that cannot go into the Makefile: refused before any file
    except CodegenError as e:
        raise UserError(str(e)) from None
    samples = _samples(d, fm)
    created = _make_folder(out, key, value)
    try:
        generate(fm, dev, out, samples=samples)
        fm.save(out / "folded.npz")  # the model the C came from: validate reads it for the reference
    except OSError as e:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise UserError(f"{key}={shown(str(value))}: cannot write {out} ({e.strerror or e})") from None
    from validation.stack import StackError, memory_plan_compiled

    try:
        mem = memory_plan_compiled(fm, dev)
    except StackError:
        mem = memory_plan(fm.spec, dev)
    print(f"wrote {out} ({fm.spec.describe()}, hash {fm.spec.short_hash()}) for {dev.name}: "
          f"params {mem.params_bytes} B in {dev.params_in}, arena {mem.activation_bytes + mem.scratch_bytes} B, "
          f"ram_bytes {mem.ram_bytes}")
    print(f"build: cd {shlex.quote(str(out))} && make run")
    print(f"device: cd {shlex.quote(str(out))} && make device  (libebnn_model.a with {dev.name}'s toolchain)")
    print(f"validate: python -m pipeline validate lib={shlex.quote(str(out))}")
    return out


def _from_study(d: dict, dev, arts: Path) -> list[Path]:
    """`promoted=` (all, an ArchSpec hash, or a registry version number) from the study's promoted.json, or
    `trial=N` (a search trial's screening FoldedModel): one library each under ${paths.artifacts}/c/<study>/."""
    import json

    from .search import study_name

    name = study_name(d)
    outs = []
    if d.get("trial") is not None:
        trial = d["trial"]
        if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
            raise UserError(f"trial={trial}: must be a trial number of the study {name}")
        pj = A.pareto_json(arts, name)
        if not pj.is_file():
            raise UserError(f"trial={trial}: the study {name} has no pareto.json ({pj}); run the search first")
        doc = json.loads(pj.read_text())
        hit = [t for t in doc.get("pareto", []) if t.get("number") == trial]
        if not hit:
            numbers = ", ".join(str(t.get("number")) for t in doc.get("pareto", []))
            raise UserError(f"trial={trial}: not a Pareto-optimal trial of {name} (those are: {numbers})")
        h = safe_name(hit[0].get("arch_hash"), "arch_hash", UserError)
        fm = _load(arts / "search" / name / "trials" / h / "folded.npz", "trial")
        return [_write(fm, dev, A.c_dir(arts, name) / f"trial-{trial}", "paths.artifacts", arts, d)]
    which = d["promoted"]
    pj = A.promoted_json(arts, name)
    if not pj.is_file():
        raise UserError(f"promoted={which}: the study {name} has no promoted.json ({pj}); run python -m pipeline "
                        "promote with the same overrides first")
    models = json.loads(pj.read_text()).get("models", [])
    sel = [m for m in models if which == "all" or str(which) in (m.get("arch_hash"), str(m.get("registry_version")))]
    if not sel:
        names = ", ".join(f"{m.get('arch_hash')} (version {m.get('registry_version')})" for m in models)
        raise UserError(f"promoted={which}: no such promoted model of {name}; choose all or one of {names}")
    for m in sel:
        h = safe_name(m.get("arch_hash"), "arch_hash", UserError)
        fm = _load(A.promote_dir(arts, name) / h / "folded.npz", "promoted")
        outs.append(_write(fm, dev, A.c_dir(arts, name) / h, "paths.artifacts", arts, d))
    return outs


def codegen(cfg) -> Path | list[Path]:
    d = resolved(cfg)
    dev = device(d)
    safe_name(dev.name, "device.name", UserError)
    arts = Path(d["paths"]["artifacts"])
    if d.get("promoted") is not None or d.get("trial") is not None:
        return _from_study(d, dev, arts)
    given_folded, given_out = d.get("folded"), d.get("out")
    name = None if given_folded else safe_name((d.get("arch") or {}).get("name"), "arch.name", UserError)
    folded = Path(given_folded) if given_folded else arts / "train" / name / "folded.npz"
    if not folded.is_file():
        hint = "" if given_folded else f"; train it first: python -m pipeline train arch={name}"
        raise UserError(f"folded={shown(str(folded))}: no FoldedModel file there{hint}")
    fm = _load(folded)
    if given_out:
        out, key, value = Path(given_out), "out", given_out
    else:
        label = fm.meta.get("arch_name") if given_folded else name
        if label:
            try:
                safe_name(label, "meta.arch_name")
            except ValueError as e:
                raise UserError(f"folded={shown(str(folded))}: {e}") from None
        out, key, value = arts / "c" / (label or fm.spec.short_hash()), "paths.artifacts", arts
        if not out.resolve().is_relative_to(arts.resolve()):
            raise UserError(f"paths.artifacts={shown(str(arts))}: {out} resolves to {out.resolve()}, outside it; "
                            "give out= to write there")
    return _write(fm, dev, out, key, value, d)
