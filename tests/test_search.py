"""The search stage end to end on the smoke profile, its resumption, interrupts, and its input errors."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest

from ebnn_core import ArchSpec
from search.space import RandomChooser, SmallestChooser, suggest_arch
from search.study import Budgets, Objective, is_free

from .conftest import ROOT, run_cli
from .test_resources import device

STUDY = "mnist-curie-ram15-lat1000-smoke"


def _space():
    import yaml

    return yaml.safe_load((ROOT / "conf" / "space" / "default.yaml").read_text())


def test_filter_growth_keeps_or_widens_the_channels():
    space = {**_space(), "filters": [4, 8, 16, 32], "filter_growth": [1, 2], "conv_blocks": [3, 3], "dense_blocks": [0, 0], "kernel": [2],
             "stride": [1], "padding": [1], "pool": [0]}
    rnd = RandomChooser(1)
    seen = set()
    for _ in range(200):
        spec = suggest_arch(rnd, space, (1, 28, 28), 10)
        f = [b.filters for b in spec.blocks]
        assert len(f) == 3 and f == sorted(f) and all(b <= 2 * a or b == 4 for a, b in zip(f, f[1:]))
        seen.add(tuple(f))
    assert (4, 8, 16) in seen and (32, 32, 32) in seen and (8, 8, 16) in seen
    from search.space import SpaceError, check_space

    for bad in ([], [0.5], ["x"], 2, [True]):
        with pytest.raises(SpaceError, match=r"space.filter_growth="):
            check_space({**_space(), "filter_growth": bad})


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


def test_a_repeated_archspec_does_not_use_up_n_trials(tmp_path):
    """Two ArchSpecs in the space: n_trials=2 ends with both evaluated (each trained once), every other
    trial a repeat answered from the record; n_trials=3 cannot be reached and stops at max_trials."""
    from search.study import budget_counts, is_repeat, run_worker

    calls = []

    def train_fn(spec):
        calls.append(spec.short_hash())
        return {"val_accuracy": 0.5, "train_seconds": 0.1}

    space = dict(_space(), conv_blocks=[0, 0], dense_blocks=[0, 0], input_mode=["binary", "uint8"])
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=3))
    obj = Objective(space, (1, 28, 28), 10, device("curie"), Budgets(15 * 1024, None, None), "ram_bytes", train_fn,
                    n_trials=2, max_trials=40)
    run_worker(study, obj, 2, max_trials=40, poll_s=0.01)
    c = budget_counts(study)
    assert c.done == 2 and len(set(calls)) == len(calls) == 2
    firsts = [t for t in study.trials if not is_repeat(t)]
    assert len({t.user_attrs["arch_hash"] for t in firsts}) == 2
    for t in study.trials:
        if is_repeat(t):
            first = study.trials[t.user_attrs["repeat_of"]]
            assert first.user_attrs["arch_hash"] == t.user_attrs["arch_hash"] and not is_repeat(first)
            assert t.values == first.values and "trained" not in t.user_attrs
    assert c.repeats == len(study.trials) - 2
    obj3 = Objective(space, (1, 28, 28), 10, device("curie"), Budgets(15 * 1024, None, None), "ram_bytes", train_fn,
                     n_trials=3, max_trials=len(study.trials) + 5)
    run_worker(study, obj3, 3, max_trials=obj3.max_trials, poll_s=0.01)
    c = budget_counts(study)
    assert c.done == 2 and c.all_done == obj3.max_trials and len(calls) == 2


def test_another_fusion_of_a_trained_network_is_not_trained_and_uses_no_budget(tmp_path):
    """One conv block with pooling, 2 networks x 3 fusions, n_trials=3 (more than there are networks): each
    network trains once, every other fusion is answered with its network's accuracy (its own RAM and
    latency) and counts no budget, so the study runs on to max_trials with 2 trials counted."""
    from search.study import budget_counts, is_free, run_worker

    calls = []

    def train_fn(spec):
        calls.append(spec.network_hash())
        return {"val_accuracy": 0.5 + len(calls) / 10, "train_seconds": 0.1}

    space = {**_space(), "conv_blocks": [1, 1], "dense_blocks": [0, 0], "filters": [4], "kernel": [3],
             "stride": [1], "padding": [0], "pool": [2, 3], "pool_overlap": [False], "input_mode": ["uint8"]}
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                storage=f"sqlite:///{tmp_path / 'o.db'}", sampler=optuna.samplers.RandomSampler(seed=1))
    obj = Objective(space, (1, 28, 28), 10, device("curie"), Budgets(15 * 1024, None, None), "ram_bytes", train_fn,
                    n_trials=3, max_trials=30)
    run_worker(study, obj, 3, max_trials=30, poll_s=0.01)
    assert len(calls) == len(set(calls)) == 2 and budget_counts(study).done == 2
    trials = study.trials
    assert len(trials) == 30 and len({t.user_attrs["arch_hash"] for t in trials}) == 6
    siblings = [t for t in trials if t.user_attrs.get("sibling_of") is not None]
    assert siblings and all(is_free(t) for t in siblings)
    assert len({t.user_attrs["arch_hash"] for t in trials}) > 2
    for t in siblings:
        src = trials[t.user_attrs["sibling_of"]]
        assert src.user_attrs["trained"] and "trained" not in t.user_attrs
        assert src.user_attrs["net_hash"] == t.user_attrs["net_hash"]
        assert src.user_attrs["arch_hash"] != t.user_attrs["arch_hash"]
        assert t.values[0] == src.values[0]
    assert {t.values[1] for t in siblings} - {t.values[1] for t in trials if t.user_attrs.get("trained")}


def test_budgets_relative_violations():
    b = Budgets(ram_bytes=1000, flash_bytes=None, latency_ms=10.0)
    assert b.violations(1500, 10**9, 5.0) == {"ram": 0.5, "flash": -1.0, "latency": -0.5}


def test_latency_from_the_emulator_decides_what_the_model_cannot():
    """With a latency_fn (the emulator), a candidate is measured when it fits RAM and its estimate, less the
    device's stated tolerance, is within the budget; the measured figure is the objective and the constraint
    (an estimate under the budget whose measurement is over is refused, untrained); an estimate over the
    budget by more than the tolerance is refused unmeasured."""
    import dataclasses

    from ebnn_core import latency_ms

    space = dict(_space(), conv_blocks=[0, 0], dense_blocks=[0, 1], units=[16, 32, 64, 128, 256],
                 input_mode=["binary", "uint8"])
    dev = dataclasses.replace(device("curie"), latency_tolerance=0.2)
    specs = {}
    for seed in range(40):
        s = suggest_arch(RandomChooser(seed), space, (1, 28, 28), 10)
        specs[s.short_hash()] = s
    est = sorted({latency_ms(s, dev) for s in specs.values()})
    budget = est[len(est) // 2] / 1.1  # the middle candidate: estimated 10% over, within the tolerance
    measured, trained = [], []

    def latency_fn(spec, d):  # an emulator that disagrees with the model near the budget, either way
        measured.append(spec.short_hash())
        e = latency_ms(spec, d)
        return budget * 0.95 if e > budget else budget * 1.05 if e > budget / 2 else e

    def train_fn(spec):
        trained.append(spec.short_hash())
        return {"val_accuracy": 0.5, "train_seconds": 0.1}

    obj = Objective(space, (1, 28, 28), 10, dev, Budgets(None, None, budget), "ram_bytes", train_fn,
                    latency_fn=latency_fn)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=2))
    study.optimize(obj, n_trials=40)
    kinds = set()
    for t in study.trials:
        ua, h = t.user_attrs, t.user_attrs["arch_hash"]
        e = ua["latency_ms_est"]
        if e / 1.2 > budget:  # the model refuses it whatever the emulator would say
            assert ua["latency_source"] == "model" and h not in measured and not ua["feasible"]
            kinds.add("refused unmeasured")
        else:
            assert ua["latency_source"] == "emulator" and h in measured
            assert t.values[2] == ua["latency_ms"] == latency_fn(ArchSpec.from_dict(ua["arch"]), dev)
            assert ua["feasible"] == (ua["latency_ms"] <= budget) == (h in trained)
            assert t.constraints["latency"] == pytest.approx((ua["latency_ms"] - budget) / budget)
            kinds.add(("fits" if ua["feasible"] else "over") + (", estimated over" if e > budget else ""))
    assert kinds == {"refused unmeasured", "fits", "over", "fits, estimated over"}, kinds


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
    # study-level progress after each trial: k of N, an ETA, the best feasible point so far
    lines = [ln for ln in r.stdout.splitlines() if " of 6 done" in ln and ", ETA " in ln]
    assert "1 of 6 done" in lines[0] and "6 of 6 done" in lines[-1], r.stdout
    assert all("best feasible" in ln or "no feasible trial yet" in ln for ln in lines)
    study = _load(art)
    for t in study.trials:  # an infeasible trial says "not trained", not "acc 0.0000"
        line = next(ln for ln in lines if ln.startswith(f"trial {t.number:>3} "))
        assert ("not trained" in line) == (not t.user_attrs["feasible"]), line
    trials = study.trials
    assert len(lines) == len(trials)  # one line per trial, repeats included
    assert sum(not is_free(t) for t in trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE
                                                              for t in trials)
    budget = 15 * 1024
    for t in trials:
        ua = t.user_attrs
        if ua["feasible"]:
            assert ua["ram_bytes"] <= budget
            assert (art / "search" / STUDY / "trials" / ua["arch_hash"] / "folded.npz").is_file() or "reused_from" in ua
        else:
            assert "trained" not in ua and not (art / "search" / STUDY / "trials" / ua["arch_hash"]).exists()

    doc = json.loads((art / "search" / STUDY / "pareto.json").read_text())
    assert doc["pareto"], "the smoke search found no feasible network"
    # the smoke profile's rung: the top third of the screened ArchSpecs trained again (2 epochs), each
    # figure with its fidelity; the front is over each ArchSpec's highest rung
    from search.rungs import best_figures, candidates, front, parse_rungs, result_key, screened
    from search.study import network_hash

    net = {t.user_attrs["arch_hash"]: network_hash(t) for t in trials}
    first_trial = screened(study)

    rungs = parse_rungs([{"epochs": 2, "train_subset": 5000, "top": 0.34}])
    went_on = candidates(study, rungs, 1)
    went_nets = {net[h] for h in went_on}
    assert 1 <= len(went_on) < len(screened(study))
    assert [p["number"] for p in doc["pareto"]] == [t.number for t, _ in front(study, rungs)]
    best = best_figures(study, rungs)
    for p in doc["pareto"]:
        h = p["arch_hash"]
        rec = study.user_attrs.get(result_key(1, net[h]))
        if net[h] in went_nets:  # a candidate, or another fusion of one: the network's rung figure
            assert p["fidelity"] == {"name": "rung1", "epochs": 2, "train_subset": 5000}
            assert p["metrics"]["val_accuracy"] == rec["val_accuracy"] == best[h]["val_accuracy"]
            assert p["metrics"]["screening_val_accuracy"] == study.trials[p["number"]].values[0]
            assert any((art / "search" / STUDY / "trials" / o / "rung1" / "folded.npz").is_file()
                       for o in net if net[o] == net[h])  # saved once per network
        else:
            assert rec is None and p["fidelity"]["name"] == "screening"
    assert f"rung 1 (2 epochs): training 1 of {len(went_nets)}" in r.stdout

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
        # an untrained (infeasible) trial has no accuracy in MLflow, rather than a 0 that sorts as a result
        assert ("val_accuracy" in run.data.metrics) == bool(t.user_attrs["feasible"])
        assert set(run.data.params) == {"arch_hash", "arch_desc", "input_mode", "n_blocks"}  # the table stays narrow
        h = t.user_attrs["arch_hash"]
        # each feasible ArchSpec's first trial carries its network's rung figure
        went = net[h] in went_nets and h in first_trial and first_trial[h].number == t.number
        assert ("val_accuracy_rung1" in run.data.metrics) == went
        if went:
            assert run.data.metrics["val_accuracy_rung1"] == study.user_attrs[result_key(1, net[h])]["val_accuracy"]
            assert run.data.tags["fidelity"] == "rung1 (2 epochs, train_subset 5000)"
    assert (art / "search" / STUDY / "pareto.png").stat().st_size > 1000
    assert "<svg" in (art / "search" / STUDY / "pareto.html").read_text()

    # browsing: the UI opens the study's saved view (model-training view, its Pareto set, key metrics as
    # columns); the experiment says it is a model-training one; the study names its objectives
    import urllib.parse

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name("ebnn-search")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(exp.tags[f"mlflow.sharedViewState.pareto-{STUDY}"])
    state = json.loads(view["state"])
    assert state["searchFilter"] == f"tags.study = '{STUDY}' and tags.pareto = 'true'"
    assert state["selectedColumns"][:4] == ["metrics.`val_accuracy`", "metrics.`val_accuracy_rung1`",
                                            "metrics.`ram_bytes`", "metrics.`model_bytes`"]
    shown = client.search_runs([exp.experiment_id], filter_string=state["searchFilter"])
    assert sorted(int(r.data.tags["trial_number"]) for r in shown) == sorted(pareto_numbers)
    url = next(w for w in r.stdout.split() if "viewStateShareKey=" in w)
    q = urllib.parse.parse_qs(url.split("?", 1)[1])
    assert q == {"workflowType": ["machine_learning"], "viewStateShareKey": [f"pareto-{STUDY}"]}
    assert url.startswith(f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?")
    assert f"optuna-dashboard sqlite:///{art}/search/optuna.db" in r.stdout
    assert study.metric_names == ["val_accuracy", "ram_bytes", "latency_ms_emulated"]
    # the default latency figure is the emulator's: every candidate that fits RAM was measured, and the
    # figure is what validation.latency measures for its ArchSpec (cached: the same figure)
    from validation.latency import measure_latency

    dev = device("curie")
    for t in trials:
        ua = t.user_attrs
        if ua["feasible"]:
            assert ua["latency_source"] == "emulator" and t.values[2] == ua["latency_ms"]
            assert ua["latency_ms"] == measure_latency(ArchSpec.from_dict(ua["arch"]), dev)["latency_ms"]
            assert by_number[t.number].data.tags["latency_source"] == "emulator"
            assert by_number[t.number].data.metrics["latency_ms"] == ua["latency_ms"]
    parent = client.get_run(doc["mlflow_parent_run_id"])
    assert parent.data.params["device.name"] == "curie" and len(parent.data.params) <= 15
    assert "config.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    # the same command again with a larger total: resumes, keeps every trial, same parent run
    first = client.get_run(doc["mlflow_parent_run_id"]).data.metrics
    assert first["search_seconds"] == first["invocation_seconds"] > 0
    before = {t.number: (t.values, t.params) for t in trials}
    r = run_cli(*args, "n_trials=8")
    assert r.returncode == 0, r.stderr
    assert "6 trials done, running 2 more" in r.stdout
    study = _load(art)
    assert sum(not is_free(t) for t in study.trials) == 8
    for t in study.trials[:len(trials)]:
        assert (t.values, t.params) == before[t.number]
    assert len(_mlflow_trial_runs(tracking)) == len(study.trials)
    doc2 = json.loads((art / "search" / STUDY / "pareto.json").read_text())
    assert doc2["mlflow_parent_run_id"] == doc["mlflow_parent_run_id"]
    second = client.get_run(doc["mlflow_parent_run_id"]).data.metrics  # the whole study, not the last call
    assert second["search_seconds"] == pytest.approx(first["search_seconds"] + second["invocation_seconds"])
    assert second["study_span_seconds"] >= first["study_span_seconds"]
    # and once more at the same total: nothing to do, nothing lost
    r = run_cli(*args, "n_trials=8")
    assert r.returncode == 0 and "running 0 more" in r.stdout
    assert len(_load(art).trials) == len(study.trials)
    # a study keeps its space: another one is refused before any trial, naming the key
    r = run_cli(*args, "n_trials=9", "space.filter_growth=[1]")
    assert r.returncode == 2 and (
        f"space.filter_growth=[1]: the study {STUDY} was searched with space.filter_growth=[1, 2]; keep the space "
        "or choose another study_name") in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert len(_load(art).trials) == len(study.trials)
    # another memory objective is another study: refused, nothing added
    r = run_cli(*args, "n_trials=9", "objective_memory=model_bytes")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "objective_memory=model_bytes: the study" in lines[0], r.stderr
    assert len(_load(art).trials) == len(study.trials)
    # so is another latency figure: model estimates never mix with emulated ones in one study
    r = run_cli(*args, "n_trials=9", "latency_source=model")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "latency_source=model: the study" in lines[0], r.stderr
    assert len(_load(art).trials) == len(study.trials)


def _mlflow_runs(tracking_uri: str, kind: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=tracking_uri)
    exp = c.get_experiment_by_name("ebnn-search")
    return c.search_runs([exp.experiment_id], filter_string=f"tags.kind = '{kind}'", max_results=1000)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_training_fails_the_trial_and_resumes(tmp_path, sig):
    """Ctrl-C or SIGTERM while Lightning trains: one line, exit 130 / 143, the trial FAIL in Optuna, its run
    KILLED in MLflow, the parent run closed (before: exit 1, trial RUNNING, run FAILED, parent RUNNING)."""
    art = tmp_path / "art"
    args = ["search", "profile=smoke", "progress=false", f"paths.artifacts={art}"]
    p = subprocess.Popen([sys.executable, "-m", "pipeline", *args, "n_trials=3"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    n = None
    for line in p.stdout:  # the first trial that trains (the ones before it were infeasible) takes seconds
        m = re.match(r"trial +(\d+)  training", line)
        if m:
            n = int(m.group(1))
            break
        assert time.time() - t0 < 300
    assert n is not None, "no trial trained"
    time.sleep(0.5)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    name = signal.Signals(sig).name
    assert p.returncode == 128 + sig, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines == [f"interrupted by {name}: trial {n} failed (its MLflow run KILLED); "
                     "the same command resumes the study"], err
    study = _load(art)
    assert [(t.number, t.state) for t in study.trials] == \
        [(i, optuna.trial.TrialState.COMPLETE) for i in range(n)] + [(n, optuna.trial.TrialState.FAIL)]
    tracking = f"sqlite:///{art}/mlflow.db"
    runs = {r.data.tags["trial_number"]: r for r in _mlflow_runs(tracking, "trial")}
    assert sorted(runs, key=int) == [str(i) for i in range(n + 1)]
    run = runs[str(n)]
    assert run.info.status == "KILLED" and run.data.tags["error"].startswith("Interrupted")
    assert all(runs[str(i)].info.status == "FINISHED" for i in range(n))
    (parent,) = _mlflow_runs(tracking, "study")
    assert parent.info.status == "KILLED"
    if sig == signal.SIGTERM:
        return
    r = run_cli(*args, f"n_trials={n + 2}")  # resume: the failed trial keeps its number, its slot is run again
    assert r.returncode == 0, r.stderr
    assert f"{n} trials done, running 2 more" in r.stdout
    study = _load(art)
    states = [t.state for t in study.trials]
    assert states[n] == optuna.trial.TrialState.FAIL and states.count(optuna.trial.TrialState.COMPLETE) == n + 2
    runs = _mlflow_runs(tracking, "trial")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == [t.number for t in study.trials]
    assert {int(r.data.tags["trial_number"]): r.info.status for r in runs}[n] == "KILLED"
    assert all(r.info.status == "FINISHED" for r in runs if r.data.tags["trial_number"] != str(n))
    (parent,) = _mlflow_runs(tracking, "study")
    assert parent.info.status == "FINISHED"


def _bad_place(case: str, tmp_path):
    from search.servers import free_port

    f = tmp_path / "afile"
    f.write_text("not a folder")
    port = free_port()
    return {
        "storage-bad-url": (["storage=bad-url"], "storage=bad-url: not a database URL"),
        "storage-unreachable": ([f"storage=postgresql+psycopg2://u:secret@127.0.0.1:{port}/optuna"],
                                f"storage=postgresql+psycopg2://u:***@127.0.0.1:{port}/optuna: cannot connect"),
        "storage-under-file": ([f"storage=sqlite:///{f}/optuna.db"], f"storage=sqlite:///{f}/optuna.db: {f} is a file"),
        "tracking-under-file": ([f"mlflow.tracking_uri=sqlite:///{f}/mlflow.db"],
                                f"mlflow.tracking_uri=sqlite:///{f}/mlflow.db: {f} is a file, not a folder"),
        "tracking-server-down": ([f"mlflow.tracking_uri=http://127.0.0.1:{port}"],
                                 f"mlflow.tracking_uri=http://127.0.0.1:{port}: no MLflow tracking server answers"),
        "artifacts-under-file": ([f"paths.artifacts={f}/art"], f"paths.artifacts={f}/art: {f} is a file, not a folder"),
        "artifacts-is-file": ([f"paths.artifacts={f}"], f"paths.artifacts={f}: {f} is a file, not a folder"),
        "artifacts-unwritable": (["paths.artifacts=/sys/ebnn-artifacts"],  # EPERM even for root
                                 "paths.artifacts=/sys/ebnn-artifacts: cannot write in /sys"),
    }[case]


@pytest.mark.parametrize("case", ["storage-bad-url", "storage-unreachable", "storage-under-file", "tracking-under-file",
                                  "tracking-server-down", "artifacts-under-file", "artifacts-is-file",
                                  "artifacts-unwritable"])
def test_search_bad_places_before_any_work(tmp_path, case):
    """Storage, tracking URI and artefacts folder are checked first: one line naming the key and the value,
    exit 2, nothing created. `ram_kb=0.5` fits no candidate: that error would come first if the places were
    checked after the feasibility sampling (before: 35-70 s of work, then a traceback)."""
    args, needle = _bad_place(case, tmp_path)
    r = run_cli("search", "profile=smoke", f"paths.artifacts={tmp_path / 'art'}", *args, "ram_kb=0.5")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "secret" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["afile"]  # no folder, no database, no empty study


@pytest.mark.parametrize("args, needle", [
    (["ram_kb=-1"], "ram_kb=-1: must be a positive number"),
    (["ram_kb=abc"], "ram_kb=abc: must be a positive number"),
    (["device=nosuch"], "device=nosuch: no such device"),
    (["ram_kb=0.5"], "ram_kb=0.5: no candidate of the search space fits"),
    (["latency_ms=0.01"], "latency_ms=0.01: no candidate of the search space fits"),
    (["sampler=nosuch"], "sampler=nosuch: no such sampler"),
    (["sampler.group=maybe"], "sampler.group=maybe: must be true or false"),
    (["sampler.name=[x]"], "sampler.name=['x']: choose one of tpe, nsga2, random"),
    (["sampler.group=true", "sampler.multivariate=false"], "sampler.group=true: needs sampler.multivariate=true"),
    (["sampler.n_startup_trials=0"], "sampler.n_startup_trials=0: must be an integer >= 1"),
    (["sampler=nsga2", "sampler.population_size=1"], "sampler.population_size=1: must be an integer >= 2"),
    (["objective_memory=stack"], "objective_memory=stack: choose one of"),
    (["n_trials=10", "max_trials=5"], "max_trials=5: must be at least n_trials=10"),
    (["n_trials=0"], "n_trials=0: must be a positive integer"),
    (["latency_source=guess"], "latency_source=guess: choose one of emulator, model"),
    (["rungs=[{epochs:0,top:0.5}]"], "rungs[0].epochs=0: must be a positive integer"),
    (["screening.recipe.augment_shift=-2"], "screening.recipe.augment_shift=-2: must be an integer"),
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


@pytest.mark.parametrize("stage", ["search", "promote", "codegen", "validate", "report"])
def test_the_profile_names_the_study_in_every_stage(stage):
    """The smoke and the default search never share a study (their trials are screened at different
    fidelities), and every later stage finds the study from the same overrides."""
    from pipeline.config import compose, resolved
    from pipeline.search import study_name

    assert study_name(resolved(compose(stage, ["ram_kb=15"]))) == "mnist-curie-ram15-lat1000"
    assert study_name(resolved(compose(stage, ["ram_kb=15", "profile=smoke"]))) == STUDY
    assert study_name(resolved(compose(stage, ["profile=smoke", "study_name=mine"]))) == "mine"


def test_hydra_flags_after_the_search_stage():
    r = run_cli("search", "--cfg", "job", "ram_kb=8", "sampler=nsga2")
    assert r.returncode == 0, r.stderr
    assert "ram_kb: 8" in r.stdout and "name: nsga2" in r.stdout


def test_tpe_group_reaches_the_sampler():
    """sampler.multivariate and sampler.group are passed to Optuna's TPE, not dropped."""
    from search.study import make_sampler

    s = make_sampler({"name": "tpe", "multivariate": True, "group": True}, 0)
    assert s._group is True and s._multivariate is True
    s = make_sampler({"name": "tpe", "multivariate": True}, 0)
    assert s._group is False and s._multivariate is True
    s = make_sampler({"name": "tpe"}, 0)
    assert s._group is False and not s._multivariate


