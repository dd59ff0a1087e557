"""promote: the study's Pareto front retrained, scored, folded and registered; codegen and validate of the
promoted models; resumption; input errors."""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT, run_cli

FAST = ["progress=false", "fidelity.epochs=1", "fidelity.train_subset=2000"]
STUDY = "mnist-curie-ram15-lat1000-smoke"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A smoke search with at least two Pareto-optimal trials (shared by the tests of this module)."""
    art = tmp_path_factory.mktemp("art")
    r = run_cli("search", "profile=smoke", "progress=false", "n_trials=6", f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((art / "search" / STUDY / "pareto.json").read_text())
    assert len(doc["pareto"]) >= 2, doc["pareto"]
    return art


def _copy(src, tmp_path):
    dst = tmp_path / "art"
    shutil.copytree(src, dst)
    pj = dst / "search" / STUDY / "pareto.json"  # the copy's own MLflow store
    doc = json.loads(pj.read_text())
    doc["mlflow_tracking_uri"] = f"sqlite:///{dst / 'mlflow.db'}"
    pj.write_text(json.dumps(doc))
    return dst


def _versions(art, name=f"ebnn-{STUDY}"):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{art / 'mlflow.db'}", registry_uri=f"sqlite:///{art / 'mlflow.db'}")
    return c, c.search_model_versions(f"name='{name}'")


def test_promote_registers_every_pareto_model_and_reruns_train_nothing(searched, tmp_path):
    art = _copy(searched, tmp_path)
    r = run_cli("promote", "profile=smoke", *FAST, f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((art / "promote" / STUDY / "promoted.json").read_text())
    pareto = json.loads((art / "search" / STUDY / "pareto.json").read_text())["pareto"]
    assert [m["trial"] for m in doc["models"]] == [t["number"] for t in pareto]
    for m in doc["models"]:
        assert m["disagreements"] == 0 and 0.3 < m["test_accuracy"] <= 1
        assert (art / "promote" / STUDY / m["arch_hash"] / "folded.npz").is_file()
    client, versions = _versions(art)
    assert sorted(v.tags["arch_hash"] for v in versions) == sorted(m["arch_hash"] for m in doc["models"])
    for v in versions:
        files = {f.path for f in client.list_artifacts(v.run_id, "model")}
        assert {"model/folded.npz", "model/arch.json", "model/metrics.json"} <= files
        assert v.tags["device"] == "curie" and float(v.tags["test_accuracy"]) > 0.3 and int(v.tags["ram_bytes"]) > 0
    # the printed link opens the study's saved view of the promoted runs, the device's validation columns in it
    exp = client.get_experiment_by_name("ebnn-promote")
    state = json.loads(json.loads(exp.tags[f"mlflow.sharedViewState.promoted-{STUDY}"])["state"])
    assert "metrics.`test_accuracy`" in state["selectedColumns"]
    assert "metrics.`validate.curie.ram_total_measured`" in state["selectedColumns"]
    shown = client.search_runs([exp.experiment_id], filter_string=state["searchFilter"])
    assert sorted(r_.data.tags["arch_hash"] for r_ in shown) == sorted(m["arch_hash"] for m in doc["models"])
    assert f"viewStateShareKey=promoted-{STUDY}" in r.stdout and "workflowType=machine_learning" in r.stdout
    stamps = {p: p.stat().st_mtime_ns for p in (art / "promote" / STUDY).glob("*/folded.npz")}
    r = run_cli("promote", "profile=smoke", *FAST, f"paths.artifacts={art}")
    assert r.returncode == 0 and r.stdout.count("reused") == len(doc["models"]) and "training" not in r.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(_versions(art)[1]) == len(versions)
    # every promoted model as C by a documented name, bit-exact on the whole test set
    r = run_cli("codegen", "profile=smoke", "promoted=all", f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    for m in doc["models"]:
        lib = art / "c" / STUDY / m["arch_hash"]
        r = run_cli("validate", f"lib={lib}", "devices=[host]", f"paths.artifacts={art}")
        assert r.returncode == 0 and "host: ok, 10000 images" in r.stdout, r.stdout + r.stderr
    r = run_cli("codegen", "profile=smoke", f"promoted={doc['models'][0]['registry_version']}", f"paths.artifacts={art}")
    assert r.returncode == 0 and doc["models"][0]["arch_hash"] in r.stdout


def test_top_k_by_hypervolume_contribution(searched, tmp_path):
    art = _copy(searched, tmp_path)
    r = run_cli("promote", "profile=smoke", *FAST, "select=top_k", "top_k=1", f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((art / "promote" / STUDY / "promoted.json").read_text())
    pareto = json.loads((art / "search" / STUDY / "pareto.json").read_text())
    from pipeline.promote import hypervolume_rank

    best = pareto["pareto"][hypervolume_rank(pareto["pareto"], pareto["budgets"])[0]]
    assert [m["trial"] for m in doc["models"]] == [best["number"]]


def test_promote_resumes_after_a_kill_without_retraining(searched, tmp_path):
    art = _copy(searched, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "pipeline", "promote", "profile=smoke", *FAST, "fidelity.train_subset=20000",
                          f"paths.artifacts={art}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in p.stdout:
        if line.startswith("[2/"):  # the first model is done, the second is training
            break
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=60)
    done = list((art / "promote" / STUDY).glob("*/metrics.json"))
    assert len(done) == 1 and not (art / "promote" / STUDY / "promoted.json").exists()
    stamp = done[0].stat().st_mtime_ns
    r = run_cli("promote", "profile=smoke", *FAST, "fidelity.train_subset=20000", f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("reused") == 1 and done[0].stat().st_mtime_ns == stamp
    assert len(json.loads((art / "promote" / STUDY / "promoted.json").read_text())["models"]) >= 2


def test_two_fusions_of_one_network_train_once_and_both_run_bit_exact(searched, tmp_path):
    """A front holding one network in two fusions: promote trains it once; both models carry the same
    weights and accuracy, their own fusion, RAM and C, and each C equals the reference on the test set."""
    art = _copy(searched, tmp_path)
    pj = art / "search" / STUDY / "pareto.json"
    doc = json.loads(pj.read_text())
    base = doc["pareto"][0]
    from ebnn_core import ArchSpec

    entries = []
    for n, fusion in ((900, "recompute"), (901, "rowbuffer")):
        spec = ArchSpec.from_dict({"input_shape": [1, 28, 28], "classes": 10, "input_mode": "uint8", "blocks": [
            {"kind": "conv", "filters": 4, "kernel": 3, "pool": 2, "fusion": fusion}]})
        entries.append({**base, "number": n, "arch": spec.to_dict(), "arch_hash": spec.short_hash(),
                        "arch_desc": spec.describe()})
    doc["pareto"] = entries
    pj.write_text(json.dumps(doc))
    r = run_cli("promote", "profile=smoke", *FAST, f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("training 1 epochs") == 1 and "(another fusion)" in r.stdout
    models = json.loads((art / "promote" / STUDY / "promoted.json").read_text())["models"]
    assert [m["arch_desc"] for m in models] == ["u8-C4k3P2r", "u8-C4k3P2b"]
    assert models[0]["test_accuracy"] == models[1]["test_accuracy"] and models[0]["ram_bytes"] != models[1]["ram_bytes"]
    from ebnn_core import FoldedModel

    a, b = (FoldedModel.load(m["folded"]) for m in models)
    assert [x.spec.short_hash() for x in (a, b)] == [m["arch_hash"] for m in models]
    assert all(np.array_equal(la.weights, lb.weights) for la, lb in zip(a.layers, b.layers))
    said = json.loads((art / "promote" / STUDY / models[1]["arch_hash"] / "metrics.json").read_text())
    assert said["weights_from"] == models[0]["arch_hash"] == b.meta["weights_from"] and said["train_seconds"] == 0
    # the sibling lost, its network promoted before: made again from that file, nothing trained
    shutil.rmtree(art / "promote" / STUDY / models[1]["arch_hash"])
    r = run_cli("promote", "profile=smoke", *FAST, f"paths.artifacts={art}")
    assert r.returncode == 0 and "training" not in r.stdout and "(another fusion)" in r.stdout, r.stdout + r.stderr
    again = FoldedModel.load(art / "promote" / STUDY / models[1]["arch_hash"] / "folded.npz")
    assert all(np.array_equal(la.weights, lb.weights) for la, lb in zip(a.layers, again.layers))
    r = run_cli("codegen", "profile=smoke", "promoted=all", f"paths.artifacts={art}")
    assert r.returncode == 0, r.stderr
    for m in models:
        r = run_cli("validate", f"lib={art / 'c' / STUDY / m['arch_hash']}", "devices=[host]", f"paths.artifacts={art}")
        assert r.returncode == 0 and "host: ok, 10000 images" in r.stdout, r.stdout + r.stderr


def test_bad_input_one_line_exit_2(searched, tmp_path):
    r = run_cli("promote", "profile=smoke", f"paths.artifacts={tmp_path}")
    assert r.returncode == 2 and f"study_name={STUDY}: no study there" in r.stderr
    art = _copy(searched, tmp_path)
    r = run_cli("promote", "profile=smoke", "select=top_k", "top_k=0", f"paths.artifacts={art}")
    assert r.returncode == 2 and "top_k=0: must be a positive integer" in r.stderr
    r = run_cli("promote", "profile=smoke", "select=best", f"paths.artifacts={art}")
    assert r.returncode == 2 and "select=best: choose one of all, top_k" in r.stderr
    # a registry name already used by another study
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{art / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("taken", tags={"study": "other"})
    r = run_cli("promote", "profile=smoke", "registry.name=taken", *FAST, f"paths.artifacts={art}")
    assert r.returncode == 2 and "registry.name=taken: already holds the models of study 'other'" in r.stderr
    assert not (art / "promote").exists()  # refused before any training
    # a study with no feasible trial
    pj = art / "search" / STUDY / "pareto.json"
    doc = json.loads(pj.read_text())
    doc["pareto"] = []
    pj.write_text(json.dumps(doc))
    r = run_cli("promote", "profile=smoke", f"paths.artifacts={art}")
    assert r.returncode == 2 and "has no feasible trial to promote" in r.stderr
    for r in (r,):
        assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1 and "Traceback" not in r.stderr
    r = run_cli("codegen", "profile=smoke", "promoted=all", f"paths.artifacts={tmp_path / 'none'}")
    assert r.returncode == 2 and "promoted=all: the study" in r.stderr


def test_hypervolume_contributions_exact():
    from search.hypervolume import contributions, hypervolume

    assert hypervolume(np.array([[0.5, 0.5]]), np.array([1.0, 1.0])) == pytest.approx(0.25)
    pts = np.array([[0.5, 0.2], [0.2, 0.5], [0.6, 0.6]])
    assert contributions(pts, np.array([1.0, 1.0])) == pytest.approx([0.15, 0.15, 0.0])
    cube = np.array([[0.0, 0.0, 0.0]])
    assert hypervolume(cube, np.array([1.0, 2.0, 3.0])) == pytest.approx(6.0)
