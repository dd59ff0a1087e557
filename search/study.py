"""The constrained multi-objective Optuna study.

Objectives: validation accuracy (maximise), a memory figure (minimise; ram_bytes by default) and the
latency estimate (minimise). Hard constraints through `trial.set_constraint`, each a violation relative
to its budget (feasible when <= 0): RAM, flash, latency. An infeasible candidate is scored by the
memory and latency models alone and never trained. A candidate whose ArchSpec hash an earlier complete
trial already trained reuses that result.

`n_trials` is the study's total: a re-run (or a run after an interruption) resumes the study from its
storage and runs only the trials still missing; trials left RUNNING by a killed process are failed
by Optuna's heartbeat and run again.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna

from ebnn_core import ArchSpec, Device, MemoryReport, latency_ms, memory_plan

from .space import suggest_arch

MEMORY_OBJECTIVES = ("ram_bytes", "model_bytes", "flash_bytes")
DIRECTIONS = ("maximize", "minimize", "minimize")
HEARTBEAT_S = 10
GRACE_S = 30


@dataclass
class Budgets:
    ram_bytes: int | None
    flash_bytes: int | None
    latency_ms: float | None

    def violations(self, ram: int, flash: int, lat: float) -> dict[str, float]:
        """Relative violation per constraint: (value - budget) / budget; <= 0 is feasible."""
        v = {}
        for key, val, budget in (("ram", ram, self.ram_bytes), ("flash", flash, self.flash_bytes),
                                 ("latency", lat, self.latency_ms)):
            v[key] = -1.0 if budget is None else (val - budget) / budget
        return v


@dataclass
class TrialResult:
    """What one trial produced; the tracker logs it."""

    number: int
    spec: ArchSpec
    metrics: dict[str, float]
    violations: dict[str, float]
    feasible: bool
    params: dict[str, Any]
    reused_from: int | None = None
    trained: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def make_sampler(cfg: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    name = cfg.get("name")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(cfg.get("n_startup_trials", 10)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(cfg.get("population_size", 20)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler.name={name}: choose one of tpe, nsga2, random")


def open_study(name: str, storage_url: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = optuna.storages.RDBStorage(storage_url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=list(DIRECTIONS),
                                load_if_exists=True)
    if [d.name.lower() for d in study.directions] != list(DIRECTIONS):
        raise ValueError(f"study_name={name}: the stored study has directions "
                         f"{[d.name.lower() for d in study.directions]}, not {list(DIRECTIONS)}")
    return study


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def feasible(t: optuna.trial.FrozenTrial) -> bool:
    return all(c <= 0 for c in (t.constraints or {}).values())


def pareto_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The feasible Pareto set (Optuna's best_trials honour constraints), one trial per ArchSpec: a
    trial that reused an earlier result stands for the same network and is left out."""
    seen: set[str] = set()
    out = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        h = t.user_attrs.get("arch_hash")
        if h not in seen:
            seen.add(h)
            out.append(t)
    return out


class Objective:
    """Scores one trial. `train_fn(spec) -> dict` trains at screening fidelity and returns at least
    val_accuracy and train_seconds; `on_result(TrialResult)` logs it (MLflow)."""

    def __init__(self, space: dict, input_shape, classes: int, device: Device, budgets: Budgets,
                 objective_memory: str, train_fn: Callable[[ArchSpec], dict],
                 on_start: Callable[[optuna.trial.Trial], None] | None = None,
                 on_result: Callable[[TrialResult], None] | None = None,
                 on_fail: Callable[[optuna.trial.Trial, BaseException], None] | None = None,
                 memory_fn: Callable[[ArchSpec, Device], MemoryReport] = memory_plan):
        """memory_fn(spec, device): the memory model; the stage passes one whose stack figure is the
        compiled inference's (validation.stack), tried only when static RAM alone fits the budget."""
        if objective_memory not in MEMORY_OBJECTIVES:
            raise ValueError(f"objective_memory={objective_memory}: choose one of {', '.join(MEMORY_OBJECTIVES)}")
        self.space, self.input_shape, self.classes = space, tuple(input_shape), classes
        self.device, self.budgets, self.objective_memory = device, budgets, objective_memory
        self.train_fn, self.on_start, self.on_result, self.on_fail = train_fn, on_start, on_result, on_fail
        self.memory_fn = memory_fn

    def __call__(self, trial: optuna.trial.Trial) -> tuple[float, float, float]:
        try:
            return self._score(trial)
        except BaseException as e:  # interrupted or broken: the tracker closes the trial's run
            if self.on_fail:
                self.on_fail(trial, e)
            raise

    def _score(self, trial: optuna.trial.Trial) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        spec = suggest_arch(trial, self.space, self.input_shape, self.classes)
        lat = latency_ms(spec, self.device)
        mem = memory_plan(spec, self.device, stack_bytes=0)  # static RAM: a lower bound, no compiler needed
        viol = self.budgets.violations(mem.ram_bytes, mem.flash_bytes, lat)
        if viol.get("ram", 0) <= 0:
            mem = self.memory_fn(spec, self.device)
            viol = self.budgets.violations(mem.ram_bytes, mem.flash_bytes, lat)
        for key, v in viol.items():
            trial.set_constraint(key, v)
        ok = all(v <= 0 for v in viol.values())
        metrics: dict[str, float] = {**{k: v for k, v in mem.as_dict().items() if k != "params_in"},
                                     "latency_ms_est": lat}
        trial.set_user_attr("arch", spec.to_dict())
        trial.set_user_attr("arch_hash", spec.short_hash())
        trial.set_user_attr("arch_desc", spec.describe())
        trial.set_user_attr("feasible", ok)
        if self.on_start:
            self.on_start(trial)
        result = TrialResult(trial.number, spec, metrics, viol, ok, dict(trial.params))
        if not ok:
            metrics["val_accuracy"] = 0.0
            metrics["scoring_ms"] = (time.perf_counter() - t0) * 1000
        else:
            prior = self._trained_before(trial.study, spec.short_hash())
            if prior is not None:
                result.reused_from = prior.number
                for k in ("val_accuracy", "train_seconds"):
                    metrics[k] = float(prior.user_attrs.get(k, 0.0))
                trial.set_user_attr("reused_from", prior.number)
            else:
                out = self.train_fn(spec)
                result.trained = True
                metrics["val_accuracy"] = float(out["val_accuracy"])
                metrics["train_seconds"] = float(out["train_seconds"])
                result.extra = {k: v for k, v in out.items() if k not in metrics}
                trial.set_user_attr("trained", True)
            trial.set_user_attr("val_accuracy", metrics["val_accuracy"])
            trial.set_user_attr("train_seconds", metrics["train_seconds"])
        for k in ("ram_bytes", "flash_bytes", "model_bytes", "latency_ms_est"):
            trial.set_user_attr(k, metrics[k])
        if self.on_result:
            self.on_result(result)
        return metrics["val_accuracy"], float(metrics[self.objective_memory]), float(lat)

    @staticmethod
    def _trained_before(study: optuna.Study, arch_hash: str) -> optuna.trial.FrozenTrial | None:
        for t in completed(study):
            if t.user_attrs.get("arch_hash") == arch_hash and t.user_attrs.get("trained"):
                return t
        return None
