"""Many workers on one study, against one worker measured in the same run.

    .venv/bin/python bench/bench_distributed.py [--trials 12] [--workers 1,2,3] [--overhead-trials 100]
                                                [--split-threads] [--sampler random]

1. Trials per hour with 1, 2 and 3 workers (`python -m pipeline search profile=smoke sampler=random`,
   started together) on one fresh study each (random sampling: trial k proposes the same ArchSpec
   whatever the number of workers, so every run trains the same networks), stored in PostgreSQL 15 with an MLflow tracking server (both started here on
   127.0.0.1, search.servers), and the ratio to 1 worker. Two rates: over the trials' own span (first
   trial start to last trial end, from the storage) and over the wall time of the whole command
   (start-up included: imports, the feasibility check, the data). `--split-threads` gives each worker
   cores / workers intra-op threads (OMP_NUM_THREADS) instead of PyTorch's default of every core.
2. The per-trial overhead of the storage: the search's Objective and worker loop with a no-op training
   (infeasible and feasible trials alike, the budget and ArchSpec claims included, random sampling, no
   MLflow) on SQLite and on PostgreSQL, alternated twice, the faster of each; ms per trial and the
   difference.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from search.servers import MlflowServer, PostgresServer  # noqa: E402
from search.study import is_free  # noqa: E402


def workers_run(n_workers: int, n_trials: int, pg: PostgresServer, ml: MlflowServer, art: Path,
                split_threads: bool = False, sampler: str = "random") -> dict:
    study = f"bench-w{n_workers}-{int(time.time())}"
    args = ["search", "profile=smoke", f"sampler={sampler}", "progress=false", f"n_trials={n_trials}", f"study_name={study}",
            f"storage={pg.url}", f"mlflow.tracking_uri={ml.url}", f"paths.artifacts={art}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if split_threads:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n_workers))
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(n_workers)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    for p, out in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"a worker failed:\n{out}")
    s = optuna.load_study(study_name=study, storage=pg.url)
    done = [t for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE]
    new = sum(1 for t in done if not is_free(t))  # repeats and other fusions do not use up n_trials
    assert new == n_trials, (new, n_trials)
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    trained = sum(1 for t in done if t.user_attrs.get("trained"))
    return {"workers": n_workers, "trials": len(done), "trained": trained, "span_s": span, "wall_s": wall,
            "per_hour_span": len(done) / span * 3600, "per_hour_wall": len(done) / wall * 3600,
            "pruned": sum(1 for t in s.trials if t.state == optuna.trial.TrialState.PRUNED)}


def overhead(url: str, n_trials: int) -> float:
    """Milliseconds per trial of the Objective + worker loop with a no-op training on storage `url`."""
    from pipeline.config import compose, device, resolved
    from pipeline.search import _budgets
    from search.study import Objective, make_sampler, open_study, run_worker

    d = resolved(compose("search", ["profile=smoke", "sampler=random"]))
    study, _ = open_study(f"overhead-{int(time.time() * 1000)}", url, make_sampler(d["sampler"], 0))
    obj = Objective(d["space"], tuple(d["dataset"]["input_shape"]), int(d["dataset"]["classes"]), device(d),
                    _budgets(d), "ram_bytes", lambda spec: {"val_accuracy": 0.5, "train_seconds": 0.0},
                    n_trials=2)
    run_worker(study, obj, 2)  # warm-up: imports, first queries
    obj.n_trials = n_trials + 2
    t0 = time.perf_counter()
    run_worker(study, obj, n_trials + 2)
    return (time.perf_counter() - t0) / n_trials * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12, help="trials per study in part 1")
    ap.add_argument("--sampler", default="random", choices=["random", "tpe", "nsga2"])
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--overhead-trials", type=int, default=100)
    ap.add_argument("--split-threads", action="store_true", help="cores / workers threads per worker")
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    counts = [int(x) for x in a.workers.split(",")]
    print(f"machine: {os.cpu_count()} cores; smoke profile, sampler {a.sampler}; {a.trials} trials per study; "
          f"threads per worker: {'cores / workers' if a.split_threads else 'PyTorch default (every core)'}")
    with PostgresServer() as pg, MlflowServer() as ml, tempfile.TemporaryDirectory() as tmp:
        rows = []
        for w in counts:
            r = workers_run(w, a.trials, pg, ml, Path(tmp) / f"art{w}", a.split_threads, a.sampler)
            rows.append(r)
            print(f"  {w} worker(s): {r['trials']} COMPLETE ({r['trained']} trained, {r['pruned']} pruned), "
                  f"span {r['span_s']:.1f} s, wall {r['wall_s']:.1f} s", flush=True)
        base = rows[0]
        print("\n| workers | trials/h (trial span) | ratio to 1 | trials/h (wall, with start-up) | ratio to 1 |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['workers']} | {r['per_hour_span']:.0f} | {r['per_hour_span'] / base['per_hour_span']:.2f} | "
                  f"{r['per_hour_wall']:.0f} | {r['per_hour_wall'] / base['per_hour_wall']:.2f} |")

        ms_sqlite, ms_pg = [], []
        for i in range(2):
            ms_sqlite.append(overhead(f"sqlite:///{Path(tmp) / f'overhead{i}.db'}", a.overhead_trials))
            ms_pg.append(overhead(pg.url, a.overhead_trials))
        print(f"  SQLite runs {', '.join(f'{m:.1f}' for m in ms_sqlite)} ms/trial; "
              f"PostgreSQL runs {', '.join(f'{m:.1f}' for m in ms_pg)} ms/trial")
        ms_sqlite, ms_pg = min(ms_sqlite), min(ms_pg)
        print(f"\nper-trial overhead (Objective + claims + storage, no training, {a.overhead_trials} trials):")
        print(f"  SQLite {ms_sqlite:.1f} ms, PostgreSQL {ms_pg:.1f} ms: PostgreSQL - SQLite = {ms_pg - ms_sqlite:+.1f} ms "
              f"per trial (ratio {ms_pg / ms_sqlite:.2f})")


if __name__ == "__main__":
    main()
