"""The search stage end to end on the smoke profile, its resumption, and its input errors."""
import json
import signal
import subprocess
import sys
import time

import optuna
import pytest

from ebnn_core import ArchSpec
from search.space import RandomChooser, SmallestChooser, suggest_arch
from search.study import Budgets, Objective, pareto_trials

from .conftest import ROOT, run_cli
from .test_resources import device

STUDY = "mnist-curie-ram15-lat1000"


def _space():
    import yaml

    return yaml.safe_load((ROOT / "conf" / "space" / "default.yaml").read_text())


def test_every_suggestion_is_a_valid_archspec():
    space = _space()
    rnd = RandomChooser(0)
    seen = set()
    for _ in range(500):
        spec = suggest_arch(rnd, space, (1, 28, 28), 10)
        assert ArchSpec.from_json(spec.to_json()) == spec
        seen.add(spec.short_hash())
    assert len(seen) > 400  # the space is large: few repeats
    small = suggest_arch(SmallestChooser(), space, (1, 28, 28), 10)
    assert small.blocks == ()


def test_budgets_relative_violations():
    b = Budgets(ram_bytes=1000, flash_bytes=None, latency_ms=10.0)
    assert b.violations(1500, 10**9, 5.0) == {"ram": 0.5, "flash": -1.0, "latency": -0.5}


def test_objective_trains_feasible_once_and_never_infeasible(tmp_path):
    calls = []

    def train_fn(spec):
        calls.append(spec.short_hash())
        return {"val_accuracy": 0.5 + 0.01 * len(calls), "train_seconds": 0.1}

    space = dict(_space(), conv_blocks=[0, 0], dense_blocks=[0, 1], units=[16, 256], input_mode=["binary"])
    dev = device("curie")
    obj = Objective(space, (1, 28, 28), 10, dev, Budgets(8 * 1024, None, None), "ram_bytes", train_fn)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(obj, n_trials=25)
    by_hash = {}
    for t in study.trials:
        h = t.user_attrs["arch_hash"]
        feasible = all(v <= 0 for v in t.constraints.values())
        assert feasible == t.user_attrs["feasible"]
        if not feasible:
            assert t.values[0] == 0.0 and h not in calls  # D256 needs ~27 KB: never trained
        else:
            by_hash.setdefault(h, t.values[0])
            assert t.values[0] == by_hash[h]  # a repeat reuses the first result
    assert len(calls) == len(set(calls)) == len(by_hash)
    assert any("reused_from" in t.user_attrs for t in study.trials)


def _mlflow_trial_runs(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=tracking_uri)
    exp = c.get_experiment_by_name("ebnn-search")
    return c.search_runs([exp.experiment_id], filter_string="tags.kind = 'trial'", max_results=1000)


def _load(art):
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{art}/search/optuna.db")


def test_smoke_search_end_to_end_and_resume(tmp_path):
    art = tmp_path / "art"
    args = ["search", "profile=smoke", "progress=false", f"paths.artifacts={art}"]
    r = run_cli(*args, "n_trials=6")
    assert r.returncode == 0, r.stderr
    assert "val_accuracy" in r.stdout  # the Pareto table
    study = _load(art)
    trials = study.trials
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    budget = 15 * 1024
    for t in trials:
        ua = t.user_attrs
        if ua["feasible"]:
            assert ua["ram_bytes"] <= budget
            assert (art / "search" / STUDY / "trials" / ua["arch_hash"] / "folded.npz").is_file() or "reused_from" in ua
        else:
            assert "trained" not in ua and not (art / "search" / STUDY / "trials" / ua["arch_hash"]).exists()

    doc = json.loads((art / "search" / STUDY / "pareto.json").read_text())
    assert [p["number"] for p in doc["pareto"]] == [t.number for t in pareto_trials(study)]
    assert doc["pareto"], "the smoke search found no feasible network"

    tracking = f"sqlite:///{art}/mlflow.db"
    runs = _mlflow_trial_runs(tracking)
    by_number = {int(r.data.tags["trial_number"]): r for r in runs}
    assert sorted(by_number) == [t.number for t in trials] and len(runs) == len(trials)
    pareto_numbers = {p["number"] for p in doc["pareto"]}
    for t in trials:
        run = by_number[t.number]
        assert run.info.run_id == t.user_attrs["mlflow_run_id"]
        assert run.data.tags["feasible"] == str(t.user_attrs["feasible"]).lower()
        assert run.data.tags["pareto"] == ("true" if t.number in pareto_numbers else "false")
        assert run.data.tags["mlflow.parentRunId"] == doc["mlflow_parent_run_id"]
        assert run.data.metrics["ram_bytes"] == t.user_attrs["ram_bytes"]
        assert run.data.params["arch_hash"] == t.user_attrs["arch_hash"]
    assert (art / "search" / STUDY / "pareto.png").stat().st_size > 1000
    assert "<svg" in (art / "search" / STUDY / "pareto.html").read_text()

    # the same command again with a larger total: resumes, keeps every trial, same parent run
    before = {t.number: (t.values, t.params) for t in trials}
    r = run_cli(*args, "n_trials=8")
    assert r.returncode == 0, r.stderr
    assert "6 trials done, running 2 more" in r.stdout
    study = _load(art)
    assert len(study.trials) == 8
    for t in study.trials[:6]:
        assert (t.values, t.params) == before[t.number]
    assert len(_mlflow_trial_runs(tracking)) == 8
    doc2 = json.loads((art / "search" / STUDY / "pareto.json").read_text())
    assert doc2["mlflow_parent_run_id"] == doc["mlflow_parent_run_id"]
    # and once more at the same total: nothing to do, nothing lost
    r = run_cli(*args, "n_trials=8")
    assert r.returncode == 0 and "running 0 more" in r.stdout
    assert len(_load(art).trials) == 8


