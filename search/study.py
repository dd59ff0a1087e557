"""The constrained multi-objective Optuna study.

Objectives: validation accuracy (maximise), a memory figure (minimise; ram_bytes by default) and the
latency (minimise): measured under the device's emulator (`latency_fn`, the stage's default) or the
latency model's estimate. Hard constraints through `trial.set_constraint`, each a violation relative
to its budget (feasible when <= 0): RAM, flash, latency. The models screen first: a candidate over the
RAM or flash budget, or whose latency estimate is over the budget by more than the model's stated
error (`device.latency_tolerance`), is refused unmeasured; the emulator decides the rest. An
infeasible candidate is never trained. A candidate whose network (ArchSpec.network_hash: the ArchSpec
less its fusion choices, which change RAM and latency but not the function) an earlier complete trial
already trained reuses that accuracy; its memory and latency are its own.

`n_trials` is the study's total over every worker and every run, counted in networks evaluated:
`run_worker` runs trials until the storage holds `n_trials` COMPLETE trials that are not free. A
free trial is answered from the record in milliseconds and costs no budget: a repeat (user attribute
`repeat_of`: the earlier COMPLETE trial of the same ArchSpec hash) or another fusion of a trained
network (`sibling_of`: the trial that trained it); `max_trials` (every trial, free ones included)
bounds a sampler that keeps proposing what it has seen. Many workers may share one study (one RDB
storage); two claims keep them exact:

- The budget. Trial creation is serialised by Optuna (the study row is locked while a trial number is
  assigned), so every trial sees all trials numbered below it. Before anything else a trial counts the
  COMPLETE trials plus the RUNNING trials numbered below it, leaving out those known to be free (a
  RUNNING trial counts until it is known); when that reaches `n_trials` (or all of them `max_trials`)
  the budget is spoken for and the trial is PRUNED at once (user attribute `budget=taken`, no
  parameters, no MLflow run). So the trials that go on number at most `n_trials` minus those already
  complete: the highest numbered of them saw every other one RUNNING or COMPLETE. A worker that finds
  the free slots all held by RUNNING trials of other workers waits (they may still fail, or turn out to
  be free) and stops when the study is full.
- The network. A trial writes its decision (user attribute `claim`: the network hash when it is
  feasible, "" when not) before it looks at others; it trains only when no lower-numbered RUNNING trial
  is undecided or claims the same network, and no COMPLETE trial trained it. Otherwise it waits and then
  reuses the result (or trains, if the other trial failed). Waits point only to lower numbers: no
  deadlock, and one network is never trained by two trials at the same time.

Trials left RUNNING by a killed process are failed by Optuna's heartbeat (another worker or the next
run does it) and their slot is run again; the FAIL-ed trial keeps its number. Each trial's sampler
draws from its own seed (seed, trial number), so workers do not propose the same candidates and one
worker replays exactly.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState

from ebnn_core import ArchSpec, Device, MemoryReport, latency_ms, memory_plan

from .interrupts import Interrupted, NoGuard, SignalGuard
from .space import suggest_arch

MEMORY_OBJECTIVES = ("ram_bytes", "model_bytes", "flash_bytes")
LATENCY_SOURCES = {"emulator": "latency_ms_emulated", "model": "latency_ms_est"}  # the objective's name
METRIC_KEYS = {v: k for k, v in LATENCY_SOURCES.items()}
DIRECTIONS = ("maximize", "minimize", "minimize")
HEARTBEAT_S = 10
GRACE_S = 30
POLL_S = 2.0
CLAIM_ATTR = "claim"
REPEAT_ATTR = "repeat_of"  # a trial of an ArchSpec an earlier COMPLETE trial evaluated: no budget used
SIBLING_ATTR = "sibling_of"  # another ArchSpec of a network an earlier trial trained (other fusion): no budget
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # user attribute `worker` of each trial


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
    latency_source: str = "model"  # where metrics["latency_ms"] came from: emulator or model


class _PerTrialSeed:
    """Sampler mixin: before each trial, reseed the sampler's generators from (seed, trial number), so
    concurrent workers with one `seed` draw different candidates and a single worker still replays."""

    _base_seed = 0

    def before_trial(self, study, trial) -> None:
        s = (self._base_seed * 1_000_003 + trial.number) % 2**32
        for obj in (self, getattr(self, "_random_sampler", None)):
            lazy = getattr(obj, "_rng", None)
            if lazy is not None and hasattr(lazy, "rng"):
                lazy.rng.seed(s)
        super().before_trial(study, trial)


class SeededTPESampler(_PerTrialSeed, optuna.samplers.TPESampler):
    pass


class SeededNSGAIISampler(_PerTrialSeed, optuna.samplers.NSGAIISampler):
    pass


class SeededRandomSampler(_PerTrialSeed, optuna.samplers.RandomSampler):
    pass


SAMPLER_KEYS = {"tpe": ("n_startup_trials", "multivariate", "group"), "nsga2": ("population_size",), "random": ()}


def check_sampler(cfg: dict[str, Any]) -> dict[str, Any]:
    """The sampler config's values checked; ValueError names the key and the value."""
    name = cfg.get("name")
    if not isinstance(name, str) or name not in SAMPLER_KEYS:
        raise ValueError(f"sampler.name={name}: choose one of {', '.join(SAMPLER_KEYS)}")
    for key in ("n_startup_trials", "population_size"):
        if key in SAMPLER_KEYS[name] and key in cfg:
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "n_startup_trials" else 2):
                raise ValueError(f"sampler.{key}={v}: must be an integer >= {1 if key == 'n_startup_trials' else 2}")
    for key in ("multivariate", "group"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise ValueError(f"sampler.{key}={cfg[key]}: must be true or false")
    if cfg.get("group") and cfg.get("multivariate") is False:
        raise ValueError("sampler.group=true: needs sampler.multivariate=true (groups are modelled jointly)")
    return cfg


def make_sampler(cfg: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    """The study's sampler. tpe: Optuna's TPE; `multivariate` models the parameters jointly (Optuna's
    default for a multi-objective study is one at a time), `group` (with multivariate) decomposes the
    conditional space into the parameter groups that occur together (search.space draws blocks
    conditionally)."""
    name = check_sampler(cfg).get("name")
    if name == "tpe":
        group = bool(cfg.get("group", False))
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # multivariate, group
        sampler = SeededTPESampler(seed=seed, n_startup_trials=int(cfg.get("n_startup_trials", 10)),
                                   multivariate=bool(cfg.get("multivariate", False)) or group, group=group)
    elif name == "nsga2":
        sampler = SeededNSGAIISampler(seed=seed, population_size=int(cfg.get("population_size", 20)))
    elif name == "random":
        sampler = SeededRandomSampler(seed=seed)
    else:
        raise ValueError(f"sampler.name={name}: choose one of tpe, nsga2, random")
    sampler._base_seed = seed
    return sampler


def open_study(name: str, storage_url: str, sampler: optuna.samplers.BaseSampler,
               on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
               metric_names: list[str] | None = None) -> tuple[optuna.Study, bool]:
    """(study, created): created is True for the one process that created the study (concurrent starts
    race on Optuna's unique study name, not on our code). The storage's schema is created under
    stores.schema_lock. `on_stale(study, trial)` runs whenever this process fails a stale trial.
    metric_names: the objectives' names (optuna-dashboard shows them); a study made with other
    objectives is refused, so one study never mixes two memory objectives."""
    from . import stores

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def storage():
        with stores.schema_lock(storage_url):
            return optuna.storages.RDBStorage(storage_url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                              heartbeat_stale_trial_callback=on_stale)

    rdb = stores.retrying(storage)
    try:
        study = optuna.create_study(study_name=name, storage=rdb, sampler=sampler, directions=list(DIRECTIONS))
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=rdb, sampler=sampler)
        created = False
    if [d.name.lower() for d in study.directions] != list(DIRECTIONS):
        raise ValueError(f"study_name={name}: the stored study has directions "
                         f"{[d.name.lower() for d in study.directions]}, not {list(DIRECTIONS)}")
    if metric_names:
        if study.metric_names is None:
            study.set_metric_names(list(metric_names))
        elif list(study.metric_names) != list(metric_names):
            i = next(i for i, (a, b) in enumerate(zip(study.metric_names, metric_names)) if a != b)
            key = {1: "objective_memory", 2: "latency_source"}.get(i, "objectives")
            raise ValueError(f"{key}={METRIC_KEYS.get(metric_names[i], metric_names[i])}: the study {name} was "
                             f"searched with objectives {list(study.metric_names)}; keep them or choose another "
                             "study_name")
    return study, created


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def fail_stale(study: optuna.Study) -> None:
    """Fail trials whose worker stopped beating (their on_stale callback runs here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def is_repeat(t: optuna.trial.FrozenTrial) -> bool:
    return t.user_attrs.get(REPEAT_ATTR) is not None


def is_free(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that uses no budget: a repeat, or an ArchSpec whose network another trial trained."""
    return is_repeat(t) or t.user_attrs.get(SIBLING_ATTR) is not None


def network_hash(t: optuna.trial.FrozenTrial) -> str | None:
    """The trial's network hash (ArchSpec.network_hash; computed for trials of older versions)."""
    h = t.user_attrs.get("net_hash")
    if h is None and t.user_attrs.get("arch") is not None:
        h = ArchSpec.from_dict(t.user_attrs["arch"]).network_hash()
    return h


@dataclass(frozen=True)
class Counts:
    """A study's trials, read in one query: `done` COMPLETE and `running` RUNNING ones that are not
    free (they use up n_trials; a RUNNING trial counts until it is known to be free), `repeats`
    COMPLETE free trials (repeats and other fusions of a trained network), and every COMPLETE and RUNNING trial (`all_done`, `all_running`: max_trials)."""
    done: int
    running: int
    repeats: int
    all_done: int
    all_running: int


def budget_counts(study: optuna.Study) -> Counts:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    repeats = sum(1 for t in complete if is_free(t))
    return Counts(len(complete) - repeats, sum(1 for t in running if not is_free(t)), repeats,
                  len(complete), len(running))


def run_worker(study: optuna.Study, objective: Callable, n_trials: int, timeout: float | None = None,
               guard: SignalGuard | None = None, callbacks: Sequence[Callable] = (),
               on_wait: Callable[[int], None] | None = None, poll_s: float = POLL_S,
               max_trials: int | None = None) -> int:
    """One worker: trials until the study holds `n_trials` COMPLETE trials that are not repeats, or
    `max_trials` COMPLETE trials of any kind (or `timeout` seconds passed, checked between trials).
    While the free slots are all held by other workers' RUNNING trials it waits (`on_wait(held)` once
    per wait). Returns how many trials this worker ran."""
    guard = guard or NoGuard()
    t0 = time.monotonic()
    ran, waiting = 0, False
    while True:
        guard.check()
        fail_stale(study)
        c = budget_counts(study)
        if (c.done >= n_trials or (max_trials is not None and c.all_done >= max_trials)
                or (timeout is not None and time.monotonic() - t0 >= timeout)):
            return ran
        if c.done + c.running >= n_trials or (max_trials is not None and c.all_done + c.all_running >= max_trials):
            if not waiting and on_wait:
                on_wait(n_trials - c.done)
            waiting = True
            with guard.raising():
                time.sleep(poll_s)
            continue
        waiting = False
        study.optimize(objective, n_trials=1, callbacks=list(callbacks), gc_after_trial=True)
        ran += 1


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
                 memory_fn: Callable[[ArchSpec, Device], MemoryReport] = memory_plan,
                 n_trials: int | None = None, guard: SignalGuard | None = None,
                 on_train: Callable[[optuna.trial.Trial, ArchSpec], None] | None = None,
                 on_wait: Callable[[optuna.trial.Trial, str], None] | None = None, poll_s: float = POLL_S,
                 max_trials: int | None = None,
                 latency_fn: Callable[[ArchSpec, Device], float] | None = None):
        """latency_fn(spec, device): the measured latency in ms (validation.latency under the device's
        emulator; None: the latency model's estimate is the figure). It runs only for a candidate whose RAM
        and flash fit and whose estimate, less the device's `latency_tolerance`, is within the latency
        budget; the measured figure is then the latency objective and constraint.
        memory_fn(spec, device): the memory model; the stage passes one whose stack figure is the
        compiled inference's (validation.stack), tried only when static RAM alone fits the budget.
        n_trials: the study's total of trials that are not repeats (the budget claim; None: no claim);
        max_trials: of every trial, repeats included (None: no bound). guard: signals (training and
        waits are the places where an interrupt raises at once). on_train(trial, spec) just before
        training; on_wait(trial, why) when the trial waits for another trial's training."""
        if objective_memory not in MEMORY_OBJECTIVES:
            raise ValueError(f"objective_memory={objective_memory}: choose one of {', '.join(MEMORY_OBJECTIVES)}")
        self.space, self.input_shape, self.classes = space, tuple(input_shape), classes
        self.device, self.budgets, self.objective_memory = device, budgets, objective_memory
        self.train_fn, self.on_start, self.on_result, self.on_fail = train_fn, on_start, on_result, on_fail
        self.memory_fn, self.latency_fn = memory_fn, latency_fn
        self.n_trials, self.max_trials, self.guard = n_trials, max_trials, guard or NoGuard()
        self.on_train, self.on_wait, self.poll_s = on_train, on_wait, poll_s

    def __call__(self, trial: optuna.trial.Trial) -> tuple[float, float, float]:
        try:
            return self._score(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as e:  # interrupted or broken: the tracker closes the trial's run
            if self.on_fail:
                try:
                    self.on_fail(trial, e)
                except Exception:
                    pass
            if isinstance(e, Interrupted):
                # Optuna records only Exception and KeyboardInterrupt as FAIL: record this one here
                try:
                    trial.study.tell(trial, state=TrialState.FAIL)
                except Exception:
                    pass
                has_run = bool(trial.user_attrs.get("mlflow_run_id")) if hasattr(trial, "user_attrs") else False
                e.detail = e.detail or (f"trial {trial.number} failed" + (" (its MLflow run KILLED)" if has_run else ""))
            raise

    def _claim_slot(self, trial: optuna.trial.Trial) -> None:
        """The budget claim (module doc): PRUNED when COMPLETE + lower RUNNING trials that are not repeats
        fill n_trials, or all of them max_trials."""
        if self.n_trials is None:
            return
        trials = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        lower = [t for t in trials if t.state == TrialState.COMPLETE or t.number < trial.number]
        held = sum(1 for t in lower if not is_free(t))
        if held >= self.n_trials or (self.max_trials is not None and len(lower) >= self.max_trials):
            trial.set_user_attr("budget", "taken")
            raise optuna.TrialPruned(f"the study's {self.n_trials} trials are complete or running elsewhere")

    @staticmethod
    def _complete_with(trial: optuna.trial.Trial, arch_hash: str | None = None,
                       net_hash: str | None = None) -> optuna.trial.FrozenTrial | None:
        """The first COMPLETE trial of this ArchSpec (arch_hash), or the first that trained this network
        (net_hash, any fusion), or None."""
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if arch_hash is not None and t.user_attrs.get("arch_hash") == arch_hash:
                return t
            if net_hash is not None and t.user_attrs.get("trained") and network_hash(t) == net_hash:
                return t
        return None

    def _wait_for_spec(self, trial: optuna.trial.Trial, net_hash: str) -> optuna.trial.FrozenTrial | None:
        """The network claim (module doc): a COMPLETE trial that trained the network net_hash, or None when
        this trial is the one to train it. Waits while a lower RUNNING trial is undecided or claims it."""
        told = False
        while True:
            trials = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            for t in trials:
                if (t.state == TrialState.COMPLETE and t.user_attrs.get("trained")
                        and network_hash(t) == net_hash):
                    return t
            blockers = [t for t in trials if t.state == TrialState.RUNNING and t.number < trial.number
                        and t.user_attrs.get(CLAIM_ATTR, None) in (None, net_hash)]
            if not blockers:
                return None
            if self.on_wait and not told:
                b = blockers[0]
                why = (f"trial {b.number} is training the same network" if b.user_attrs.get(CLAIM_ATTR) == net_hash
                       else f"trial {b.number} has not chosen its ArchSpec yet")
                self.on_wait(trial, why)
                told = True
            with self.guard.raising():
                time.sleep(self.poll_s)
            fail_stale(trial.study)

    def _score(self, trial: optuna.trial.Trial) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        self._claim_slot(trial)
        trial.set_user_attr("worker", WORKER)
        self.guard.check()
        spec = suggest_arch(trial, self.space, self.input_shape, self.classes)
        est = latency_ms(spec, self.device)
        lat = est
        mem = memory_plan(spec, self.device, stack_bytes=0)  # static RAM: a lower bound, no compiler needed
        viol = self.budgets.violations(mem.ram_bytes, mem.flash_bytes, est)
        if viol.get("ram", 0) <= 0:
            mem = self.memory_fn(spec, self.device)
            viol = self.budgets.violations(mem.ram_bytes, mem.flash_bytes, est)
        source = "model"
        if self.latency_fn is not None and viol["ram"] <= 0 and viol["flash"] <= 0:
            # the lowest the measured figure can be by the model's stated error bound: over the budget even
            # then, the candidate is refused unmeasured; otherwise the emulator decides
            low = est / (1.0 + self.device.latency_tolerance)
            if self.budgets.latency_ms is None or low <= self.budgets.latency_ms:
                with self.guard.raising():
                    lat = float(self.latency_fn(spec, self.device))
                source = "emulator"
                viol = self.budgets.violations(mem.ram_bytes, mem.flash_bytes, lat)
        for key, v in viol.items():
            trial.set_constraint(key, v)
        ok = all(v <= 0 for v in viol.values())
        metrics: dict[str, float] = {**{k: v for k, v in mem.as_dict().items() if k != "params_in"},
                                     "latency_ms_est": est, "latency_ms": lat}
        trial.set_user_attr("latency_source", source)
        trial.set_user_attr("arch", spec.to_dict())
        trial.set_user_attr("arch_hash", spec.short_hash())
        trial.set_user_attr("net_hash", spec.network_hash())
        trial.set_user_attr("arch_desc", spec.describe())
        trial.set_user_attr("feasible", ok)
        trial.set_user_attr(CLAIM_ATTR, spec.network_hash() if ok else "")  # decided: written before looking
        if self.on_start:
            self.on_start(trial)
        result = TrialResult(trial.number, spec, metrics, viol, ok, dict(trial.params), latency_source=source)
        if not ok:
            seen = self._complete_with(trial, arch_hash=spec.short_hash())
            if seen is not None:  # scored before: a repeat, no budget used
                trial.set_user_attr(REPEAT_ATTR, seen.number)
            metrics["val_accuracy"] = 0.0
            metrics["scoring_ms"] = (time.perf_counter() - t0) * 1000
        else:
            net = spec.network_hash()
            prior = self._complete_with(trial, net_hash=net)

            def free(p: optuna.trial.FrozenTrial) -> None:  # said at once, so other workers' budget claims see it
                if REPEAT_ATTR in trial.user_attrs or SIBLING_ATTR in trial.user_attrs:
                    return
                same = self._complete_with(trial, arch_hash=spec.short_hash())
                if same is not None:
                    trial.set_user_attr(REPEAT_ATTR, same.number)
                else:
                    trial.set_user_attr(SIBLING_ATTR, p.number)

            if prior is not None:
                free(prior)
            prior = prior or self._wait_for_spec(trial, net)
            if prior is not None:
                free(prior)
                result.reused_from = prior.number
                for k in ("val_accuracy", "train_seconds"):
                    metrics[k] = float(prior.user_attrs.get(k, 0.0))
                trial.set_user_attr("reused_from", prior.number)
            else:
                self.guard.check()
                if self.on_train:
                    self.on_train(trial, spec)
                with self.guard.raising():
                    out = self.train_fn(spec)
                result.trained = True
                metrics["val_accuracy"] = float(out["val_accuracy"])
                metrics["train_seconds"] = float(out["train_seconds"])
                result.extra = {k: v for k, v in out.items() if k not in metrics}
                trial.set_user_attr("trained", True)
            trial.set_user_attr("val_accuracy", metrics["val_accuracy"])
            trial.set_user_attr("train_seconds", metrics["train_seconds"])
        for k in ("ram_bytes", "flash_bytes", "model_bytes", "latency_ms_est", "latency_ms"):
            trial.set_user_attr(k, metrics[k])
        if self.on_result:
            self.on_result(result)
        return metrics["val_accuracy"], float(metrics[self.objective_memory]), float(lat)
