"""Training-recipe ablation: what moves a binary network's test accuracy, each variant against the
baseline recipe measured in the same run (same architectures, epochs, seeds and data).

    .venv/bin/python bench/bench_recipe.py [--epochs 5] [--seeds 0 1] [--variants baseline shift2 ...]
                                           [--archs A B C] [--train-subset N] [--out bench/recipe.json]

For every architecture, variant and seed: train with ebnn_core.training.fit_fold_score (full MNIST
training split less 5,000 validation images unless --train-subset), score the folded integer
reference on the 10,000 test images. Prints per variant the mean test accuracy over the seeds, its
difference to the baseline per architecture, and the wall time ratio. The teacher (variants with
`teacher`) is trained once per data set and seed and cached (its time is printed apart). Results are
appended to --out as they come (a killed run keeps what it measured and resumes where it stopped).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ebnn_core import ArchSpec  # noqa: E402
from ebnn_core.recipe import Recipe  # noqa: E402

# representative architectures: the default run's most accurate model (binary input, one pooled conv),
# the paper's MLP-1 preset (binary dense) and a two-conv uint8 network of the search space
ARCHS = {
    "bin-C12k5P3s2u": {"input_mode": "binary", "blocks": [
        {"kind": "conv", "filters": 12, "kernel": 5, "pool": 3, "pool_stride": 2, "fusion": "unfused"}]},
    "mlp-1": None,  # conf/arch/mlp-1.yaml
    "u8-C16k3P2b-C32k3P2b-D64": {"input_mode": "uint8", "blocks": [
        {"kind": "conv", "filters": 16, "kernel": 3, "pool": 2, "fusion": "rowbuffer"},
        {"kind": "conv", "filters": 32, "kernel": 3, "pool": 2, "fusion": "rowbuffer"},
        {"kind": "dense", "units": 64}]},
}

VARIANTS: dict[str, dict] = {
    "baseline": {},
    "shift1": {"augment_shift": 1},
    "shift2": {"augment_shift": 2},
    "smooth0.1": {"label_smoothing": 0.1},
    "teacher0.5": {"teacher": 0.5},
    "teacher0.9": {"teacher": 0.9},
    "approxsign": {"ste": "approxsign"},
    "bn0.01": {"bn_momentum": 0.01},
    "cosine": {"schedule": "cosine"},
    "lr0.005": {"lr": 0.005},
    "lr0.05": {"lr": 0.05},
    "noclip": {"clip_weights": False},
    "shift1+teacher0.5": {"augment_shift": 1, "teacher": 0.5},
    "lr0.002": {"lr": 0.002},
    "approxsign+lr0.005": {"ste": "approxsign", "lr": 0.005},
}


def arch_spec(name: str) -> ArchSpec:
    import yaml

    d = ARCHS[name]
    if d is None:
        d = yaml.safe_load((ROOT / "conf" / "arch" / f"{name}.yaml").read_text())
    return ArchSpec.from_dict({"input_shape": (1, 28, 28), "classes": 10, "input_mode": d.get("input_mode", "uint8"),
                               "blocks": d["blocks"]})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--archs", nargs="+", default=list(ARCHS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "recipe.json")
    args = ap.parse_args(argv)
    for v in args.variants:
        if v not in VARIANTS:
            ap.error(f"--variants {v}: choose from {', '.join(VARIANTS)}")
    for a in args.archs:
        if a not in ARCHS:
            ap.error(f"--archs {a}: choose from {', '.join(ARCHS)}")

    from ebnn_core.data import load_mnist
    from ebnn_core.training import fit_fold_score

    splits = load_mnist()
    setting = {"epochs": args.epochs, "batch_size": args.batch_size, "train_subset": args.train_subset}
    done: list[dict] = []
    if args.out.is_file():
        done = [r for r in json.loads(args.out.read_text()) if r.get("setting") == setting]
    have = {(r["arch"], r["variant"], r["seed"]) for r in done}
    for seed in args.seeds:  # seed-major: a stopped run has every cell of the first seeds
        for arch in args.archs:
            spec = arch_spec(arch)
            for v in args.variants:
                if (arch, v, seed) in have:
                    continue
                opts = dict(VARIANTS[v])
                lr = float(opts.pop("lr", args.lr))
                recipe = Recipe.from_dict(opts)
                t0 = time.perf_counter()
                _, info = fit_fold_score(spec, splits, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                                         seed=seed, val_size=5000, train_subset=args.train_subset,
                                         progress=False, recipe=recipe)
                row = {"arch": arch, "variant": v, "seed": seed, "setting": setting,
                       "test_accuracy": info["reference_accuracy"], "torch_accuracy": info["test_accuracy"],
                       "val_accuracy": info.get("val_accuracy"), "train_seconds": info["train_seconds"],
                       "teacher": info.get("teacher"), "wall_seconds": time.perf_counter() - t0}
                done.append(row)
                all_rows = json.loads(args.out.read_text()) if args.out.is_file() else []
                args.out.write_text(json.dumps(all_rows + [row], indent=1) + "\n")
                print(f"{arch:28s} {v:20s} seed {seed}: test {row['test_accuracy'] * 100:.2f}%  "
                      f"train {row['train_seconds']:.0f} s", flush=True)
    report(done, args.archs, args.variants, args.seeds)
    return 0


def report_file(path: Path, seeds: list[int]) -> None:
    rows = json.loads(path.read_text())
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    report(rows, archs, variants, seeds)


def report(rows: list[dict], archs: list[str], variants: list[str], seeds: list[int]) -> None:
    import numpy as np

    def cell(arch, v, key):
        vals = [r[key] for r in rows if r["arch"] == arch and r["variant"] == v and r["seed"] in seeds]
        return float(np.mean(vals)) if len(vals) == len(seeds) else None

    print(f"\nmean test accuracy over seeds {seeds} (reference = folded integer model); delta vs baseline "
          "in points; time = train seconds / baseline's")
    print(f"{'variant':20s} " + " ".join(f"{a[:26]:>34s}" for a in archs) + f" {'mean delta':>11s}")
    for v in variants:
        parts, deltas = [], []
        for a in archs:
            acc, base = cell(a, v, "test_accuracy"), cell(a, "baseline", "test_accuracy")
            t, tb = cell(a, v, "train_seconds"), cell(a, "baseline", "train_seconds")
            if acc is None or base is None:
                parts.append(f"{'-':>34s}")
                continue
            deltas.append((acc - base) * 100)
            parts.append(f"{acc * 100:8.2f}% ({(acc - base) * 100:+.2f}, {t / tb:.2f}x time)".rjust(34))
        md = f"{np.mean(deltas):+.2f}" if deltas else "-"
        print(f"{v:20s} " + " ".join(parts) + f" {md:>11s}")


if __name__ == "__main__":
    raise SystemExit(main())
