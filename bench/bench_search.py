"""Search benchmarks, each against a baseline measured in the same run.

    .venv/bin/python bench/bench_search.py [--trials 30] [--screen-trials 4] [--parts 1,2,3,4]

1. The cost of an infeasible trial (scored by the memory and latency models, never trained) against
   the cost of a feasible trial trained at the default profile's screening fidelity; and the trials per
   hour that fidelity gives on this machine.
2. The hypervolume of the feasible Pareto front found by the default sampler (TPE), TPE with
   `group` (sampler.group=true) and random sampling, at the same trial budget and seed, with smoke-profile training. Objectives are normalised
   to [0, 1] (1 - accuracy, ram_bytes / budget, latency / budget) and the reference point is (1, 1, 1).
3. Repeats: the default sampler at `--trials` n_trials with a repeat of an evaluated ArchSpec not
   counted (today's rule, max_trials 4 x n_trials) against counted (the rule before: max_trials =
   n_trials, every trial uses the budget), same seed, smoke fidelity: hypervolume, wall time and
   hypervolume per hour.
4. Rungs: the same search (default sampler, seed, smoke screening fidelity) with the profile's rung
   (`--rung-epochs` on the whole training split, top `--rung-top`) against none, each with `--trials`
   n_trials. The two fronts (the rung one over each ArchSpec's highest rung, search.rungs.front) are
   not comparable as the searches saw them, so every member of each is retrained at one common
   evaluation fidelity (`--eval-epochs` on the whole training split, same seed) and scored on the test
   set; the hypervolume of those test accuracies (with the searches' memory and latency) is compared,
   and per hour of search (screening + rungs, not the evaluation).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ebnn_core.data import ImageDataModule, load_splits  # noqa: E402
from ebnn_core.training import train  # noqa: E402
from pipeline.config import compose, device, resolved  # noqa: E402
from pipeline.search import _budgets  # noqa: E402
from search.study import Objective, feasible, is_free, run_worker  # noqa: E402


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of minimisation points dominated region up to ref (slicing over the first axis)."""
    pts = points[np.all(points < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.argsort(pts[:, 0])]
    total = 0.0
    for i, p in enumerate(pts):
        x_next = pts[i + 1, 0] if i + 1 < len(pts) else ref[0]
        width = x_next - p[0]
        if width <= 0:
            continue
        total += width * _hv2d(pts[: i + 1, 1:], ref[1:])
    return total


def _hv2d(pts: np.ndarray, ref: np.ndarray) -> float:
    pts = pts[np.argsort(pts[:, 0])]
    area, best_y = 0.0, ref[1]
    for i, (x, y) in enumerate(pts):
        if y < best_y:
            x_next = ref[0]
            area += (x_next - x) * (best_y - y)
            best_y = y
    return area


def _recipe(screening):
    from ebnn_core.recipe import Recipe

    return Recipe.from_dict(screening["recipe"]) if screening.get("recipe") else None


def objective_for(d, splits, screening, seed):
    dev = device(d)
    budgets = _budgets(d)
    ds = d["dataset"]

    def train_fn(spec):
        dm = ImageDataModule(splits, batch_size=screening["batch_size"], val_size=ds["val_size"], seed=seed,
                             train_subset=screening.get("train_subset"), val_subset=screening.get("val_subset"))
        _, info = train(spec, dm, epochs=screening["epochs"], lr=float(screening["lr"]), seed=seed, progress=False,
                        recipe=_recipe(screening))
        return info

    return Objective(d["space"], tuple(ds["input_shape"]), int(ds["classes"]), dev, budgets, "ram_bytes", train_fn), budgets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=30, help="trial budget per sampler for the hypervolume")
    ap.add_argument("--screen-trials", type=int, default=4, help="feasible trials timed at default fidelity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="1,2,3", help="which benchmarks to run (comma-separated; 4: rungs)")
    ap.add_argument("--rung-epochs", type=int, default=4, help="part 4: the rung's epochs (whole training split)")
    ap.add_argument("--rung-top", type=float, default=0.25, help="part 4: the fraction that goes on to the rung")
    ap.add_argument("--eval-epochs", type=int, default=4, help="part 4: common fidelity the fronts are scored at")
    args = ap.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    d_default = resolved(compose("search", []))
    splits = load_splits(d_default["dataset"])

    if 1 in parts:
        trial_costs(args, d_default, splits)
    if 2 in parts:
        samplers(args, splits)
    if 3 in parts:
        repeats(args, splits)
    if 4 in parts:
        rungs_vs_none(args, splits)


def _front(st, budgets) -> tuple[float, float, int]:
    """(hypervolume, best val accuracy, feasible trials) of a study's feasible trials, normalised."""
    pts = np.array([[1 - t.values[0], t.values[1] / budgets.ram_bytes, t.values[2] / budgets.latency_ms]
                    for t in st.trials if t.values and feasible(t)])
    best = max((t.values[0] for t in st.trials if t.values and feasible(t)), default=0.0)
    return (hypervolume(pts, np.ones(3)) if len(pts) else 0.0), best, len(pts)


def repeats(args, splits) -> None:
    d_smoke = resolved(compose("search", ["profile=smoke"]))
    res = {}
    for name, max_trials in (("counted", args.trials), ("not counted", 4 * args.trials)):
        obj, budgets = objective_for(d_smoke, splits, d_smoke["screening"], args.seed)
        obj.n_trials, obj.max_trials = args.trials, max_trials
        st = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                 sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=10))
        t0 = time.perf_counter()
        run_worker(st, obj, args.trials, max_trials=max_trials, poll_s=0.01)
        secs = time.perf_counter() - t0
        hv, best, n_feas = _front(st, budgets)
        reps = sum(1 for t in st.trials if is_free(t))
        res[name] = (hv, secs)
        print(f"repeats {name:>11}: {len(st.trials)} trials ({reps} repeats), hypervolume {hv:.4f}, best val "
              f"accuracy {best:.4f}, {secs:.0f} s, hypervolume per hour {hv / secs * 3600:.2f}")
    (hv_n, s_n), (hv_c, s_c) = res["not counted"], res["counted"]
    print(f"hypervolume ratio not counted / counted = {hv_n / max(hv_c, 1e-12):.3f}; per hour "
          f"{(hv_n / s_n) / max(hv_c / s_c, 1e-12):.3f}")


