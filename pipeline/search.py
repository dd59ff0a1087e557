"""Stage `search`: the constrained multi-objective architecture search.

    python -m pipeline search device=curie ram_kb=15
    python -m pipeline search profile=smoke                 # the whole search in under 3 minutes
    python -m pipeline search sampler=nsga2 n_trials=100 latency_ms=50

Writes ${paths.artifacts}/search/<study>/: pareto.json, pareto.png, pareto.html, and per trained trial
trials/<arch hash>/folded.npz. The Optuna study lives in ${paths.artifacts}/search/optuna.db and the
MLflow runs in ${paths.artifacts}/mlflow.db unless `storage` / `mlflow.tracking_uri` say otherwise.
Running the same command again resumes the study up to `n_trials`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from .config import device, positive_int, positive_number, resolved
from .errors import UserError
from .report import print_table

FEASIBILITY_SAMPLES = 3000


def _budgets(d: dict):
    from search.study import Budgets

    ram_kb = positive_number(d, "ram_kb", allow_none=True)
    flash_kb = positive_number(d, "flash_kb", allow_none=True)
    lat = positive_number(d, "latency_ms", allow_none=True)
    return Budgets(None if ram_kb is None else int(ram_kb * 1024),
                   None if flash_kb is None else int(flash_kb * 1024), lat)


def _check_some_candidate_fits(space: dict, input_shape, classes: int, dev, budgets, seed: int) -> None:
    """Before any training: a space whose every candidate breaks a budget is the user's error."""
    from ebnn_core import latency_ms, memory_plan
    from search.space import RandomChooser, SmallestChooser, suggest_arch

    best: dict[str, float] = {}
    rnd = RandomChooser(seed)
    for i in range(FEASIBILITY_SAMPLES + 1):
        spec = suggest_arch(SmallestChooser() if i == 0 else rnd, space, input_shape, classes)
        mem = memory_plan(spec, dev, stack_bytes=0)  # static RAM only: a candidate failing it fails everything
        viol = budgets.violations(mem.ram_bytes, mem.flash_bytes, latency_ms(spec, dev))
        if all(v <= 0 for v in viol.values()):
            return
        for k, v in viol.items():
            best[k] = min(best.get(k, math.inf), v)
    key = max(best, key=lambda k: best[k])
    name = {"ram": "ram_kb", "flash": "flash_kb", "latency": "latency_ms"}[key]
    value = {"ram": budgets.ram_bytes / 1024 if budgets.ram_bytes else None,
             "flash": budgets.flash_bytes / 1024 if budgets.flash_bytes else None, "latency": budgets.latency_ms}[key]
    raise UserError(f"{name}={value:g}: no candidate of the search space fits "
                    f"(the closest of {FEASIBILITY_SAMPLES + 1} sampled is {best[key] * 100:.0f}% over); "
                    f"raise {name} or narrow the space")


def study_name(d: dict) -> str:
    """The study's name, also its folder under ${paths.artifacts}/search/: `study_name` or one built from
    names that must each be safe (ebnn_core.safe), so no value can point the folder elsewhere."""
    from ebnn_core.safe import safe_name

    if d.get("study_name"):
        v = d["study_name"]
        return safe_name(str(v) if isinstance(v, int) else v, "study_name", UserError)
    safe_name(d["dataset"]["name"], "dataset.name", UserError)
    safe_name(d["device"]["name"], "device.name", UserError)

    def g(v):
        return "none" if v is None else f"{v:g}"

    return f"{d['dataset']['name']}-{d['device']['name']}-ram{g(d.get('ram_kb'))}-lat{g(d.get('latency_ms'))}"


