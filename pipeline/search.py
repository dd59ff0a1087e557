"""Stage `search`: the constrained multi-objective architecture search.

    python -m pipeline search device=curie ram_kb=15
    python -m pipeline search profile=smoke                 # the whole search in under 3 minutes
    python -m pipeline search sampler=nsga2 n_trials=100 latency_ms=50

Writes ${paths.artifacts}/search/<study>/: pareto.json, pareto.png, pareto.html, and per trained trial
trials/<arch hash>/folded.npz. The Optuna study lives in ${paths.artifacts}/search/optuna.db and the
MLflow runs in ${paths.artifacts}/mlflow.db unless `storage` / `mlflow.tracking_uri` say otherwise.
Running the same command again resumes the study up to `n_trials`, the study's total over every
worker: many workers share one study through `storage=` (PostgreSQL) and `mlflow.tracking_uri=` (an
MLflow tracking server), see search.study for the claims that keep the count exact. Storage, tracking
URI and artefacts folder are checked before any work, creating nothing (search.stores). SIGINT and
SIGTERM fail the running trial in Optuna, mark its MLflow run KILLED, close the parent run and exit
130 / 143 (search.interrupts).
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from .config import device, positive_int, positive_number, resolved
from .errors import UserError
from reports.tables import print_table

FEASIBILITY_SAMPLES = 3000
MAX_TRIALS_FACTOR = 4  # max_trials: null bounds every trial, repeats included, at 4 x n_trials


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
    the dataset, device, budgets and the search profile (unless `default`), names that must each be safe (ebnn_core.safe), so no value can point the folder elsewhere."""
    from ebnn_core.safe import safe_name

    if d.get("study_name"):
        v = d["study_name"]
        return safe_name(str(v) if isinstance(v, int) else v, "study_name", UserError)
    safe_name(d["dataset"]["name"], "dataset.name", UserError)
    safe_name(d["device"]["name"], "device.name", UserError)

    def g(v):
        return "none" if v is None else f"{v:g}"

    name = f"{d['dataset']['name']}-{d['device']['name']}-ram{g(d.get('ram_kb'))}-lat{g(d.get('latency_ms'))}"
    profile = d.get("profile_name") or "default"
    if profile != "default":  # a profile screens at another fidelity: its trials are another study's
        name += "-" + safe_name(profile, "profile_name", UserError)
    return name


def browse_hints(tracking_uri: str, experiment_id: str, storage: str, view: str | None = None) -> list[str]:
    """How to look at a study: the MLflow UI (the study's saved view: its Pareto set with the key metrics)
    and optuna-dashboard (objectives by name)."""
    import shlex

    from tracking.client import ui_url

    server = tracking_uri.startswith(("http://", "https://"))
    host = tracking_uri.rstrip("/") if server else "http://127.0.0.1:5000"
    lines = [] if server else [f"browse: .venv/bin/mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} "
                               "--host 127.0.0.1"]
    lines.append(f"        then {ui_url(experiment_id, host, view)}  (the Pareto set; Views: every trial)")
    if "***" not in storage:  # a password would have to be typed again; say nothing half-right
        lines.append(f"        or .venv/bin/optuna-dashboard {shlex.quote(storage)}  (http://127.0.0.1:8080)")
    return lines


def trial_record(t, figures: dict | None = None, fidelities: list[dict] | None = None) -> dict[str, Any]:
    """A complete trial as plain data (pareto.json, plots). `figures`: its ArchSpec's best figures
    (search.rungs.best_figures): val_accuracy is then the highest rung's, `fidelity` says which
    (fidelities[rung]), and the screening figure stays as screening_val_accuracy."""
    ua = t.user_attrs
    m = {k: ua.get(k) for k in ("val_accuracy", "ram_bytes", "flash_bytes", "model_bytes", "latency_ms_est",
                                "train_seconds")}
    m["latency_ms"] = ua.get("latency_ms", m["latency_ms_est"])  # the figure the search used
    rec = {"number": t.number, "latency_source": ua.get("latency_source", "model"), "arch": ua.get("arch"),
           "arch_hash": ua.get("arch_hash"), "arch_desc": ua.get("arch_desc"), "metrics": m,
           "values": list(t.values), "constraints": dict(t.constraints or {}),
           "mlflow_run_id": ua.get("mlflow_run_id")}
    if figures is not None and fidelities:
        m["screening_val_accuracy"] = m["val_accuracy"]
        m["val_accuracy"] = figures["val_accuracy"]
        rec["fidelity"] = fidelities[figures["rung"]]
    return rec


