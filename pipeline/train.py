"""Stage `train`: one architecture, trained, folded, scored by PyTorch and by the integer reference.

    python -m pipeline train arch=conv-1 dataset=mnist device=curie epochs=1

Writes ${paths.artifacts}/train/<arch>/: metrics.json, folded.npz (the FoldedModel), arch.json, config.yaml.
"""
from __future__ import annotations

import json
from pathlib import Path

from .config import arch_spec, device, positive_int, positive_number, recipe, resolved
from .errors import UserError
from reports.tables import print_table

METRICS = "metrics.json"
FOLDED = "folded.npz"


def train(cfg) -> dict:
    d = resolved(cfg)
    spec = arch_spec(d)
    dev = device(d)
    epochs = positive_int(d, "epochs")
    batch_size = positive_int(d, "batch_size")
    lr = positive_number(d, "lr")
    subset = positive_int(d, "train_subset", allow_none=True)
    ram_kb = positive_number(d, "ram_kb", allow_none=True)
    seed = d.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed={seed}: must be a non-negative integer")
    rec = recipe(d, "recipe")
    from ebnn_core.safe import safe_name

    name = safe_name(d["arch"].get("name") or spec.short_hash(), "arch.name", UserError)
    out = Path(d["paths"]["artifacts"]) / "train" / name

    from ebnn_core import latency_ms
    from ebnn_core.data import DataError, load_splits
    from ebnn_core.training import fit_fold_score

    try:
        splits = load_splits(d["dataset"])
    except DataError as e:
        raise UserError(str(e)) from None
    if splits.input_shape != spec.input_shape:
        raise UserError(f"dataset={d['dataset']['name']}: images are {splits.input_shape}, "
                        f"the dataset config says input_shape={list(spec.input_shape)}")

    folded, info = fit_fold_score(spec, splits, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                  val_size=d["dataset"]["val_size"], train_subset=subset,
                                  meta={"arch_name": name, "dataset": d["dataset"]["name"], "seed": seed,
                                        "epochs": epochs},
                                  progress=bool(d.get("progress", True)), recipe=rec)

    from validation.stack import StackError, memory_plan_compiled

    try:
        mem = memory_plan_compiled(folded, dev)  # the stack: the device compiler's frame of this model's C
    except StackError as e:
        raise UserError(str(e)) from None
    metrics = {
        "arch": name,
        "arch_hash": spec.short_hash(),
        "arch_desc": spec.describe(),
        "dataset": d["dataset"]["name"],
        "device": dev.name,
        **{k: info[k] for k in ("test_accuracy", "reference_accuracy", "disagreements", "test_images")},
        "val_accuracy": info.get("val_accuracy"),
        "train_seconds": round(info["train_seconds"], 3),
        "reference_seconds": round(info["reference_seconds"], 3),
        **mem.as_dict(),
        "latency_ms_est": round(latency_ms(spec, dev), 4),
        "ram_budget_bytes": None if ram_kb is None else int(ram_kb * 1024),
        "fits_ram": None if ram_kb is None else mem.ram_bytes <= ram_kb * 1024,
    }
    out.mkdir(parents=True, exist_ok=True)
    folded.save(out / FOLDED)
    (out / "arch.json").write_text(spec.to_json() + "\n")
    from omegaconf import OmegaConf

    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    print_table([metrics], ["arch", "arch_desc", "test_accuracy", "reference_accuracy", "disagreements",
                            "ram_bytes", "flash_bytes", "model_bytes", "latency_ms_est"])
    print(f"wrote {out}")
    return metrics
