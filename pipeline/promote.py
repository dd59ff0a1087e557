"""Stage `promote`: the study's Pareto-optimal models retrained at full fidelity, scored on the test set,
folded and registered in the MLflow Model Registry.

    python -m pipeline promote device=curie ram_kb=15          # the overrides of the search it follows
    python -m pipeline promote profile=smoke select=top_k top_k=2

Reads ${paths.artifacts}/search/<study>/pareto.json; writes ${paths.artifacts}/promote/<study>/: one folder
per ArchSpec hash (folded.npz, arch.json, metrics.json: written last, it marks the model done) and
promoted.json. A model done with the same fidelity is not trained again; a registered version of the
same ArchSpec is reused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts as A
from .config import device, positive_int, positive_number, resolved
from .errors import UserError
from reports.tables import print_table

SELECT = ("all", "top_k")


def hypervolume_rank(pareto: list[dict], budgets: dict) -> list[int]:
    """Indices of the Pareto trials, largest exclusive hypervolume contribution first, in the space of
    (1 - accuracy, memory / budget, latency / budget) (a missing budget: the front's largest value)."""
    from search.hypervolume import contributions

    pts = np.array([[1.0 - t["values"][0], t["values"][1], t["values"][2]] for t in pareto], dtype=float)
    scale = np.array([1.0, budgets.get("ram_bytes") or pts[:, 1].max() or 1.0,
                      budgets.get("latency_ms") or pts[:, 2].max() or 1.0])
    ref = np.array([1.0, 1.0, 1.0]) * 1.0001
    contrib = contributions(np.minimum(pts / scale, 1.0), ref)
    return [int(i) for i in np.argsort(-contrib, kind="stable")]


def _fidelity(d: dict) -> dict[str, Any]:
    from .config import recipe

    f = d.get("fidelity") or {}
    return {"epochs": positive_int(f, "epochs", key_prefix="fidelity."), "recipe": recipe(d, "fidelity.recipe").as_dict(),
            "batch_size": positive_int(f, "batch_size", key_prefix="fidelity."),
            "lr": positive_number(f, "lr", key_prefix="fidelity."),
            "train_subset": positive_int(f, "train_subset", allow_none=True, key_prefix="fidelity."),
            "seed": d.get("seed"), "dataset": d["dataset"]["name"], "val_size": d["dataset"]["val_size"]}


def promote(cfg) -> dict:
    d = resolved(cfg)
    dev = device(d)
    from ebnn_core.safe import safe_name

    from .search import study_name

    name = study_name(d)
    seed = d.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed={seed}: must be a non-negative integer")
    fid = _fidelity(d)
    select = d.get("select")
    if select not in SELECT:
        raise UserError(f"select={select}: choose one of {', '.join(SELECT)}")
    top_k = positive_int(d, "top_k") if select == "top_k" else None
    arts = Path(d["paths"]["artifacts"]).resolve()
    pj = A.pareto_json(arts, name)
    if not pj.is_file():
        raise UserError(f"study_name={name}: no study there ({pj} is missing); run python -m pipeline search "
                        "with the same overrides first")
    try:
        doc = json.loads(pj.read_text())
        pareto = list(doc["pareto"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"study_name={name}: {pj} is not a pareto.json ({e})") from None
    if not pareto:
        raise UserError(f"study_name={name}: the study has no feasible trial to promote; widen its budgets or "
                        "run more trials")
    registry = safe_name(d["registry"].get("name") or f"ebnn-{name}", "registry.name", UserError)
    tracking = (d.get("mlflow") or {}).get("tracking_uri") or doc.get("mlflow_tracking_uri") or \
        f"sqlite:///{arts / 'mlflow.db'}"
    from tracking.registry import Registry, RegistryError

    try:
        reg = Registry(tracking, d["mlflow"]["experiment"], arts / "mlartifacts", registry, name, dev.name)
    except RegistryError as e:
        raise UserError(str(e)) from None

    order = hypervolume_rank(pareto, doc.get("budgets") or {}) if select == "top_k" else range(len(pareto))
    chosen = [pareto[i] for i in order][:top_k] if top_k else [pareto[i] for i in order]
    from ebnn_core import ArchSpec, FoldedModel, latency_ms
    from ebnn_core.data import DataError, load_splits
    from ebnn_core.recipe import Recipe
    from ebnn_core.training import fit_fold_score
    from validation.stack import StackError, memory_plan_compiled

    try:
        splits = load_splits(d["dataset"])
    except DataError as e:
        raise UserError(str(e)) from None
    out = A.promote_dir(arts, name)
    models = []
    networks: dict = {}  # network hash -> (folded, info, arch hash) trained by this run or promoted before
    for k, t in enumerate(chosen, 1):
        spec = ArchSpec.from_dict(t["arch"])
        h = spec.short_hash()
        folder = out / h
        mpath = folder / "metrics.json"
        prior = json.loads(mpath.read_text()) if mpath.is_file() else None
        if prior and prior.get("fidelity") == fid and (folder / "folded.npz").is_file():
            metrics = prior
            print(f"[{k}/{len(chosen)}] {spec.describe()}: promoted before with the same fidelity, reused", flush=True)
            networks.setdefault(spec.network_hash(), (FoldedModel.load(folder / "folded.npz"), prior,
                                                      prior.get("weights_from", h)))
        else:
            meta = {"arch_name": h, "study": name, "trial": t["number"], "fidelity": "full", "dataset": fid["dataset"]}
            net = spec.network_hash()
            weights_from = None
            if net in networks:  # the same network with another fusion: the same weights, trained once
                other, info, weights_from = networks[net]
                meta["weights_from"] = weights_from
                folded = FoldedModel(spec=spec, layers=other.layers, meta=meta)
                print(f"[{k}/{len(chosen)}] {spec.describe()}: the weights of {other.spec.describe()} "
                      "(another fusion)", flush=True)
            else:
                print(f"[{k}/{len(chosen)}] {spec.describe()}: training {fid['epochs']} epochs", flush=True)
                folded, info = fit_fold_score(
                    spec, splits, epochs=fid["epochs"], batch_size=fid["batch_size"], lr=fid["lr"], seed=seed,
                    val_size=fid["val_size"], train_subset=fid["train_subset"],
                    recipe=Recipe.from_dict(fid["recipe"]), meta=meta, progress=bool(d.get("progress", True)))
                networks[net] = (folded, info, h)
            try:
                mem = memory_plan_compiled(folded, dev)
            except StackError as e:
                raise UserError(str(e)) from None
            folder.mkdir(parents=True, exist_ok=True)
            folded.save(folder / "folded.npz")
            (folder / "arch.json").write_text(spec.to_json() + "\n")
            metrics = {"arch_hash": h, "arch_desc": spec.describe(), "trial": t["number"], "study": name,
                       "device": dev.name, "fidelity": fid,
                       "screening_val_accuracy": t["metrics"].get("screening_val_accuracy",
                                                                  t["metrics"].get("val_accuracy")),
                       "search_val_accuracy": t["metrics"].get("val_accuracy"),  # at its highest rung
                       "search_fidelity": t.get("fidelity", {"name": "screening"}),
                       **{key: info[key] for key in ("test_accuracy", "reference_accuracy", "disagreements",
                                                     "test_images")},
                       "val_accuracy": info.get("val_accuracy"),
                       # 0: the weights are those of the promoted ArchSpec weights_from (another fusion)
                       "train_seconds": 0.0 if weights_from else round(info["train_seconds"], 2),
                       **({"weights_from": weights_from} if weights_from else {}),
                       **{key: v for key, v in mem.as_dict().items() if key != "params_in"},
                       "latency_ms_est": round(latency_ms(spec, dev), 4)}
            mpath.write_text(json.dumps(metrics, indent=2) + "\n")  # last: the model is done
        FoldedModel.load(folder / "folded.npz")  # a file we are about to register must read back
        version, run_id = reg.register(h, folder, metrics, {"device": dev.name, "budgets": doc.get("budgets")})
        models.append({**{key: metrics[key] for key in ("arch_hash", "arch_desc", "trial", "test_accuracy",
                                                          "reference_accuracy", "disagreements", "ram_bytes",
                                                          "flash_bytes", "model_bytes", "latency_ms_est")},
                       "folded": str(folder / "folded.npz"), "registry_version": version, "mlflow_run_id": run_id})
    result = {"study": name, "device": dev.name, "dataset": d["dataset"]["name"], "budgets": doc.get("budgets"),
              "select": select, "top_k": top_k, "fidelity": fid, "registry": registry, "mlflow_tracking_uri": tracking,
              "pareto_json": str(pj), "models": models}
    out.mkdir(parents=True, exist_ok=True)
    A.promoted_json(arts, name).write_text(json.dumps(result, indent=2) + "\n")
    A.promote_metrics_json(arts, name).parent.mkdir(parents=True, exist_ok=True)
    A.promote_metrics_json(arts, name).write_text(json.dumps(
        {m["arch_hash"]: {k: m[k] for k in ("test_accuracy", "ram_bytes", "model_bytes", "latency_ms_est")}
         for m in models}, indent=2) + "\n")
    print()
    print_table(models, ["trial", "arch_desc", "test_accuracy", "disagreements", "ram_bytes", "latency_ms_est",
                         "registry_version"])
    print(f"\nwrote {A.promoted_json(arts, name)}; registry: {registry} ({len(models)} versions)")
    host = tracking.rstrip("/") if tracking.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    print(f"browse: {reg.ui_url(host)}  (Model registry: {registry})")
    return result
