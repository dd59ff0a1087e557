"""Float baselines of promoted binary models: each model's float twin (the same layers, float weights,
batch norm and ReLU: ebnn_core.nn.FloatTwin) trained on the same training split for the same epochs and
scored on the same test set, beside the binary model's measured figures.

    .venv/bin/python bench/float_baseline.py ARTIFACTS STUDY [--top 5] [--epochs N] [--seed 0]
                                             [--out bench/float_baseline.json]

ARTIFACTS/promote/STUDY/promoted.json names the models (python -m pipeline promote writes it); the
--top most accurate are trained (default all), for --epochs (default: the epochs promote trained the
binary models), on promote's training split (its seed and train_subset). The float twin sees pixels / 255
(also for a binary-input model: the baseline is the float network) and learns with Adam + cosine (lr
2e-3, no augmentation), the float teacher's schedule (ebnn_core.recipe.fit_float); fusions of one
network share one twin. Prints per model test accuracy binary / float, the difference, and
the bytes of the weights (binary: model_bytes of the memory plan, with thresholds; float: 4 bytes per
weight plus batch norm's scale and shift per channel). Rows are appended to --out as they finish.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", type=Path)
    ap.add_argument("study")
    ap.add_argument("--top", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None, help="default: promote's seed (its train/val split)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "float_baseline.json")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from ebnn_core import ArchSpec
    from ebnn_core.data import load_splits, split_train_val
    from ebnn_core.nn import FloatTwin
    from ebnn_core.recipe import fit_float
    from ebnn_core.safe import safe_name

    study = safe_name(args.study, "study", ValueError)
    doc_path = args.artifacts / "promote" / study / "promoted.json"
    if not doc_path.is_file():
        ap.error(f"{doc_path}: missing; run python -m pipeline promote first")
    doc = json.loads(doc_path.read_text())
    fid = doc["fidelity"]
    epochs = args.epochs or int(fid["epochs"])
    seed = args.seed if args.seed is not None else int(fid.get("seed") or 0)
    splits = load_splits({"name": doc["dataset"]})  # the data set's installed copy (conf/dataset)
    tr, _ = split_train_val(len(splits.train_x), int(fid["val_size"]), seed)  # promote's split
    if fid.get("train_subset"):
        tr = np.sort(np.random.default_rng(seed + 1).permutation(tr)[:int(fid["train_subset"])])  # as ImageDataModule
    models, nets = [], set()
    for m in sorted(doc["models"], key=lambda m: -m["test_accuracy"]):
        h = safe_name(m["arch_hash"], "arch_hash", ValueError)
        spec = ArchSpec.from_json((args.artifacts / "promote" / study / h / "arch.json").read_text())
        if spec.network_hash() not in nets:  # fusions of one network have one float twin
            nets.add(spec.network_hash())
            models.append((m, h, spec))
    rows = []
    for m, h, spec in models[:args.top]:
        t0 = time.perf_counter()
        twin = fit_float(lambda: FloatTwin(spec), splits.train_x[tr], splits.train_y[tr], epochs, seed)
        with torch.no_grad():
            pred = np.concatenate([twin(torch.from_numpy(splits.test_x[i:i + 1000])).argmax(1).numpy()
                                   for i in range(0, len(splits.test_x), 1000)])
        acc = float((pred == splits.test_y).mean())
        bn = sum(2 * x.num_features for x in twin.modules() if isinstance(x, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)))
        row = {"study": study, "arch_hash": h, "arch_desc": m["arch_desc"], "dataset": doc["dataset"],
               "epochs": epochs, "seed": seed, "binary_test_accuracy": m["reference_accuracy"],
               "float_test_accuracy": acc, "binary_model_bytes": m["model_bytes"],
               "float_weight_bytes": 4 * (twin.weight_count() + bn), "train_seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        old = json.loads(args.out.read_text()) if args.out.is_file() else []
        old = [r for r in old if (r["study"], r["arch_hash"], r["epochs"], r["seed"]) != (study, h, epochs, seed)]
        args.out.write_text(json.dumps(old + [row], indent=1) + "\n")
        print(f"{m['arch_desc']:36s} binary {row['binary_test_accuracy'] * 100:6.2f}% in {row['binary_model_bytes']:6d} B"
              f"  float {acc * 100:6.2f}% in {row['float_weight_bytes']:7d} B  (float - binary "
              f"{(acc - row['binary_test_accuracy']) * 100:+.2f} points, {row['float_weight_bytes'] / row['binary_model_bytes']:.1f}x "
              f"the bytes; {row['train_seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