@pytest.mark.parametrize("sampler", ["nsga2", "random", "tpe-group"])
def test_other_samplers_run(tmp_path, sampler):
    extra = ["sampler=tpe", "sampler.multivariate=true", "sampler.group=true", "sampler.n_startup_trials=1"] \
        if sampler == "tpe-group" else \
        [f"sampler={sampler}"]
    r = run_cli("search", "profile=smoke", *extra, "n_trials=3", "progress=false",
                "device=cortex-m0", "latency_ms=20", f"paths.artifacts={tmp_path}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "search" / "mnist-cortex-m0-ram16-lat20-smoke" / "pareto.json").read_text())
    assert doc["n_trials"] == 3 and doc["budgets"]["latency_ms"] == 20
    for p in doc["pareto"]:
        assert p["metrics"]["ram_bytes"] <= 16 * 1024 and p["metrics"]["latency_ms_est"] <= 20


def test_a_study_of_an_earlier_version_is_checked_against_its_trials_space():
    """A study without the `space` attribute (made before it existed): its trials' parameter choices are
    compared with the space; another space is refused naming the key (Optuna would refuse the changed
    choices with a traceback at the first trial), the same one is recorded."""
    from pipeline.errors import UserError
    from pipeline.search import _same_space

    space = _space()
    old = {k: v for k, v in space.items() if k != "filter_growth"}
    old["filters"] = [2, 4, 8]
    for study_space, ok in ((old, False), (space, True)):
        study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
        study.sampler = optuna.samplers.RandomSampler(seed=0)
        for _ in range(10):
            tr = study.ask()
            suggest_arch(tr, study_space, (1, 28, 28), 10)
            study.tell(tr, [0.5, 1.0, 1.0])
        if ok:
            _same_space(study, space, "s")
            assert study.user_attrs["space"]["filters"] == space["filters"]
        else:
            with pytest.raises(UserError, match=r"space\.\w+=.*: the study s was searched with space\."):
                _same_space(study, space, "s")
            assert "space" not in study.user_attrs