def _places(d: dict, artifacts_value) -> tuple[Path, str, str]:
    """(artifacts folder, storage URL, tracking URI), each checked before any work and without creating
    anything: a wrong one is a UserError naming the key and the value."""
    from search.stores import PlaceError, check_folder, check_storage, check_tracking_uri

    try:
        artifacts = check_folder(str(artifacts_value), "paths.artifacts")
        storage = d.get("storage") or f"sqlite:///{artifacts / 'search' / 'optuna.db'}"
        tracking = (d.get("mlflow") or {}).get("tracking_uri") or f"sqlite:///{artifacts / 'mlflow.db'}"
        for given, url, key, check in ((d.get("storage"), storage, "storage", check_storage),
                                       ((d.get("mlflow") or {}).get("tracking_uri"), tracking, "mlflow.tracking_uri",
                                        check_tracking_uri)):
            try:
                check(url, key)
            except PlaceError as e:
                if given:
                    raise
                raise PlaceError("paths.artifacts", str(artifacts_value), e.why) from None
    except PlaceError as e:
        raise UserError(str(e)) from None
    return artifacts, storage, tracking


def _write_atomic(path: Path, text: str) -> Path:
    """Several workers finish one study together: each file appears whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def search(cfg) -> dict:
    """The stage; SIGINT and SIGTERM end it with search.interrupts.Interrupted (exit 130 / 143)."""
    from search.interrupts import SignalGuard

    with SignalGuard() as guard:
        with guard.raising():
            job = _prepare(cfg, guard)
        return _run(job, guard)


def _prepare(cfg, guard) -> dict:
    d = resolved(cfg)
    dev = device(d)
    budgets = _budgets(d)
    name = study_name(d)  # before any work: it names a folder
    n_trials = positive_int(d, "n_trials")
    max_trials = positive_int(d, "max_trials", allow_none=True)
    if max_trials is None:
        max_trials = MAX_TRIALS_FACTOR * n_trials
    elif max_trials < n_trials:
        raise UserError(f"max_trials={max_trials}: must be at least n_trials={n_trials} (it bounds every trial, "
                        "repeats of an evaluated ArchSpec included)")
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
    from .config import recipe

    scr_recipe = recipe(d, "screening.recipe")
    from search.rungs import RungError, parse_rungs

    try:
        rungs = parse_rungs(d.get("rungs"))
    except RungError as e:
        raise UserError(str(e)) from None

    from search.space import SpaceError, check_space
    from search.study import LATENCY_SOURCES, MEMORY_OBJECTIVES

    if d.get("objective_memory") not in MEMORY_OBJECTIVES:
        raise UserError(f"objective_memory={d.get('objective_memory')}: choose one of {', '.join(MEMORY_OBJECTIVES)}")
    latency_source = d.get("latency_source")
    if latency_source not in LATENCY_SOURCES:
        raise UserError(f"latency_source={latency_source}: choose one of {', '.join(LATENCY_SOURCES)}")
    from search.study import check_sampler

    try:
        check_sampler(d["sampler"])
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        space = check_space(d["space"])
    except SpaceError as e:
        raise UserError(str(e)) from None
    # where the study lives: checked before any work, nothing created yet
    artifacts, storage, tracking = _places(d, d["paths"]["artifacts"])
    ds = d["dataset"]
    input_shape, classes = tuple(ds["input_shape"]), int(ds["classes"])
    _check_some_candidate_fits(space, input_shape, classes, dev, budgets, seed)
    from search.space import SmallestChooser, suggest_arch
    from validation.stack import StackError, memory_plan_compiled

    try:  # the stack is the device compiler's figure: a missing toolchain is reported before any work
        memory_plan_compiled(suggest_arch(SmallestChooser(), space, input_shape, classes), dev)
    except StackError as e:
        raise UserError(str(e)) from None
    latency_fn = None
    if latency_source == "emulator":
        from validation.latency import LatencyError, check_measurable, measure_latency

        try:  # the emulator that measures each candidate: a missing one is reported before any work
            check_measurable(dev)
        except LatencyError as e:
            raise UserError(f"latency_source=emulator: {e} (latency_source=model uses the latency model "
                            "alone)") from None

        def latency_fn(spec, dv):
            return measure_latency(spec, dv)["latency_ms"]

    from ebnn_core.data import DataError, load_splits

    try:
        splits = load_splits(ds)
    except DataError as e:
        raise UserError(str(e)) from None

    import optuna

    from search.stores import shown
    from search.study import make_sampler, open_study
    from tracking.runs import Tracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    holder: dict = {}

    def on_stale(study_, trial_) -> None:  # this process failed a killed worker's trial: close its run
        if "tracker" in holder:
            try:
                holder["tracker"].close_stale()
            except Exception:
                pass

    try:
        study, created = open_study(name, storage, make_sampler(d["sampler"], seed), on_stale=on_stale,
                                    metric_names=["val_accuracy", d["objective_memory"], LATENCY_SOURCES[latency_source]])
    except ValueError as e:
        raise UserError(str(e)) from None
    _same_space(study, space, name)
    mlflow_artifacts = None if tracking.startswith(("http://", "https://")) else artifacts / "mlartifacts"
    tracker = Tracker(tracking, d["mlflow"]["experiment"], mlflow_artifacts, study, d, created=created)
    holder["tracker"] = tracker
    out = artifacts / "search" / name
    out.mkdir(parents=True, exist_ok=True)
    return {"d": d, "dev": dev, "budgets": budgets, "name": name, "n_trials": n_trials, "max_trials": max_trials,
            "timeout": timeout,
            "seed": seed, "scr": scr, "space": space, "ds": ds, "input_shape": input_shape, "classes": classes,
            "splits": splits, "study": study, "tracker": tracker, "out": out, "storage": storage,
            "tracking": tracking, "storage_shown": shown(storage), "tracking_shown": shown(tracking),
            "memory_fn": memory_plan_compiled, "latency_fn": latency_fn, "recipe": scr_recipe,
            "rungs": rungs, "latency_source": latency_source}


_PARAM_KEY = re.compile(r"^(?:c\d+_(filters|kernel|stride|padding|pool|pool_overlap|fusion|growth)|d\d+_(units)|"
                        r"(conv_blocks|dense_blocks|input_mode))$")


def _same_space(study, space: dict, name: str) -> None:
    """A study keeps the search space it was started with (study user attribute `space`): its sampler's
    model and its trials' parameters mean nothing in another one (and Optuna's storage refuses a
    categorical parameter whose choices changed). A study of a version before the attribute is checked
    against its trials' parameter distributions, then takes the space."""
    want = {k: v for k, v in json.loads(json.dumps(space, sort_keys=True)).items() if v is not None}

    def refuse(key: str, had) -> None:
        raise UserError(f"space.{key}={want.get(key)}: the study {name} was searched with space.{key}={had}; "
                        "keep the space or choose another study_name")

    have = study.user_attrs.get("space")
    if have is None:
        import optuna

        for t in study.get_trials(deepcopy=False):
            for param, dist in t.distributions.items():
                m = _PARAM_KEY.match(param)
                if not m:
                    continue
                key = next(g for g in m.groups() if g)
                key = "filter_growth" if key == "growth" else key
                if isinstance(dist, optuna.distributions.CategoricalDistribution):
                    if list(dist.choices) != list(want.get(key) or []):
                        refuse(key, list(dist.choices))
                elif [dist.low, dist.high] != list(want.get(key) or []):
                    refuse(key, [dist.low, dist.high])
        study.set_user_attr("space", want)
        return
    have = {k: v for k, v in have.items() if v is not None}
    if have != want:
        key = next(k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k))
        refuse(key, have.get(key))


