"""Multi-fidelity rungs: after the screening trials, the most promising ArchSpecs train again at higher
fidelity within the same study, and every figure says at which fidelity it was measured.

    rungs = parse_rungs(cfg["rungs"])                     # [Rung(epochs=6, train_subset=None, top=0.3)]
    run_rungs(study, rungs, objective_memory, train_at)   # train_at(spec, rung_index, rung) -> info
    best = best_figures(study, rungs)                     # per ArchSpec: the highest rung's figures

Optuna does not prune multi-objective studies, so the rungs are built here. Rung 0 is the screening
(each feasible ArchSpec's first trial, the trial's own values). Rung r takes the top `top` fraction
(at least one) of the ArchSpecs that reached rung r - 1, in non-dominated order of their rung r - 1
figures (accuracy up, the memory objective and latency down; within a front, the more accurate
first), and trains each at its epochs and training subset. A result is a study user attribute
`rung<r>:<network hash>` (val_accuracy, train_seconds, epochs, train_subset, trial; one per network:
every screened ArchSpec that differs only in fusion, candidate or not, reaches rung r with it) written
when its training ends, so an interrupted rung phase loses at most the model in training, and the same
command resumes it. Several workers share the phase: a worker claims a model (`rung<r>:<hash>:claim`, its
worker id) and re-reads the claim before training (a process's threads claim one at a time; between
processes a claim written more than CLAIM_SETTLE_S after another's check can still lead to one model
trained twice, which costs time, never a wrong figure); a claim of a process on this host that is gone, or
older than CLAIM_EXPIRY_S elsewhere, or one of this process whose training was interrupted, is taken
over.
"""
from __future__ import annotations

import itertools
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import optuna

from ebnn_core import ArchSpec

from .study import WORKER, completed, feasible, is_repeat, network_hash

CLAIM_EXPIRY_S = 3600.0
CLAIM_SETTLE_S = 1.0
_ACTIVE: set[str] = set()  # this process's live claims (threads share a worker id)
_CLAIMS = itertools.count()
_CLAIM_LOCK = threading.Lock()


class RungError(ValueError):
    """A rung setting that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class Rung:
    epochs: int
    train_subset: int | None
    top: float  # fraction of the previous rung's ArchSpecs that go on

    def fidelity(self, index: int) -> dict[str, Any]:
        return {"name": f"rung{index}", "epochs": self.epochs, "train_subset": self.train_subset}


def parse_rungs(value: Any, key: str = "rungs") -> list[Rung]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RungError(f"{key}={value!r}: must be a list of {{epochs, train_subset, top}}")
    out = []
    for i, r in enumerate(value):
        k = f"{key}[{i}]"
        if not isinstance(r, dict) or set(r) - {"epochs", "train_subset", "top"}:
            raise RungError(f"{k}={r!r}: must be a mapping of epochs, train_subset, top")
        ep, sub, top = r.get("epochs"), r.get("train_subset"), r.get("top")
        if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
            raise RungError(f"{k}.epochs={ep!r}: must be a positive integer")
        if sub is not None and (isinstance(sub, bool) or not isinstance(sub, int) or sub < 1):
            raise RungError(f"{k}.train_subset={sub!r}: must be a positive integer or null (all)")
        if isinstance(top, bool) or not isinstance(top, (int, float)) or not 0 < top <= 1:
            raise RungError(f"{k}.top={top!r}: must be a fraction in (0, 1]")
        out.append(Rung(ep, sub, float(top)))
    return out


def result_key(index: int, net_hash: str) -> str:
    return f"rung{index}:{net_hash}"


def _result(attrs: dict, index: int, t: optuna.trial.FrozenTrial) -> dict | None:
    """The rung result of trial t's network (studies of earlier versions keyed it by the ArchSpec)."""
    return attrs.get(result_key(index, network_hash(t))) or attrs.get(result_key(index, t.user_attrs["arch_hash"]))


def screened(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """Rung 0: each feasible ArchSpec's first trial that trained it (a repeat stands for the same network)."""
    out: dict[str, optuna.trial.FrozenTrial] = {}
    for t in sorted(completed(study), key=lambda t: t.number):
        h = t.user_attrs.get("arch_hash")
        if feasible(t) and not is_repeat(t) and h not in out:
            out[h] = t
    return out


def nondominated_order(points: np.ndarray) -> list[int]:
    """Indices of minimisation points by front (non-dominated sorting), within a front by the first
    coordinate (then the index)."""
    remaining = list(range(len(points)))
    order: list[int] = []
    while remaining:
        front = [i for i in remaining
                 if not any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in remaining)]
        front.sort(key=lambda i: (points[i][0], i))
        order += front
        remaining = [i for i in remaining if i not in front]
    return order


def _figures(study: optuna.Study, upto: int) -> dict[str, dict[str, Any]]:
    """Per screened ArchSpec, its figures at the highest rung <= `upto` it reached."""
    attrs = study.user_attrs
    out = {}
    for h, t in screened(study).items():
        fig = {"trial": t.number, "val_accuracy": float(t.values[0]), "memory": float(t.values[1]),
               "latency": float(t.values[2]), "rung": 0}
        for r in range(1, upto + 1):
            res = _result(attrs, r, t)
            if res is None:
                break
            fig.update(val_accuracy=float(res["val_accuracy"]), rung=r)
        out[h] = fig
    return out


