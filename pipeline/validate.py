"""Stage `validate`: a model's C built, run and measured on the host and on emulated devices.

    python -m pipeline validate lib=artifacts/c/conv-1
    python -m pipeline validate arch=conv-1 device=avr ram_kb=2 images=20

Writes validation.json (schema: validation.check) and prints one line per device; exit status 1 with
one line per failed check.
"""
from __future__ import annotations

import json
from pathlib import Path

from .config import device as device_of
from .config import positive_int, positive_number, resolved
from .errors import StageFailed, UserError


def _load_device(name: str):
    import yaml

    from ebnn_core import Device, DeviceError

    from .config import CONF_DIR, group_options

    if name not in group_options("device"):
        raise UserError(f"devices={name}: no such device; choose one of {', '.join(group_options('device'))}")
    try:
        return Device.from_dict(yaml.safe_load((CONF_DIR / "device" / f"{name}.yaml").read_text()))
    except DeviceError as e:
        raise UserError(f"devices={name}: {e}") from None


def validate(cfg) -> dict:
    d = resolved(cfg)
    dev = device_of(d)
    arts = Path(d["paths"]["artifacts"])
    images = positive_int(d, "images")
    count_images = d.get("count_images")
    if isinstance(count_images, bool) or not isinstance(count_images, int) or count_images < 0:
        raise UserError(f"count_images={count_images}: must be a non-negative integer")
    ram_kb = positive_number(d, "ram_kb", allow_none=True)
    latency = positive_number(d, "latency_ms", allow_none=True)
    names = d.get("devices") or [dev.name, "host"]
    if isinstance(names, str):
        names = [names]
    devices = [dev if n == dev.name else _load_device(str(n)) for n in dict.fromkeys(names)]
    jobs = _promoted_jobs(d, arts) if d.get("promoted") is not None else [_single_job(d, arts)]
    from validation.build import family_of
    from validation.run import EmulatorError, emulator_command

    for dv in devices:
        fam = family_of(dv)
        if fam is None and dv.toolchain.get("family") != "host":
            raise UserError(f"devices={dv.name}: no validation family (device.toolchain.family)")
        if fam is not None:
            try:
                emulator_command(dv)
            except EmulatorError as e:
                raise UserError(str(e)) from None
    from ebnn_core.data import DataError, load_splits

    try:
        splits = load_splits(d["dataset"])
    except DataError as e:
        raise UserError(str(e)) from None
    budgets = {dv.name: (int(ram_kb * 1024) if dv.name == dev.name and ram_kb else
                         int(dv.ram_kb * 1024) if dv.ram_kb else None) for dv in devices}
    lat_budgets = {dv.name: (latency if dv.name == dev.name else dv.latency_ms) for dv in devices}
    from validation.check import validate_model

    reports = {}
    for job in jobs:
        fm, lib, out, label = job["fm"], job["lib"], job["out"], job["label"]
        if splits.input_shape != fm.spec.input_shape:
            raise UserError(f"dataset={d['dataset']['name']}: images are {splits.input_shape}, the model reads "
                            f"{fm.spec.input_shape}")
        libs = {_lib_device(lib): lib} if lib is not None and (lib / "ebnn_config.h").is_file() else {}
        work = Path(job.get("work") or arts / "validate" / label / "build").resolve()
        report = validate_model(fm, devices, splits.test_x, work, budgets, images=images,
                                count_images=count_images, libs=libs, latency_budgets=lat_budgets)
        report.update(folded=str(job["folded"]), dataset=d["dataset"]["name"], config={k: d.get(k) for k in (
            "lib", "folded", "promoted", "devices", "ram_kb", "latency_ms", "images", "count_images")})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        _log_mlflow(d, job.get("run_id") or fm.meta.get("mlflow_run_id"), job.get("tracking_uri"), out, report)
        if len(jobs) > 1:
            print(f"{label} ({fm.spec.describe()}):")
        _print(report)
        print(f"wrote {out}")
        reports[label] = report
    failures = [f"{label}: {f}" if len(jobs) > 1 else f for label, r in reports.items() for f in r["failures"]]
    if d.get("promoted") is not None:
        from . import artifacts as A
        from .search import study_name

        summary = {"schema": "ebnn-automl/validation-set/1", "study": study_name(d), "ok": not failures,
                   "failures": failures, "models": reports}
        path = A.validation_json(arts, study_name(d))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {path}")
    if failures:
        raise StageFailed("\n".join(failures))
    return reports if len(jobs) > 1 else next(iter(reports.values()))


