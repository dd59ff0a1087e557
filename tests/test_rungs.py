"""Multi-fidelity rungs (search/rungs.py): which ArchSpecs go on, what is recorded, resumption, workers."""
import threading

import numpy as np
import optuna
import pytest

from search.rungs import (Rung, RungError, best_figures, candidates, front, nondominated_order, parse_rungs,
                          result_key, run_rungs, screened)
from search.space import RandomChooser  # noqa: F401  (the space module the study samples from)
from search.study import Budgets, Objective, network_hash, run_worker

from .test_resources import device
from .test_search import _space


def _study(tmp_path, n=16, seed=4, **space_keys):
    """A real study of screened trials (a fake train_fn: accuracy from the ArchSpec hash)."""
    def train_fn(spec):
        h = int(spec.short_hash()[:6], 16)
        return {"val_accuracy": 0.5 + (h % 1000) / 4000, "train_seconds": 0.01}

    space = {**_space(), "conv_blocks": [0, 1], "dense_blocks": [0, 1], "filters": [2, 4, 8], "units": [16, 32, 64],
             **space_keys}
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                storage=f"sqlite:///{tmp_path / 'o.db'}", sampler=optuna.samplers.RandomSampler(seed))
    obj = Objective(space, (1, 28, 28), 10, device("curie"), Budgets(15 * 1024, None, None), "ram_bytes", train_fn,
                    n_trials=n, max_trials=4 * n)
    run_worker(study, obj, n, max_trials=4 * n, poll_s=0.01)
    return study


def _fake_train_at(calls, fail_on=None):
    def train_at(spec, index, rung):
        calls.append((index, spec.short_hash()))
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt("interrupted in the rung phase")
        h = int(spec.short_hash()[6:12], 16)
        return {"val_accuracy": 0.6 + (h % 1000) / 3000 + 0.05 * index, "train_seconds": 0.5 * rung.epochs}
    return train_at


def test_parse_rungs_names_the_key():
    assert parse_rungs(None) == [] and parse_rungs([]) == []
    assert parse_rungs([{"epochs": 4, "train_subset": None, "top": 0.25}]) == [Rung(4, None, 0.25)]
    for bad, needle in [({"epochs": 0, "top": 0.5}, "rungs[0].epochs=0: must be a positive integer"),
                        ({"epochs": 2, "top": 0}, "rungs[0].top=0: must be a fraction in (0, 1]"),
                        ({"epochs": 2, "top": 1.5}, "rungs[0].top=1.5"),
                        ({"epochs": 2, "top": 0.5, "train_subset": -3}, "rungs[0].train_subset=-3"),
                        ({"epochs": 2, "top": 0.5, "lr": 1}, "rungs[0]={")]:
        with pytest.raises(RungError) as e:
            parse_rungs([bad])
        assert needle in str(e.value), str(e.value)
    with pytest.raises(RungError, match="rungs=3: must be a list"):
        parse_rungs(3)


def test_nondominated_order():
    pts = np.array([[-0.9, 5, 5], [-0.8, 1, 1], [-0.7, 2, 2], [-0.95, 9, 9], [-0.6, 3, 3]])
    # front 1: 0, 1, 3 (by accuracy: 3, 0, 1); front 2: 2; front 3: 4
    assert nondominated_order(pts) == [3, 0, 1, 2, 4]