def candidates(study: optuna.Study, rungs: list[Rung], index: int) -> list[str]:
    """The ArchSpec hashes rung `index` (1-based) trains: the top fraction of those that reached rung
    index - 1, in non-dominated order of their figures there."""
    figs = {h: f for h, f in _figures(study, index - 1).items() if f["rung"] == index - 1}
    if not figs:
        return []
    hs = sorted(figs)
    pts = np.array([[-figs[h]["val_accuracy"], figs[h]["memory"], figs[h]["latency"]] for h in hs])
    k = max(1, math.ceil(rungs[index - 1].top * len(hs)))
    return [hs[i] for i in nondominated_order(pts)[:k]]


def best_figures(study: optuna.Study, rungs: list[Rung]) -> dict[str, dict[str, Any]]:
    """Per screened ArchSpec (arch hash): trial, val_accuracy at its highest rung, memory, latency, rung."""
    return _figures(study, len(rungs))


def _claim_stale(value: str | None) -> bool:
    if not value:
        return True
    worker, _, stamp = value.rpartition("@")
    host, _, pid = worker.split("#")[0].rpartition(":")
    try:
        age = time.time() - float(stamp)
    except ValueError:
        return True
    if host == socket.gethostname():
        if pid == str(os.getpid()):
            return value not in _ACTIVE  # ours: stale unless a thread of ours holds it (training or settling)
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            return True
        except PermissionError:
            pass
    return age > CLAIM_EXPIRY_S


def run_rungs(study: optuna.Study, rungs: list[Rung], train_at: Callable[[ArchSpec, int, Rung], dict],
              on_start: Callable[[int, ArchSpec, int, int], None] | None = None,
              on_result: Callable[[int, str, dict], None] | None = None, settle_s: float = CLAIM_SETTLE_S,
              poll_s: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> int:
    """Train every rung's candidates that have no result yet; returns how many this worker trained. A rung
    is complete (every candidate has its result, whichever worker trained it) before the next one is
    chosen. train_at(spec, index, rung) -> {"val_accuracy", "train_seconds", ...}; on_start(index, spec,
    k, n) before a model, on_result(index, arch hash, record) after, once per screened ArchSpec of the
    model's network, candidate or not: the network's figure is theirs too (record["trial"]: that
    ArchSpec's first trial)."""
    trained = 0
    for index, rung in enumerate(rungs, start=1):
        first = screened(study)
        todo: dict[str, list[str]] = {}  # network hash -> its candidate ArchSpecs (fusions share one model)
        for h in candidates(study, rungs, index):
            todo.setdefault(network_hash(first[h]), []).append(h)
        nets = list(todo)
        same_net = {n: [h for h in first if network_hash(first[h]) == n] for n in nets}  # candidates or not
        while True:
            attrs = study.user_attrs
            missing = [n for n in nets if _result(attrs, index, first[todo[n][0]]) is None]
            if not missing:
                break
            took = False
            for net in missing:
                h = todo[net][0]
                key = result_key(index, net)
                claim_key = key + ":claim"
                with _CLAIM_LOCK:  # this process's threads check and write a claim one at a time
                    attrs = study.user_attrs
                    if key in attrs or not _claim_stale(attrs.get(claim_key)):
                        continue  # done meanwhile, or another worker trains it
                    mine = f"{WORKER}#{next(_CLAIMS)}@{time.time():.3f}"  # unique, also between threads
                    _ACTIVE.add(mine)  # from now on: this process's other threads see the claim as live
                    try:
                        study.set_user_attr(claim_key, mine)
                    except BaseException:
                        _ACTIVE.discard(mine)
                        raise
                try:
                    sleep(settle_s)
                    attrs = study.user_attrs
                    if attrs.get(claim_key) != mine:
                        continue  # claimed at the same moment by another worker, which wrote last
                    if key in attrs:
                        continue  # the claim taken over was stale because its model had just been written
                    t = first[h]
                    spec = ArchSpec.from_dict(t.user_attrs["arch"])
                    if on_start:
                        on_start(index, spec, nets.index(net) + 1, len(nets))
                    info = train_at(spec, index, rung)
                    record = {"val_accuracy": float(info["val_accuracy"]),
                              "train_seconds": float(info["train_seconds"]),
                              "epochs": rung.epochs, "train_subset": rung.train_subset, "trial": t.number}
                    study.set_user_attr(key, record)  # before the claim goes stale: nobody trains it again
                finally:
                    _ACTIVE.discard(mine)
                trained += 1
                took = True
                if on_result:
                    for other in same_net[net]:  # each ArchSpec of the network carries the figure
                        on_result(index, other, {**record, "trial": first[other].number})
            if not took:
                sleep(poll_s)  # the rest are in other workers' hands
    return trained


def front(study: optuna.Study, rungs: list[Rung]) -> list[tuple[optuna.trial.FrozenTrial, dict[str, Any]]]:
    """The feasible Pareto set over each ArchSpec's best figures (accuracy at its highest rung; memory and
    latency do not depend on training), as (its first trial, figures), by trial number."""
    figs = best_figures(study, rungs)
    hs = sorted(figs, key=lambda h: figs[h]["trial"])
    pts = np.array([[-figs[h]["val_accuracy"], figs[h]["memory"], figs[h]["latency"]] for h in hs])
    keep = [i for i in range(len(hs))
            if not any(np.all(pts[j] <= pts[i]) and np.any(pts[j] < pts[i]) for j in range(len(hs)))]
    first = screened(study)
    return [(first[hs[i]], figs[hs[i]]) for i in keep]