def rungs_vs_none(args, splits) -> None:
    from ebnn_core import ArchSpec
    from ebnn_core.training import fit_fold_score
    from search.rungs import Rung, front, run_rungs

    d_smoke = resolved(compose("search", ["profile=smoke"]))
    val_size = d_smoke["dataset"]["val_size"]
    scr = d_smoke["screening"]
    scored: dict[str, float] = {}  # arch hash -> test accuracy at the evaluation fidelity (shared by both)
    res = {}
    for name, rungs in (("none", []), ("rung", [Rung(args.rung_epochs, None, args.rung_top)])):
        obj, budgets = objective_for(d_smoke, splits, scr, args.seed)
        st = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                 sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=10))
        t0 = time.perf_counter()
        run_worker(st, obj, args.trials, max_trials=4 * args.trials, poll_s=0.01)

        def train_at(spec, index, rung):
            dm = ImageDataModule(splits, batch_size=scr["batch_size"], val_size=val_size, seed=args.seed,
                                 train_subset=rung.train_subset)
            return train(spec, dm, epochs=rung.epochs, lr=float(scr["lr"]), seed=args.seed, progress=False,
                         recipe=_recipe(scr))[1]

        run_rungs(st, rungs, train_at, sleep=lambda s: None)
        secs = time.perf_counter() - t0
        members = front(st, rungs)
        pts = []
        for t, figs in members:
            spec = ArchSpec.from_dict(t.user_attrs["arch"])
            h = spec.short_hash()
            if h not in scored:
                _, info = fit_fold_score(spec, splits, epochs=args.eval_epochs, batch_size=scr["batch_size"],
                                         lr=float(scr["lr"]), seed=args.seed, val_size=val_size, progress=False,
                                         recipe=_recipe(scr))
                scored[h] = info["reference_accuracy"]
            pts.append([1 - scored[h], figs["memory"] / budgets.ram_bytes, figs["latency"] / budgets.latency_ms])
        pts_a = np.array(pts)
        hv = hypervolume(pts_a, np.ones(3)) if len(pts_a) else 0.0
        best = 1 - pts_a[:, 0].min() if len(pts_a) else 0.0
        res[name] = (hv, secs)
        print(f"rungs {name:>4}: {len(members)} on the front, search {secs:.0f} s; at {args.eval_epochs} epochs: "
              f"hypervolume {hv:.4f}, best test accuracy {best:.4f}, hypervolume per hour {hv / secs * 3600:.3f}",
              flush=True)
    (hv_r, s_r), (hv_n, s_n) = res["rung"], res["none"]
    print(f"hypervolume ratio rung / none = {hv_r / max(hv_n, 1e-12):.3f}; per hour "
          f"{(hv_r / s_r) / max(hv_n / s_n, 1e-12):.3f}")