def test_interrupted_search_resumes(tmp_path):
    art = tmp_path / "art"
    cmd = [sys.executable, "-m", "pipeline", "search", "profile=smoke", "progress=false", "n_trials=4",
           f"paths.artifacts={art}"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    for line in p.stdout:  # wait for the first finished trial, then interrupt the next one
        if line.startswith("trial"):
            break
        assert time.time() - t0 < 300
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    assert p.returncode in (130, 0)
    study = _load(art)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 1
    r = run_cli("search", "profile=smoke", "progress=false", "n_trials=4", f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    study = _load(art)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    for t in done:  # nothing trained before the interruption was lost
        assert study.trials[t.number].values == t.values
    runs = _mlflow_trial_runs(f"sqlite:///{art}/mlflow.db")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == [t.number for t in study.trials]
    assert all(r.info.status in ("FINISHED", "KILLED", "FAILED") for r in runs)


@pytest.mark.parametrize("args, needle", [
    (["ram_kb=-1"], "ram_kb=-1: must be a positive number"),
    (["ram_kb=abc"], "ram_kb=abc: must be a positive number"),
    (["device=nosuch"], "device=nosuch: no such device"),
    (["ram_kb=0.5"], "ram_kb=0.5: no candidate of the search space fits"),
    (["latency_ms=0.01"], "latency_ms=0.01: no candidate of the search space fits"),
    (["sampler=nosuch"], "sampler=nosuch: no such sampler"),
    (["objective_memory=stack"], "objective_memory=stack: choose one of"),
    (["n_trials=0"], "n_trials=0: must be a positive integer"),
    (["space.filters=[]"], "space.filters=[]: must be a non-empty list"),
    (["ram_kb=100000", "space.conv_blocks=[3,3]", "space.filters=[512]", "space.stride=[1]", "space.padding=[1]", "space.pool=[0]",
      "space.kernel=[3]"], "=1000: no candidate of the search space fits"),  # latency_ms=1000, the worst
])
def test_search_bad_input(tmp_path, args, needle):
    r = run_cli("search", "profile=smoke", f"paths.artifacts={tmp_path}", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "search").exists()  # nothing started


def test_hydra_flags_after_the_search_stage():
    r = run_cli("search", "--cfg", "job", "ram_kb=8", "sampler=nsga2")
    assert r.returncode == 0, r.stderr
    assert "ram_kb: 8" in r.stdout and "name: nsga2" in r.stdout


@pytest.mark.parametrize("sampler", ["nsga2", "random"])
def test_other_samplers_run(tmp_path, sampler):
    r = run_cli("search", "profile=smoke", f"sampler={sampler}", "n_trials=3", "progress=false",
                "device=cortex-m0", "latency_ms=20", f"paths.artifacts={tmp_path}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "search" / "mnist-cortex-m0-ram16-lat20" / "pareto.json").read_text())
    assert doc["n_trials"] == 3 and doc["budgets"]["latency_ms"] == 20
    for p in doc["pareto"]:
        assert p["metrics"]["ram_bytes"] <= 16 * 1024 and p["metrics"]["latency_ms_est"] <= 20
