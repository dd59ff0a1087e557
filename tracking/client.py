"""The MLflow plumbing every stage shares: opening a store, the experiment, attaching files and figures to
a run, and the UI address of a study's runs.

MLflow 3.17's UI opens an experiment in its GenAI view (traces, no runs) and shows no metric column
until one is picked by hand. So an experiment is created tagged as a model-training experiment
(`mlflow.experimentKind`), and each study gets a saved view of the runs table, the UI's own shared-view
state (an experiment tag `mlflow.sharedViewState.<key>`): filter, sort and the key metric columns. Its
link, printed by the stages, names the machine-learning view and that state (`ui_url`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
UI_VIEW = "workflowType=machine_learning"


def quiet() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def open_store(uri: str) -> None:
    """Create or migrate MLflow's SQL store once, under the storage's schema lock (a tracking server
    migrates its own store)."""
    from search.stores import SQL_SCHEMES, _scheme, retrying, schema_lock

    if _scheme(uri) not in SQL_SCHEMES:
        return
    from mlflow.tracking import MlflowClient

    with schema_lock(uri):
        retrying(lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1))


def experiment_id(client, name: str, artifact_root: Path | None) -> str:
    """The experiment's id, created (as a model-training experiment) if it does not exist; another worker
    creating it at the same moment is not an error. artifact_root: where a new experiment keeps its
    artifacts (None: the tracking server decides)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get(EXPERIMENT_KIND_TAG) is None:  # made by an earlier version: say what it is
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    try:
        if artifact_root is not None:
            artifact_root.mkdir(parents=True, exist_ok=True)
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                                        artifact_location=artifact_root.resolve().as_uri() if artifact_root else None)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def attach(uri: str, run_id: str, files: Iterable[Path] = (), artifact_path: str | None = None,
           metrics: dict[str, float] | None = None, tags: dict[str, Any] | None = None) -> None:
    """Files, figures and tags added to an existing run (validate and report write back to the runs
    that made the models); a metric logged again replaces the last value in the UI."""
    import time

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    quiet()
    client = MlflowClient(tracking_uri=uri)
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path=artifact_path)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                     tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])


VIEW_TAG = "mlflow.sharedViewState."


def _column(group: str, key: str) -> str:
    return f"{group}.`{key}`"


def save_view(client, experiment: str, key: str, name: str, search_filter: str, sort_metric: str,
              metrics: list[str], params: list[str] = ()) -> str:
    """A saved view of the experiment's runs table (filter, sorted by a metric, descending, these metric
    and parameter columns in this order), opened by ui_url(experiment, view=key); returns key. Written
    as the UI writes it when a user saves a view; a runs table whose URL carries its own filter or sort
    ignores a saved view, so the link carries neither."""
    import json
    import time

    cols = [_column("metrics", m) for m in metrics] + [_column("params", p) for p in params]
    state = {"searchFilter": search_filter, "orderByKey": _column("metrics", sort_metric), "orderByAsc": False,
             "selectedColumns": cols, "columnOrder": cols}
    ms = int(time.time() * 1000)
    client.set_experiment_tag(experiment, VIEW_TAG + key,
                              json.dumps({"name": name, "createdAt": ms, "updatedAt": ms, "state": json.dumps(state)}))
    return key


def ui_url(experiment: str | None = None, host: str = "http://127.0.0.1:5000", view: str | None = None) -> str:
    """Where `mlflow ui` shows an experiment's runs (experiment: its id; None: the list of experiments),
    in the model-training view, through a saved view when one is named."""
    if not experiment:
        return f"{host}/#/experiments"
    return f"{host}/#/experiments/{experiment}/runs?{UI_VIEW}" + (f"&viewStateShareKey={view}" if view else "")
