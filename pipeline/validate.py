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
    names = d.get("devices") or [dev.name, "host"]
    if isinstance(names, str):
        names = [names]
    devices = [dev if n == dev.name else _load_device(str(n)) for n in dict.fromkeys(names)]

    from ebnn_core import FoldedModel

    try:
        fm = FoldedModel.load(folded)
    except (OSError, ValueError) as e:
        raise UserError(f"folded={folded}: {e}") from None
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
    if splits.input_shape != fm.spec.input_shape:
        raise UserError(f"dataset={d['dataset']['name']}: images are {splits.input_shape}, the model reads "
                        f"{fm.spec.input_shape}")
    label = lib.name if lib is not None else str(fm.meta.get("arch_name") or fm.spec.short_hash())
    out = Path(d["out"]) if d.get("out") else (lib / "validation.json" if lib is not None
                                               else arts / "validate" / label / "validation.json")
    budgets = {dv.name: (int(ram_kb * 1024) if dv.name == dev.name and ram_kb else
                         int(dv.ram_kb * 1024) if dv.ram_kb else None) for dv in devices}
    lat_budgets = {dv.name: (latency if dv.name == dev.name else dv.latency_ms) for dv in devices}
    libs = {}
    if lib is not None and (lib / "ebnn_config.h").is_file():
        libs[_lib_device(lib)] = lib
    from validation.check import validate_model

    work = (arts / "validate" / label / "build").resolve()
    report = validate_model(fm, devices, splits.test_x, work, budgets, images=images, count_images=count_images,
                            libs=libs, latency_budgets=lat_budgets)
    report.update(folded=str(folded), dataset=d["dataset"]["name"], config={k: d.get(k) for k in (
        "lib", "folded", "devices", "ram_kb", "latency_ms", "images", "count_images")})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _log_mlflow(d, fm, out, report)
    for name, r in report["devices"].items():
        ram = r.get("ram", {})
        lat = r.get("latency", {})
        extra = ""
        if "total_measured" in ram:
            extra = (f" RAM {ram['total_measured']} B measured / {ram['total_modelled']} B modelled "
                     f"(stack {ram['stack_measured']} / {ram['stack_modelled']})")
        if "cycles_measured" in lat:
            extra += f", {lat['latency_ms_measured']} ms measured / {lat['latency_ms_modelled']} ms modelled"
        elif "instructions_per_inference" in lat:
            extra += f", {lat['instructions_per_inference']} instructions per inference"
        print(f"{name}: {'ok' if r['ok'] else 'FAILED'}, {r.get('images_checked', 0)} images{extra}")
    print(f"wrote {out}")
    if not report["ok"]:
        raise StageFailed("\n".join(report["failures"]))
    return report


def _lib_device(lib: Path) -> str:
    """The device a codegen folder was generated for (stated in its model.c header)."""
    import re

    m = re.search(r"for device ([A-Za-z0-9._-]+)", (lib / "model.c").read_text(errors="replace")[:2000])
    return m.group(1) if m else ""


def _log_mlflow(d: dict, fm, path: Path, report: dict) -> None:
    run_id = (d.get("mlflow") or {}).get("run_id") or fm.meta.get("mlflow_run_id")
    if not run_id:
        return
    from mlflow.tracking import MlflowClient

    uri = (d.get("mlflow") or {}).get("tracking_uri") or f"sqlite:///{Path(d['paths']['artifacts']).resolve()}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.log_artifact(run_id, str(path), artifact_path="validation")
    for name, r in report["devices"].items():
        for k in ("total_measured", "stack_measured", "static_measured"):
            if k in r.get("ram", {}):
                client.log_metric(run_id, f"validate.{name}.ram_{k}", r["ram"][k])
        for k in ("cycles_measured", "instructions_per_inference", "latency_ms_measured"):
            if k in r.get("latency", {}):
                client.log_metric(run_id, f"validate.{name}.{k}", r["latency"][k])
    client.set_tag(run_id, "validated", "ok" if report["ok"] else "failed")
