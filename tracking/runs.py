"""MLflow logging of a study: one parent run per study, one nested run per trial.

Runs are addressed by id through MlflowClient (no global active run), so a resumed study reopens its
parent run (its id is kept in the study's user attributes) and a trial's run id is kept in the
trial's user attributes from the moment the trial starts.

Many workers: an SQL tracking store is created or migrated once (tracking.client.open_store, under
a lock); the experiment is created by whichever worker gets there first; the parent run by the
worker that created the Optuna study (the others wait for its id). With a tracking server (http://)
the server chooses where artifacts go. `close_stale` closes, as KILLED, every trial run still RUNNING
whose trial is no longer running (a worker killed: Optuna's heartbeat failed its trial); the stage runs
it at start-up, whenever this process fails a stale trial, after each trial and at the end.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from search.interrupts import Interrupted
from search.study import TrialResult

from .client import experiment_id, open_store, quiet, save_view

PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"


def _flat_params(result: TrialResult) -> dict[str, str]:
    """A trial run's parameters: the architecture in a few columns (arch_desc says all of it, the
    block-by-block form is the run's arch.json), so the UI's table keeps its metrics in view."""
    spec = result.spec
    return {"input_mode": spec.input_mode, "arch_hash": spec.short_hash(), "arch_desc": spec.describe(),
            "n_blocks": str(len(spec.blocks))}


# The study's settings shown as the parent run's parameters; the whole resolved config is its config.json.
PARENT_PARAMS = ("dataset.name", "device.name", "ram_kb", "latency_ms", "flash_kb", "objective_memory", "n_trials",
                 "seed", "sampler.name", "profile_name", "screening.epochs", "screening.train_subset",
                 "screening.val_subset")


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None, study: optuna.Study,
                 config: dict[str, Any], created: bool = True, parent_wait_s: float = 60.0):
        """artifact_root: where a new experiment keeps artifacts (None: the tracking server decides).
        created: this process created the study, so it creates the parent run; others wait for it."""
        import mlflow
        from mlflow.tracking import MlflowClient

        quiet()
        self.n_rungs = len(config.get("rungs") or [])  # val_accuracy_rung<i> columns of the saved views
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run" per trial
        open_store(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        exp_id = experiment_id(self.client, experiment, artifact_root)
        self.experiment_id = exp_id
        self.study = study
        self.parent_id = self._parent(config, created, parent_wait_s)

    def _existing_parent(self) -> str | None:
        rid = self.study.user_attrs.get(PARENT_ATTR)
        if rid:
            try:
                run = self.client.get_run(rid)
                if run.info.experiment_id == self.experiment_id:
                    if run.info.status != "RUNNING":
                        self.client.update_run(rid, status="RUNNING")
                    return rid
            except Exception:  # the tracking store was replaced: start a new parent run
                pass
        return None

    def _parent(self, config: dict[str, Any], created: bool, wait_s: float) -> str:
        rid = self._existing_parent()
        if rid:
            return rid
        if not created and not self.study.user_attrs.get(PARENT_ATTR):
            deadline = time.monotonic() + wait_s  # the creating worker is making it
            while time.monotonic() < deadline:
                time.sleep(0.5)
                rid = self._existing_parent()
                if rid:
                    return rid
        run = self.client.create_run(self.experiment_id, run_name=self.study.study_name,
                                     tags={"study": self.study.study_name, "kind": "study"})
        rid = run.info.run_id
        self.study.set_user_attr(PARENT_ATTR, rid)
        flat = _flatten(config)
        for k in PARENT_PARAMS:
            if k in flat:
                self.client.log_param(rid, k, str(flat[k])[:500])
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "config.json"
            p.write_text(json.dumps(config, indent=1, sort_keys=True, default=str) + "\n")
            self.client.log_artifact(rid, str(p))
        return rid

    # ---- per trial ---------------------------------------------------------------------------
    def on_start(self, trial: optuna.trial.Trial) -> None:
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.number}",
                                     tags={"mlflow.parentRunId": self.parent_id, "study": self.study.study_name,
                                           "trial_number": str(trial.number), "kind": "trial"})
        trial.set_user_attr(RUN_ATTR, run.info.run_id)

    def on_result(self, r: TrialResult) -> None:
        from mlflow.entities import Metric, Param, RunTag

        rid = self._run_of(r.number)
        params = [Param(k, v) for k, v in _flat_params(r).items()]
        metrics = [Metric(k, float(v), 0, 0) for k, v in r.metrics.items()
                   if r.feasible or k != "val_accuracy"]  # an infeasible trial has no accuracy, not 0
        metrics += [Metric(f"violation_{k}", float(v), 0, 0) for k, v in r.violations.items()]
        tags = [RunTag("feasible", str(r.feasible).lower()), RunTag("pareto", "false"),
                RunTag("trained", str(r.trained).lower()),
                RunTag("latency_source", r.latency_source)]
        if r.reused_from is not None:
            tags.append(RunTag("reused_from_trial", str(r.reused_from)))
        self.client.log_batch(rid, metrics=metrics, params=params, tags=tags)
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "arch.json"
            p.write_text(json.dumps(r.spec.to_dict(), indent=1) + "\n")
            self.client.log_artifact(rid, str(p))
            folded = r.extra.get("folded_path")
            if folded:
                self.client.log_artifact(rid, str(folded))
        self.client.set_terminated(rid, "FINISHED")

    def on_fail(self, trial: optuna.trial.Trial, exc: BaseException) -> None:
        rid = trial.user_attrs.get(RUN_ATTR) if hasattr(trial, "user_attrs") else None
        if rid:
            self.client.set_tag(rid, "error", f"{type(exc).__name__}: {exc}"[:500])
            self.client.set_terminated(rid, "KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED")

    def on_rung(self, index: int, record: dict) -> None:
        """A rung's figure on the screened trial's run: metric val_accuracy_rung<index>, tag fidelity."""
        rid = self.study.trials[record["trial"]].user_attrs.get(RUN_ATTR)
        if rid:
            self.client.log_metric(rid, f"val_accuracy_rung{index}", float(record["val_accuracy"]))
            self.client.set_tag(rid, "fidelity", f"rung{index} ({record['epochs']} epochs, "
                                f"train_subset {record['train_subset']})")

    def _run_of(self, number: int) -> str:
        t = self.study.trials[number]
        return t.user_attrs[RUN_ATTR]

    def close_stale(self) -> int:
        """Trial runs still RUNNING whose trial is no longer RUNNING (its worker was killed and Optuna's
        heartbeat failed it) marked KILLED; returns how many. The trials are read before the runs, so a
        trial that starts or finishes meanwhile is never touched."""
        states = {t.number: t.state for t in self.study.get_trials(deepcopy=False)}
        name = self.study.study_name
        runs = self.client.search_runs(
            [self.experiment_id], max_results=5000,
            filter_string=f"tags.study = '{name}' and tags.kind = 'trial' and attributes.status = 'RUNNING'")
        n = 0
        for run in runs:
            try:
                number = int(run.data.tags.get("trial_number", ""))
            except ValueError:
                continue
            state = states.get(number)
            if state is None or state == optuna.trial.TrialState.RUNNING:
                continue
            self.client.set_tag(run.info.run_id, "error", f"trial {number} {state.name}: its worker stopped "
                                                           "(failed by Optuna's heartbeat)")
            self.client.set_terminated(run.info.run_id, "KILLED")
            n += 1
        return n

    def close_parent(self, status: str = "KILLED") -> None:
        self.client.set_terminated(self.parent_id, status)

    # ---- end of a search --------------------------------------------------------------------
    def save_views(self) -> str:
        """The study's saved views of the runs table: `pareto-<study>` (its Pareto set) and `trials-<study>`
        (every trial); returns the first's key (tracking.client.ui_url opens it)."""
        name = self.study.study_name
        cols = ["val_accuracy", *[f"val_accuracy_rung{i}" for i in range(1, self.n_rungs + 1)], "ram_bytes",
                "model_bytes", "flash_bytes", "latency_ms", "latency_ms_est", "train_seconds"]
        save_view(self.client, self.experiment_id, f"trials-{name}", f"{name}: trials",
                  f"tags.study = '{name}' and tags.kind = 'trial'", "val_accuracy", cols, ["arch_desc"])
        return save_view(self.client, self.experiment_id, f"pareto-{name}", f"{name}: Pareto set",
                         f"tags.study = '{name}' and tags.pareto = 'true'", "val_accuracy", cols, ["arch_desc"])

    def finish(self, pareto_numbers: set[int], files: list[Path], summary: dict[str, float]) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            rid = t.user_attrs.get(RUN_ATTR)
            if rid:
                self.client.set_tag(rid, "pareto", "true" if t.number in pareto_numbers else "false")
        for f in files:
            self.client.log_artifact(self.parent_id, str(f))
        from mlflow.entities import Metric

        now = int(time.time() * 1000)  # a resumed study's figures replace the last invocation's
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in summary.items()])
        self.view = self.save_views()
        self.close_stale()
        self.client.set_terminated(self.parent_id, "FINISHED")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out