def _run(job: dict, guard) -> dict:
    import optuna

    from ebnn_core.training import fit_fold_score
    from search.interrupts import Interrupted
    from search.study import Objective, budget_counts, completed, feasible, is_free, is_repeat, run_worker

    d, name, study, tracker, out = job["d"], job["name"], job["study"], job["tracker"], job["out"]
    scr, ds, seed, splits, n_trials = job["scr"], job["ds"], job["seed"], job["splits"], job["n_trials"]

    def train_fn(spec) -> dict:
        folded, info = fit_fold_score(spec, splits, epochs=scr["epochs"], batch_size=scr["batch_size"],
                                      lr=float(scr["lr"]), seed=seed, val_size=ds["val_size"],
                                      train_subset=scr.get("train_subset"), val_subset=scr.get("val_subset"),
                                      meta={"study": name, "fidelity": "screening", "dataset": ds["name"]},
                                      progress=bool(d.get("progress", True)), score_test=False,
                                      recipe=job["recipe"])
        path = folded.save(
            out / "trials" / spec.short_hash() / "folded.npz")
        return {**info, "folded_path": str(path)}

    stale = tracker.close_stale()
    before = budget_counts(study)
    remaining = max(0, n_trials - before.done)
    print(f"study {name}: {before.done} trials done"
          + (f" (+{before.repeats} repeats of an evaluated network, not counted)" if before.repeats else "")
          + f", running {remaining} more (storage {job['storage_shown']}, MLflow {job['tracking_shown']})"
          + (f"; {before.running} running in other workers" if before.running and remaining else "")
          + (f"; {stale} interrupted trial runs closed" if stale else ""), flush=True)

    clock = {"start": time.perf_counter(), "new": 0}

    def progress(study_) -> str:
        """'k of N done, ETA ..., best feasible ...': the study's total, whoever ran the trials."""
        complete = study_.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        k = sum(1 for t in complete if not is_free(t))
        per = (time.perf_counter() - clock["start"]) / max(clock["new"], 1)  # repeats cost next to nothing
        eta = max(0, n_trials - k) * per
        feas = [t for t in complete if t.user_attrs.get("feasible")]
        best = max(feas, key=lambda t: t.values[0], default=None)
        best_s = (f"best feasible {best.values[0]:.4f} (trial {best.number}, {best.user_attrs.get('ram_bytes')} B)"
                  if best else "no feasible trial yet")
        reps = len(complete) - k
        return f"{k} of {n_trials} done{f' (+{reps} repeats)' if reps else ''}, ETA {eta / 60:.1f} min, {best_s}"

    def report(study_, trial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            ua = trial.user_attrs
            clock["new"] += 0 if is_free(trial) else 1
            how = (f"repeat of trial {ua['repeat_of']}, infeasible" if not ua.get("feasible") and is_repeat(trial) else
                   "infeasible, not trained" if not ua.get("feasible") else
                   f"reused trial {ua['reused_from']}, same network, other fusion" if ua.get("sibling_of") is not None else
                   f"reused trial {ua['reused_from']}" if "reused_from" in ua else f"trained {ua.get('train_seconds', 0):.1f}s")
            acc = f"acc {trial.values[0]:.4f}" if ua.get("feasible") else "not trained"
            print(f"trial {trial.number:>3}  {ua.get('arch_desc', ''):<40} {acc}  "
                  f"ram {ua.get('ram_bytes')} B  {ua.get('latency_ms', ua.get('latency_ms_est', 0)):.2f} ms "
                  f"({ua.get('latency_source', 'model')})  ({how}); "
                  f"{progress(study_)}", flush=True)
        elif trial.state == optuna.trial.TrialState.PRUNED:
            print(f"trial {trial.number:>3}  not run: the last slots of the study were taken by other workers", flush=True)
        tracker.close_stale()

    def on_train(trial, spec) -> None:
        print(f"trial {trial.number:>3}  training {spec.describe()}", flush=True)

    def on_wait_spec(trial, why) -> None:
        print(f"trial {trial.number:>3}  waiting: {why}", flush=True)

    def on_wait_slots(held) -> None:
        print(f"waiting: the last {held} trial(s) of the study are running in other workers", flush=True)

    def on_result(res) -> None:
        """An ArchSpec that took another fusion's trained network gets its own folded file (the trained
        layers, its own spec), so `codegen trial=N` builds its C like any other trial's."""
        if res.reused_from is not None:
            dst = out / "trials" / res.spec.short_hash() / "folded.npz"
            src_h = study.trials[res.reused_from].user_attrs.get("arch_hash")
            src = out / "trials" / str(src_h) / "folded.npz"
            if not dst.is_file() and src.is_file():
                from ebnn_core import FoldedModel

                fm = FoldedModel.load(src)
                FoldedModel(spec=res.spec, layers=fm.layers, meta={**fm.meta, "weights_from": src_h}).save(dst)
        tracker.on_result(res)

    objective = Objective(job["space"], job["input_shape"], job["classes"], job["dev"], job["budgets"],
                          d["objective_memory"], train_fn, on_start=tracker.on_start, on_result=on_result,
                          on_fail=tracker.on_fail, memory_fn=job["memory_fn"], latency_fn=job["latency_fn"], n_trials=n_trials, guard=guard,
                          on_train=on_train, on_wait=on_wait_spec, max_trials=job["max_trials"])
    rungs = job["rungs"]

    def train_at(spec, index, rung) -> dict:
        folded, info = fit_fold_score(spec, splits, epochs=rung.epochs, batch_size=scr["batch_size"],
                                      lr=float(scr["lr"]), seed=seed, val_size=ds["val_size"],
                                      train_subset=rung.train_subset, val_subset=None,
                                      meta={"study": name, "fidelity": f"rung{index}", "dataset": ds["name"]},
                                      progress=bool(d.get("progress", True)), score_test=False,
                                      recipe=job["recipe"])
        folded.save(out / "trials" / spec.short_hash() / f"rung{index}" / "folded.npz")
        return info

    def on_rung_start(index, spec, k, n) -> None:
        print(f"rung {index} ({rungs[index - 1].epochs} epochs): training {k} of {n}, {spec.describe()}", flush=True)

    def on_rung_result(index, h, record) -> None:
        print(f"rung {index}: trial {record['trial']} val_accuracy {record['val_accuracy']:.4f} "
              f"(trained {record['train_seconds']:.1f}s)", flush=True)
        tracker.on_rung(index, record)

    t0 = time.perf_counter()
    try:
        run_worker(study, objective, n_trials, timeout=job["timeout"], guard=guard, callbacks=[report],
                   on_wait=on_wait_slots, max_trials=job["max_trials"])
        if rungs and budget_counts(study).done >= n_trials:  # the screening is complete: the rungs
            from search.rungs import run_rungs

            with guard.raising():
                run_rungs(study, rungs, train_at, on_start=on_rung_start, on_result=on_rung_result)
    except Interrupted as e:
        try:
            tracker.close_parent("KILLED")
        except Exception:
            pass
        e.detail = (e.detail + "; " if e.detail else "") + "the same command resumes the study"
        raise
    seconds = time.perf_counter() - t0
    after = budget_counts(study)
    if after.done < n_trials and after.all_done >= job["max_trials"]:
        print(f"stopped at max_trials={job['max_trials']}: {after.repeats} of the trials repeated a network "
              f"already evaluated, {after.done} of n_trials={n_trials} are new (the sampler may have exhausted "
              "the space; widen it or raise max_trials)", flush=True)
    # the whole study's time, not this invocation's: every invocation (and worker) adds its own
    total_seconds = float(study.user_attrs.get("search_seconds", 0.0)) + seconds
    study.set_user_attr("search_seconds", total_seconds)
    times = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    span = (max(t.datetime_complete for t in times) - min(t.datetime_start for t in times)).total_seconds() \
        if times else 0.0
    try:  # the finish phase: a signal here also closes the parent run as KILLED
        with guard.raising():
            from search.rungs import best_figures, front

            fids = [{"name": "screening", "epochs": scr["epochs"], "train_subset": scr.get("train_subset")}]
            fids += [r.fidelity(i) for i, r in enumerate(rungs, start=1)]
            best = best_figures(study, rungs)

            def record(t):
                return trial_record(t, best.get(t.user_attrs.get("arch_hash")) if feasible(t) else None, fids)

            trials = [record(t) for t in completed(study)]
            n_new = sum(1 for t in completed(study) if not is_free(t))
            feas = [record(t) for t in completed(study) if feasible(t)]
            pareto = [record(t) for t, _ in front(study, rungs)]
            from ebnn_core.paper import rows as paper_rows
            from reports.plots import pareto_html, pareto_png

            title = f"{name}: {len(pareto)} Pareto-optimal of {len(feas)} feasible / {len(trials)} trials"
            paper = paper_rows(ds["name"])
            png_tmp = out / f".pareto.{os.getpid()}.png"
            pareto_png(feas, pareto, paper, png_tmp, title)
            os.replace(png_tmp, out / "pareto.png")
            html_tmp = out / f".pareto.{os.getpid()}.html"
            pareto_html(feas, pareto, paper, html_tmp, title)
            os.replace(html_tmp, out / "pareto.html")
            files = [out / "pareto.png", out / "pareto.html"]
            budgets, dev = job["budgets"], job["dev"]
            doc = {"study": name, "storage": job["storage_shown"], "mlflow_tracking_uri": job["tracking_shown"],
                   "mlflow_parent_run_id": tracker.parent_id, "objectives": list(study.metric_names or []),
                   "latency_source": job["latency_source"],
                   "budgets": {"ram_bytes": budgets.ram_bytes, "flash_bytes": budgets.flash_bytes,
                               "latency_ms": budgets.latency_ms},
                   "device": dev.name, "dataset": ds["name"], "n_trials": n_new, "n_repeats": len(trials) - n_new,
                   "n_feasible": len(feas), "pareto": pareto}
            pj = _write_atomic(out / "pareto.json", json.dumps(doc, indent=2) + "\n")
            files.append(pj)
            tracker.finish({t["number"] for t in pareto}, files,
                           {"n_trials": n_new, "n_repeats": len(trials) - n_new, "n_feasible": len(feas),
                            "n_pareto": len(pareto),
                            "best_val_accuracy": max((t["metrics"]["val_accuracy"] for t in feas), default=0.0),
                            "search_seconds": total_seconds, "invocation_seconds": seconds,
                            "study_span_seconds": span})
    except Interrupted as e:
        try:
            tracker.close_parent("KILLED")
        except Exception:
            pass
        e.detail = "while writing the results; the same command writes them again"
        raise
    print()
    print_table([{"trial": t["number"], "arch": t["arch_desc"], **t["metrics"],
                  "fidelity": t.get("fidelity", {}).get("name", "screening")} for t in pareto],
                ["trial", "arch", "val_accuracy", "fidelity", "ram_bytes", "model_bytes", "latency_ms", "latency_ms_est"])
    print(f"\nwrote {pj}")
    for line in browse_hints(job["tracking_shown"], tracker.experiment_id, job["storage_shown"],
                             getattr(tracker, "view", None)):
        print(line)
    return doc