def trial_costs(args, d_default, splits) -> None:
    # 1. infeasible vs feasible trial cost at the default fidelity
    d_tight = resolved(compose("search", ["ram_kb=1.2"]))  # hardly anything fits: most trials infeasible
    obj, _ = objective_for(d_tight, splits, d_tight["screening"], args.seed)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=args.seed))
    infeasible_ms = []
    for _ in range(200):
        t0 = time.perf_counter()
        study.optimize(obj, n_trials=1)
        if not feasible(study.trials[-1]):
            infeasible_ms.append((time.perf_counter() - t0) * 1000)
    obj, _ = objective_for(d_default, splits, d_default["screening"], args.seed)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=args.seed + 1))
    feasible_s = []
    while len(feasible_s) < args.screen_trials:
        t0 = time.perf_counter()
        study.optimize(obj, n_trials=1)
        t = study.trials[-1]
        if feasible(t) and t.user_attrs.get("trained"):
            feasible_s.append(time.perf_counter() - t0)
    inf_ms, feas_ms = float(np.median(infeasible_ms)), float(np.median(feasible_s)) * 1000
    scr = d_default["screening"]
    print(f"infeasible trial: {inf_ms:.2f} ms median over {len(infeasible_ms)}; feasible trial at default fidelity "
          f"({scr['epochs']} epochs x {scr['train_subset']} images): {feas_ms / 1000:.1f} s median over "
          f"{len(feasible_s)}; ratio infeasible/feasible = {inf_ms / feas_ms:.5f}")
    print(f"trials per hour at default fidelity on this machine: {3600 / (feas_ms / 1000):.0f} (feasible), "
          f"{3600 / (inf_ms / 1000):.0f} (infeasible)")

def samplers(args, splits) -> None:
    # 2. hypervolume: TPE (default) vs random, same budget, smoke fidelity
    d_smoke = resolved(compose("search", ["profile=smoke"]))
    results = {}
    for name, sampler in (("tpe", optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=10)),
                          ("tpe-group", optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=10, multivariate=True,
                                                                  group=True)),
                          ("random", optuna.samplers.RandomSampler(seed=args.seed))):
        obj, budgets = objective_for(d_smoke, splits, d_smoke["screening"], args.seed)
        st = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
        t0 = time.perf_counter()
        st.optimize(obj, n_trials=args.trials)
        hv, best, n_feas = _front(st, budgets)
        results[name] = hv
        print(f"{name:>6}: hypervolume {hv:.4f}, best val accuracy {best:.4f}, {n_feas} feasible of "
              f"{args.trials}, {time.perf_counter() - t0:.0f} s")
    print(f"hypervolume ratio tpe/random = {results['tpe'] / max(results['random'], 1e-12):.3f} "
          f"(> 1: the default sampler finds a better front); tpe-group/tpe = "
          f"{results['tpe-group'] / max(results['tpe'], 1e-12):.3f}")


if __name__ == "__main__":
    main()