def _print(report: dict) -> None:
    for name, r in report["devices"].items():
        ram = r.get("ram", {})
        lat = r.get("latency", {})
        extra = ""
        if "total_measured" in ram:
            extra = (f" RAM {ram['total_measured']} B measured / {ram['total_modelled']} B modelled "
                     f"(stack {ram['stack_measured']} / {ram['stack_modelled']})")
        if "cycles_measured" in lat:
            extra += f", {lat['latency_ms_measured']} ms measured / {lat['latency_ms_modelled']} ms modelled"
        elif "cycles_estimated" in lat:
            extra += (f", {lat['latency_ms_from_trace']} ms from the trace / {lat['latency_ms_modelled']} ms "
                      "modelled")
        print(f"{name}: {'ok' if r['ok'] else 'FAILED'}, {r.get('images_checked', 0)} images{extra}")


def _load_folded(path: Path, key: str):
    from ebnn_core import FoldedModel

    try:
        return FoldedModel.load(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{key}={path}: {e}") from None


def _single_job(d: dict, arts: Path) -> dict:
    lib = Path(d["lib"]) if d.get("lib") else None
    if lib is not None:
        if not lib.is_dir():
            raise UserError(f"lib={lib}: no such C library folder (write one with python -m pipeline codegen)")
        folded = lib / "folded.npz"
        if not folded.is_file():
            raise UserError(f"lib={lib}: no folded.npz in it (a folder written by python -m pipeline codegen)")
    elif d.get("folded"):
        folded = Path(d["folded"])
    else:
        folded = arts / "train" / str(d["arch"].get("name")) / "folded.npz"
    if not folded.is_file():
        raise UserError(f"folded={folded}: no FoldedModel file there")
    fm = _load_folded(folded, "folded")
    label = lib.name if lib is not None else str(fm.meta.get("arch_name") or fm.spec.short_hash())
    out = Path(d["out"]) if d.get("out") else (lib / "validation.json" if lib is not None
                                               else arts / "validate" / label / "validation.json")
    return {"fm": fm, "lib": lib, "folded": folded, "out": out, "label": label}


def _promoted_jobs(d: dict, arts: Path) -> list[dict]:
    """promoted=all (or an ArchSpec hash / registry version): the C libraries codegen wrote for the study's
    promoted models, each validated and logged to its promote run."""
    from ebnn_core.safe import safe_name

    from . import artifacts as A
    from .search import study_name

    name, which = study_name(d), d["promoted"]
    pj = A.promoted_json(arts, name)
    if not pj.is_file():
        raise UserError(f"promoted={which}: the study {name} has no promoted.json ({pj}); run promote first")
    doc = json.loads(pj.read_text())
    jobs = []
    for m in doc.get("models", []):
        if which != "all" and str(which) not in (m.get("arch_hash"), str(m.get("registry_version"))):
            continue
        h = safe_name(m.get("arch_hash"), "arch_hash", UserError)
        lib = A.c_dir(arts, name) / h
        if not (lib / "folded.npz").is_file():
            raise UserError(f"promoted={which}: no C library at {lib}; run python -m pipeline codegen "
                            f"promoted={which} with the same overrides first")
        jobs.append({"fm": _load_folded(lib / "folded.npz", "promoted"), "lib": lib, "folded": lib / "folded.npz",
                     "out": A.model_validation_json(arts, name, h), "label": h, "run_id": m.get("mlflow_run_id"),
                     "work": A.validate_dir(arts, name) / h / "build",
                     "tracking_uri": doc.get("mlflow_tracking_uri")})
    if not jobs:
        raise UserError(f"promoted={which}: no such promoted model of {name}")
    return jobs


def _lib_device(lib: Path) -> str:
    """The device a codegen folder was generated for (stated in its model.c header)."""
    import re

    m = re.search(r"for device ([A-Za-z0-9._-]+)", (lib / "model.c").read_text(errors="replace")[:2000])
    return m.group(1) if m else ""


def _log_mlflow(d: dict, run_id: str | None, tracking_uri: str | None, path: Path, report: dict) -> None:
    run_id = (d.get("mlflow") or {}).get("run_id") or run_id
    if not run_id:
        return
    from tracking.client import attach

    uri = (d.get("mlflow") or {}).get("tracking_uri") or tracking_uri or \
        f"sqlite:///{Path(d['paths']['artifacts']).resolve()}/mlflow.db"
    metrics = {}
    for name, r in report["devices"].items():
        for k in ("total_measured", "stack_measured", "static_measured"):
            if k in r.get("ram", {}):
                metrics[f"validate.{name}.ram_{k}"] = r["ram"][k]
        for k in ("cycles_measured", "instructions_per_inference", "latency_ms_measured", "latency_ms_from_trace"):
            if k in r.get("latency", {}):
                metrics[f"validate.{name}.{k}"] = r["latency"][k]
    attach(uri, run_id, [path], artifact_path="validation", metrics=metrics,
           tags={"validated": "ok" if report["ok"] else "failed"})
