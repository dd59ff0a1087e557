"""Many workers on one study (issue 11, items 1-2): the budget and ArchSpec claims, simultaneous starts on
fresh stores, and 3 real `python -m pipeline search` workers on PostgreSQL 15 + an MLflow tracking server
with one of them SIGKILLed mid-training.

PostgreSQL's server binaries come from the Debian package postgresql-15 (scripts/apt-packages.txt); the
servers run on 127.0.0.1 on free ports and are stopped by process group in teardown (search.servers).
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.servers import MlflowServer, PostgresServer
from search.study import Budgets, Objective, is_free, open_study, run_worker

from .conftest import ROOT, run_cli
from .test_resources import device

STUDY = "mnist-curie-ram15-lat1000-smoke"
SMALL_SPACE = {"conv_blocks": [0, 1], "dense_blocks": [0, 1], "units": [16, 32], "input_mode": ["binary", "uint8"],
               "filters": [4], "kernel": [3], "stride": [1], "padding": [0], "pool": [2], "pool_overlap": [False],
               "fusion": ["recompute", "rowbuffer", "unfused"]}  # 12 networks, 6 of them in 3 fusions


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # PartialFixedSampler
def test_workers_in_threads_keep_the_total_and_never_train_one_archspec_twice(tmp_path):
    """4 workers (threads, each with its own storage connection) on one SQLite study of a space with only 12
    networks (24 ArchSpecs: fusions), n_trials=6, max_trials=14: never more than n_trials new networks nor
    max_trials trials, the study full by one of the two, each network trained once, never two trainings of
    one network at the same time, repeats and other fusions reuse the result."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    n_trials, max_trials = 6, 14
    lock = threading.Lock()
    trainings: list[tuple[str, float, float]] = []

    def train_fn(spec):
        t0 = time.monotonic()
        time.sleep(0.4)
        with lock:
            trainings.append((spec.network_hash(), t0, time.monotonic()))
        return {"val_accuracy": 0.5, "train_seconds": 0.4}

    from search.study import make_sampler

    errors = []

    def worker(i):
        try:
            sampler = make_sampler({"name": "random"}, i)
            if i < 2:  # two workers propose one ArchSpec every time: repeats, and waits on one another, for sure
                sampler = optuna.samplers.PartialFixedSampler(
                    {"conv_blocks": 0, "dense_blocks": 0, "input_mode": "binary"}, sampler)
            elif i == 2:  # one network in its three fusions: other fusions wait for it, then reuse it
                sampler = optuna.samplers.PartialFixedSampler(
                    {"conv_blocks": 1, "dense_blocks": 0, "input_mode": "uint8"}, sampler)
            study, _ = open_study("threads", url, sampler)
            obj = Objective(SMALL_SPACE, (1, 28, 28), 10, device("curie"), Budgets(64 * 1024, None, None),
                            "ram_bytes", train_fn, n_trials=n_trials, poll_s=0.1, max_trials=max_trials)
            run_worker(study, obj, n_trials, poll_s=0.1, max_trials=max_trials)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    study = optuna.load_study(study_name="threads", storage=url)
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    new = [t for t in complete if not is_free(t)]
    assert len(new) <= n_trials and len(complete) <= max_trials
    assert len(new) == n_trials or len(complete) == max_trials
    assert len({t.user_attrs["net_hash"] for t in new}) == len(new)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:
        if t.state == TrialState.PRUNED:  # lost the race for the last slots: never sampled, never trained
            assert t.user_attrs.get("budget") == "taken" and not t.params
    hashes = [h for h, _, _ in trainings]
    assert len(hashes) == len(set(hashes)), "a network was trained twice"
    trained = {t.user_attrs["net_hash"] for t in complete if t.user_attrs.get("trained")}
    assert trained == set(hashes)
    for t in complete:  # every other trial reused a trained one
        if not t.user_attrs.get("trained"):
            assert study.trials[t.user_attrs["reused_from"]].user_attrs["net_hash"] == t.user_attrs["net_hash"]
    assert any(t.user_attrs.get("sibling_of") is not None for t in complete)  # another fusion was reused
    assert len({t.user_attrs["worker"] for t in complete}) == 1  # threads share a process id
    assert len(complete) > len(trained)  # the fixed workers' repeats: the claims were exercised


def test_simultaneous_starts_on_fresh_sqlite_stores(tmp_path):
    """4 processes open one fresh Optuna SQLite storage and one fresh MLflow SQLite store at the same
    moment (before: MLflow's `duplicate column name: step` crashed all but one): all succeed, one
    experiment, one parent run, the one every process uses."""
    script = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from search.study import make_sampler, open_study
from tracking.runs import Tracker
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
study, created = open_study("s", "sqlite:///{tmp_path}/optuna.db", make_sampler({{"name": "random"}}, 0))
t = Tracker("sqlite:///{tmp_path}/mlflow.db", "ebnn-search", Path("{tmp_path}/mlartifacts"), study, {{"a": 1}},
            created=created)
