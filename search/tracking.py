"""MLflow logging of a study: one parent run per study, one nested run per trial.

Runs are addressed by id through MlflowClient (no global active run), so a resumed study reopens its
parent run (its id is kept in the study's user attributes) and a trial's run id is kept in the
trial's user attributes from the moment the trial starts.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import optuna

from .study import TrialResult

PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"


def _flat_params(result: TrialResult) -> dict[str, str]:
    spec = result.spec
    p = {"input_mode": spec.input_mode, "arch_hash": spec.short_hash(), "arch_desc": spec.describe(),
         "n_blocks": str(len(spec.blocks))}
    for i, b in enumerate(spec.blocks):
        for k, v in b.__dict__.items():
            p[f"b{i}_{k}"] = str(v)
    return p


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path, study: optuna.Study,
                 config: dict[str, Any]):
        import mlflow
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            artifact_root.mkdir(parents=True, exist_ok=True)
            exp_id = self.client.create_experiment(experiment, artifact_location=artifact_root.resolve().as_uri())
        else:
            exp_id = exp.experiment_id
        self.experiment_id = exp_id
        self.study = study
        self.parent_id = self._parent(config)

    def _parent(self, config: dict[str, Any]) -> str:
        rid = self.study.user_attrs.get(PARENT_ATTR)
        if rid:
            try:
                run = self.client.get_run(rid)
                if run.info.experiment_id == self.experiment_id:
                    self.client.update_run(rid, status="RUNNING")
                    return rid
            except Exception:  # the tracking store was replaced: start a new parent run
                pass
        run = self.client.create_run(self.experiment_id, run_name=self.study.study_name,
                                     tags={"study": self.study.study_name, "kind": "study"})
        rid = run.info.run_id
        self.study.set_user_attr(PARENT_ATTR, rid)
        flat = _flatten(config)
        for k, v in list(flat.items())[:400]:
            self.client.log_param(rid, k[:250], str(v)[:500])
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
        metrics = [Metric(k, float(v), 0, 0) for k, v in r.metrics.items()]
        metrics += [Metric(f"violation_{k}", float(v), 0, 0) for k, v in r.violations.items()]
        tags = [RunTag("feasible", str(r.feasible).lower()), RunTag("pareto", "false"),
                RunTag("trained", str(r.trained).lower())]
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
            self.client.set_terminated(rid, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")

    def _run_of(self, number: int) -> str:
        t = self.study.trials[number]
        return t.user_attrs[RUN_ATTR]

    def close_stale(self) -> int:
        """Runs of trials that did not complete (killed processes) marked KILLED; returns how many."""
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
            rid = t.user_attrs.get(RUN_ATTR)
            if rid and self.client.get_run(rid).info.status == "RUNNING":
                self.client.set_terminated(rid, "KILLED")
                n += 1
        return n

    # ---- end of a search --------------------------------------------------------------------
    def finish(self, pareto_numbers: set[int], files: list[Path], summary: dict[str, float]) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            rid = t.user_attrs.get(RUN_ATTR)
            if rid:
                self.client.set_tag(rid, "pareto", "true" if t.number in pareto_numbers else "false")
        for f in files:
            self.client.log_artifact(self.parent_id, str(f))
        from mlflow.entities import Metric

        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), 0, 0) for k, v in summary.items()])
        self.client.set_terminated(self.parent_id, "FINISHED")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out