def test_rungs_train_the_top_fraction_record_fidelity_and_resume(tmp_path):
    study = _study(tmp_path)
    first = screened(study)
    assert len(first) >= 8
    rungs = [Rung(3, None, 0.5), Rung(6, None, 0.5)]
    want1 = candidates(study, rungs, 1)
    assert len(want1) == int(np.ceil(0.5 * len(first)))
    # rung 1 takes the whole screening front first
    scr_front = {t.user_attrs["arch_hash"] for t, _ in front(study, [])}
    assert scr_front <= set(want1) or set(want1) <= scr_front

    net = {h: network_hash(t) for h, t in first.items()}  # results are per network (fusions share one)

    def once(hs):  # the first ArchSpec of each network, in order
        seen = {}
        for h in hs:
            seen.setdefault(net[h], h)
        return list(seen.values())

    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_rungs(study, rungs, _fake_train_at(calls, fail_on=3), settle_s=0, poll_s=0)
    done = [h for h in once(want1) if result_key(1, net[h]) in study.user_attrs]
    assert len(done) == 2  # the results before the interrupt are kept
    calls.clear()
    run_rungs(study, rungs, _fake_train_at(calls), settle_s=0, poll_s=0)
    assert [c for c in calls if c[0] == 1] == [(1, h) for h in once(want1) if h not in done]  # only the missing
    want2 = candidates(study, rungs, 2)
    assert set(want2) <= set(want1) and len(want2) == int(np.ceil(0.5 * len(want1)))
    assert [c for c in calls if c[0] == 2] == [(2, h) for h in once(want2)]
    trained_by = {net[x]: x for x in once(want1)}
    for h in want1:
        rec = study.user_attrs[result_key(1, net[h])]
        assert rec["epochs"] == 3 and rec["train_subset"] is None and rec["trial"] == first[trained_by[net[h]]].number
    best = best_figures(study, rungs)
    for h, f in best.items():
        assert f["rung"] == (2 if h in want2 else 1 if h in want1 else 0)
        want = study.user_attrs[result_key(f["rung"], net[h])]["val_accuracy"] if f["rung"] else first[h].values[0]
        assert f["val_accuracy"] == want
    # the front is over each ArchSpec's best figure: no member is dominated by another's best
    pts = {h: (-f["val_accuracy"], f["memory"], f["latency"]) for h, f in best.items()}
    members = {t.user_attrs["arch_hash"] for t, _ in front(study, rungs)}
    for h in members:
        assert not any(all(a <= b for a, b in zip(pts[o], pts[h])) and pts[o] != pts[h] for o in pts)
    # nothing left: a third run trains nothing
    calls.clear()
    assert run_rungs(study, rungs, _fake_train_at(calls), settle_s=0, poll_s=0) == 0 and not calls


def test_two_workers_share_a_rung_without_training_twice(tmp_path):
    study = _study(tmp_path, n=12, seed=7)
    rungs = [Rung(2, None, 0.6)]
    first = screened(study)
    nets = {}
    for h in candidates(study, rungs, 1):
        nets.setdefault(network_hash(first[h]), h)  # other fusions of a network share its result
    want = list(nets.values())
    calls, lock = [], threading.Lock()

    def train_at(spec, index, rung):
        with lock:
            calls.append(spec.short_hash())
        return {"val_accuracy": 0.7, "train_seconds": 0.2}

    def worker():
        s = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{tmp_path / 'o.db'}")
        run_rungs(s, rungs, train_at, settle_s=0.3, poll_s=0.05)

    ts = [threading.Thread(target=worker) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(calls) == sorted(want)  # every candidate once, by one of the two workers
    assert all(result_key(1, n) in study.user_attrs for n in nets)


def test_other_fusions_of_a_network_share_its_rung_result(tmp_path):
    """Two screened ArchSpecs that differ only in fusion: the rung trains the network once and both
    ArchSpecs carry its figure (their memory and latency stay their own)."""
    study = _study(tmp_path, n=4, seed=5, conv_blocks=[1, 1], dense_blocks=[0, 0], filters=[4], kernel=[3],
                   stride=[1], padding=[0], pool=[2, 3], pool_overlap=[False])  # 4 networks, 3 fusions each
    first = screened(study)
    by_net = {}
    for h, t in first.items():
        by_net.setdefault(network_hash(t), []).append(h)
    shared = [hs for hs in by_net.values() if len(hs) > 1]
    assert shared, "the study should hold two fusions of one network"
    rungs = [Rung(2, None, 1.0)]
    calls = []
    run_rungs(study, rungs, _fake_train_at(calls), settle_s=0, poll_s=0)
    assert len(by_net) == 4 and len(calls) == 4 == len({c[1] for c in calls})
    best = best_figures(study, rungs)
    for hs in shared:
        accs = {best[h]["val_accuracy"] for h in hs}
        assert len(accs) == 1 and all(best[h]["rung"] == 1 for h in hs)
        assert len({(best[h]["memory"], best[h]["latency"]) for h in hs}) == len(hs)