print("PARENT", t.parent_id, created)
"""
    start = time.time() + 12  # after every interpreter has imported mlflow and optuna
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(4)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    parents = {ln.split()[1] for out, _ in outs for ln in out.splitlines() if ln.startswith("PARENT")}
    created = [ln.split()[2] for out, _ in outs for ln in out.splitlines() if ln.startswith("PARENT")]
    assert len(parents) == 1 and created.count("True") == 1
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.get_experiment_by_name("ebnn-search")
    runs = c.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == list(parents)


@pytest.fixture
def servers():
    pg = PostgresServer().start()
    try:
        ml = MlflowServer().start()
    except BaseException:
        pg.stop()
        raise
    yield pg, ml
    ml.stop()
    pg.stop()


def _reader(proc, lines, event, training):
    for line in proc.stdout:
        lines.append(line)
        m = re.match(r"trial +(\d+)  training", line)  # a few seconds of training
        if m and not event.is_set():
            training.append(int(m.group(1)))
            event.set()
    proc.stdout.close()


def test_three_workers_on_postgresql_one_killed(tmp_path, servers):
    pg, ml = servers
    n_trials = 6
    art = tmp_path / "art"
    args = ["search", "profile=smoke", "progress=false", f"n_trials={n_trials}", f"storage={pg.url}",
            f"mlflow.tracking_uri={ml.url}", f"paths.artifacts={art}", "screening.train_subset=10000"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs, outputs, events, readers, training = [], [], [], [], [[], [], []]
    for i in range(3):  # started together: fresh storage, fresh experiment
        p = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        lines, ev = [], threading.Event()
        th = threading.Thread(target=_reader, args=(p, lines, ev, training[i]), daemon=True)
        th.start()
        procs.append(p), outputs.append(lines), events.append(ev), readers.append(th)
    try:
        deadline = time.monotonic() + 300
        victim = None
        while victim is None:
            assert time.monotonic() < deadline, "no worker started training a trial"
            for i, ev in enumerate(events):
                if ev.is_set():
                    victim = i
                    break
            time.sleep(0.1)
        time.sleep(0.5)  # mid-training (asserted below: the trial never completed)
        killed_trial = training[victim][0]
        os.killpg(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait(timeout=30)
        for i, p in enumerate(procs):
            if i != victim:
                p.wait(timeout=900)
                assert p.returncode == 0, "".join(outputs[i])
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for th in readers:
        th.join(timeout=10)
    for i, lines in enumerate(outputs):  # shown when the test fails
        print(f"---- worker {i}{' (SIGKILLed)' if i == victim else ''}\n" + "".join(lines))

    study = optuna.load_study(study_name=STUDY, storage=pg.url)
    trials = study.trials
    states = {t.number: t.state for t in trials}
    # the killed trial was mid-training: it never completed, a survivor's heartbeat check failed it
    assert states[killed_trial] == TrialState.FAIL
    # numbers without gaps: Optuna numbers every trial 0..N-1; FAIL (killed) and PRUNED (lost the race for
    # the last slot) keep theirs; COMPLETE ones are what n_trials counts
    assert sorted(states) == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sum(not is_free(t) for t in complete) == n_trials
    assert set(states.values()) <= {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED}
    assert len({t.user_attrs["worker"] for t in complete}) >= 2  # the work was shared
    trained = [t.user_attrs["net_hash"] for t in complete if t.user_attrs.get("trained")]
    assert len(trained) == len(set(trained)), "a network was trained twice"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(ml.url)
    exp = client.get_experiment_by_name("ebnn-search")

    def trial_runs():
        return client.search_runs([exp.experiment_id], filter_string="tags.kind = 'trial'", max_results=1000)

    # closed while the survivors ran, not at a later start-up
    assert not [r for r in trial_runs() if r.info.status == "RUNNING"]

    r = run_cli(*args)  # re-run one: nothing left to do, nothing lost
    assert r.returncode == 0, r.stderr
    assert f"{n_trials} trials done, running 0 more" in r.stdout
    study = optuna.load_study(study_name=STUDY, storage=pg.url)
    assert [(t.number, t.state) for t in study.trials] == [(t.number, t.state) for t in trials]

    runs = trial_runs()
    numbers = [int(r.data.tags["trial_number"]) for r in runs]
    assert len(numbers) == len(set(numbers)), "two MLflow runs for one trial"
    by_number = {int(r.data.tags["trial_number"]): r for r in runs}
    for t in study.trials:
        run = by_number.get(t.number)
        if t.state == TrialState.COMPLETE:
            assert run is not None and run.info.status == "FINISHED" and run.info.run_id == t.user_attrs["mlflow_run_id"]
        elif t.state == TrialState.FAIL:
            assert run is None or run.info.status == "KILLED"
        else:
            assert run is None  # PRUNED: never sampled
    assert by_number[killed_trial].info.status == "KILLED"
    assert set(by_number) <= set(states)
    parents = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in runs)

    doc = json.loads((art / "search" / STUDY / "pareto.json").read_text())
    assert doc["n_trials"] == n_trials and doc["mlflow_parent_run_id"] == parents[0].info.run_id
    assert doc["pareto"]
    # the smoke profile's rung ran in the surviving workers: every candidate trained once, by one of them
    from search.rungs import best_figures, candidates, front, parse_rungs, result_key

    rungs = parse_rungs([{"epochs": 2, "train_subset": 5000, "top": 0.34}])
    went_on = candidates(study, rungs, 1)
    assert went_on and all(result_key(1, h) in study.user_attrs for h in went_on)
    done_lines = [ln for lines in outputs for ln in lines if ln.startswith("rung 1: trial ")]
    assert sorted(int(ln.split()[3]) for ln in done_lines) == sorted(
        study.user_attrs[result_key(1, h)]["trial"] for h in went_on), "a rung model trained twice (or not at all)"
    best = best_figures(study, rungs)
    assert [p["number"] for p in doc["pareto"]] == [t.number for t, _ in front(study, rungs)]
    assert all(p["metrics"]["val_accuracy"] == best[p["arch_hash"]]["val_accuracy"] for p in doc["pareto"])