def trial_record(t) -> dict[str, Any]:
    """A complete trial as plain data (pareto.json, plots)."""
    m = {k: t.user_attrs.get(k) for k in ("val_accuracy", "ram_bytes", "flash_bytes", "model_bytes",
                                          "latency_ms_est", "train_seconds")}
    return {"number": t.number, "arch": t.user_attrs.get("arch"), "arch_hash": t.user_attrs.get("arch_hash"),
            "arch_desc": t.user_attrs.get("arch_desc"), "metrics": m, "values": list(t.values),
            "constraints": dict(t.constraints or {}), "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}


def search(cfg) -> dict:
    d = resolved(cfg)
    dev = device(d)
    budgets = _budgets(d)
    name = study_name(d)  # before any work: it names a folder
    n_trials = positive_int(d, "n_trials")
    timeout = positive_number(d, "timeout", allow_none=True)
    seed = d.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed={seed}: must be a non-negative integer")
    scr = d["screening"]
    positive_int(scr, "epochs", key_prefix="screening.")
    positive_int(scr, "batch_size", key_prefix="screening.")
    positive_int(scr, "train_subset", allow_none=True, key_prefix="screening.")
    positive_int(scr, "val_subset", allow_none=True, key_prefix="screening.")
    positive_number(scr, "lr", key_prefix="screening.")

    from search.space import SpaceError, check_space
    from search.study import MEMORY_OBJECTIVES

    if d.get("objective_memory") not in MEMORY_OBJECTIVES:
        raise UserError(f"objective_memory={d.get('objective_memory')}: choose one of {', '.join(MEMORY_OBJECTIVES)}")
    if d["sampler"].get("name") not in ("tpe", "nsga2", "random"):
        raise UserError(f"sampler.name={d['sampler'].get('name')}: choose one of tpe, nsga2, random")
    try:
        space = check_space(d["space"])
    except SpaceError as e:
        raise UserError(str(e)) from None
    ds = d["dataset"]
    input_shape, classes = tuple(ds["input_shape"]), int(ds["classes"])
    _check_some_candidate_fits(space, input_shape, classes, dev, budgets, seed)
    from search.space import SmallestChooser, suggest_arch
    from validation.stack import StackError, memory_plan_compiled

    try:  # the stack is the device compiler's figure: a missing toolchain is reported before any work
        memory_plan_compiled(suggest_arch(SmallestChooser(), space, input_shape, classes), dev)
    except StackError as e:
        raise UserError(str(e)) from None

    artifacts = Path(d["paths"]["artifacts"]).resolve()
    out = artifacts / "search" / name
    out.mkdir(parents=True, exist_ok=True)
    storage = d.get("storage") or f"sqlite:///{artifacts / 'search' / 'optuna.db'}"
    tracking = (d.get("mlflow") or {}).get("tracking_uri") or f"sqlite:///{artifacts / 'mlflow.db'}"

    from ebnn_core.data import DataError, ImageDataModule, load_splits
    from ebnn_core.folded import fold
    from ebnn_core.training import train as fit

    try:
        splits = load_splits(ds)
    except DataError as e:
        raise UserError(str(e)) from None

    def train_fn(spec) -> dict:
        dm = ImageDataModule(splits, batch_size=scr["batch_size"], val_size=ds["val_size"], seed=seed,
                             train_subset=scr.get("train_subset"), val_subset=scr.get("val_subset"))
        model, info = fit(spec, dm, epochs=scr["epochs"], lr=float(scr["lr"]), seed=seed,
                          progress=bool(d.get("progress", True)))
        path = fold(model, meta={"study": name, "fidelity": "screening"}).save(
            out / "trials" / spec.short_hash() / "folded.npz")
        return {**info, "folded_path": str(path)}

    import optuna

    from search.study import Objective, completed, feasible, make_sampler, open_study, pareto_trials
    from search.tracking import Tracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(name, storage, make_sampler(d["sampler"], seed))
    except ValueError as e:
        raise UserError(str(e)) from None
    tracker = Tracker(tracking, d["mlflow"]["experiment"], artifacts / "mlartifacts", study, d)
    stale = tracker.close_stale()
    done_before = len(completed(study))
    remaining = max(0, n_trials - done_before)
    print(f"study {name}: {done_before} trials done, running {remaining} more "
          f"(storage {storage}, MLflow {tracking})" + (f"; {stale} interrupted trial runs closed" if stale else ""))

    def report(study_, trial) -> None:
        if trial.state != optuna.trial.TrialState.COMPLETE:
            return
        ua = trial.user_attrs
        how = ("infeasible, not trained" if not ua.get("feasible") else
               f"reused trial {ua['reused_from']}" if "reused_from" in ua else f"trained {ua.get('train_seconds', 0):.1f}s")
        print(f"trial {trial.number:>3}  {ua.get('arch_desc', ''):<40} acc {trial.values[0]:.4f}  "
              f"ram {ua.get('ram_bytes')} B  {ua.get('latency_ms_est', 0):.2f} ms  ({how})", flush=True)

    objective = Objective(space, input_shape, classes, dev, budgets, d["objective_memory"], train_fn,
                          on_start=tracker.on_start, on_result=tracker.on_result, on_fail=tracker.on_fail,
                          memory_fn=memory_plan_compiled)
    t0 = time.perf_counter()
    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[report], gc_after_trial=True)
    seconds = time.perf_counter() - t0

    trials = [trial_record(t) for t in completed(study)]
    feas = [trial_record(t) for t in completed(study) if feasible(t)]
    pareto = [trial_record(t) for t in pareto_trials(study)]
    from ebnn_core.paper import rows as paper_rows
    from search.plots import pareto_html, pareto_png

    title = f"{name}: {len(pareto)} Pareto-optimal of {len(feas)} feasible / {len(trials)} trials"
    paper = paper_rows(ds["name"])
    files = [pareto_png(feas, pareto, paper, out / "pareto.png", title),
             pareto_html(feas, pareto, paper, out / "pareto.html", title)]
    doc = {"study": name, "storage": storage, "mlflow_tracking_uri": tracking,
           "mlflow_parent_run_id": tracker.parent_id, "objectives": ["val_accuracy", d["objective_memory"], "latency_ms_est"],
           "budgets": {"ram_bytes": budgets.ram_bytes, "flash_bytes": budgets.flash_bytes,
                       "latency_ms": budgets.latency_ms},
           "device": dev.name, "dataset": ds["name"], "n_trials": len(trials), "n_feasible": len(feas),
           "pareto": pareto}
    pj = out / "pareto.json"
    pj.write_text(json.dumps(doc, indent=2) + "\n")
    files.append(pj)
    tracker.finish({t["number"] for t in pareto}, files,
                   {"n_trials": len(trials), "n_feasible": len(feas), "n_pareto": len(pareto),
                    "best_val_accuracy": max((t["metrics"]["val_accuracy"] for t in feas), default=0.0),
                    "search_seconds": seconds})
    print()
    print_table([{"trial": t["number"], "arch": t["arch_desc"], **t["metrics"]} for t in pareto],
                ["trial", "arch", "val_accuracy", "ram_bytes", "model_bytes", "latency_ms_est"])
    print(f"\nwrote {pj}\nbrowse: mlflow ui --backend-store-uri {tracking} --host 127.0.0.1  "
          f"(filter: tags.pareto = 'true')")
    return doc
