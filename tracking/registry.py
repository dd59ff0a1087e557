"""The MLflow Model Registry of a study's promoted models: one registered model per study, one version
per ArchSpec (tagged with its hash, device, budgets and figures; its run holds the FoldedModel, the
ArchSpec and the metrics under `model/`).

    reg = Registry(tracking_uri, "ebnn-promote", artifact_root, "ebnn-mnist-curie-ram15-lat1000", study)
    version, run_id = reg.register(arch_hash, folder, metrics, {"device": "curie", "budgets": {...}})
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .client import experiment_id, quiet, save_view, ui_url


class RegistryError(ValueError):
    """The registry cannot be used as asked; the message names the key and the value."""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Registry:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path, name: str, study: str,
                 device: str | None = None):
        """device: the study's device; the saved view shows its validation figures beside the model's."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        quiet()
        self.name, self.study = name, study
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            try:
                model = self.client.get_registered_model(name)
            except MlflowException as e:
                if "RESOURCE_DOES_NOT_EXIST" not in str(e.error_code):
                    raise
                model = None
            if model is None:
                self.client.create_registered_model(name, tags={"study": study},
                                                    description=f"Promoted models of the study {study}")
            elif model.tags.get("study") != study:
                raise RegistryError(f"registry.name={name}: already holds the models of study "
                                    f"{model.tags.get('study')!r}, not {study!r}; choose another registry.name")
            self.experiment_id = experiment_id(self.client, experiment, artifact_root)
            self.view = save_view(self.client, self.experiment_id, f"promoted-{study}", f"{study}: promoted",
                                  f"tags.study = '{study}' and tags.kind = 'promote'", "test_accuracy",
                                  ["test_accuracy", "ram_bytes", "model_bytes", "flash_bytes", "latency_ms_est",
                                   *([f"validate.{device}.ram_total_measured", f"validate.{device}.latency_ms_measured",
                                      f"validate.{device}.latency_ms_from_trace"] if device else []),
                                   "disagreements", "train_seconds"], ["arch_desc"])
        except MlflowException as e:
            raise RegistryError(f"mlflow.tracking_uri={tracking_uri}: {str(e).splitlines()[0][:200]}") from None

    def ui_url(self, host: str = "http://127.0.0.1:5000") -> str:
        """The promoted models' runs in the MLflow UI (the saved view of this study)."""
        return ui_url(self.experiment_id, host, self.view)

    def versions(self) -> dict[str, Any]:
        """The registered versions by ArchSpec hash."""
        return {mv.tags.get("arch_hash"): mv for mv in self.client.search_model_versions(f"name='{self.name}'")}

    def register(self, arch_hash: str, folder: Path, metrics: dict[str, Any], tags: dict[str, Any]
                 ) -> tuple[int, str]:
        """The version of this ArchSpec: the one registered before, or a new run with the folder's files
        and a new version."""
        have = self.versions().get(arch_hash)
        if have is not None:
            return int(have.version), have.run_id
        run = self.client.create_run(self.experiment_id, run_name=f"promote-{arch_hash}",
                                     tags={"kind": "promote", "study": self.study, "arch_hash": arch_hash})
        rid = run.info.run_id
        self.client.log_param(rid, "arch_desc", metrics.get("arch_desc", ""))
        for k, v in (metrics.get("fidelity") or {}).items():
            self.client.log_param(rid, f"fidelity.{k}", str(v))
        for k, v in metrics.items():
            if _number(v):
                self.client.log_metric(rid, k, float(v))
        for p in sorted(folder.iterdir()):
            if p.is_file():
                self.client.log_artifact(rid, str(p), artifact_path="model")
        self.client.set_terminated(rid, "FINISHED")
        vtags = {"arch_hash": arch_hash, "study": self.study, **{k: str(v) for k, v in tags.items()},
                 **{k: str(metrics[k]) for k in ("ram_bytes", "flash_bytes", "latency_ms_est", "test_accuracy",
                                                 "arch_desc", "weights_from") if k in metrics}}
        mv = self.client.create_model_version(self.name, source=f"{run.info.artifact_uri}/model", run_id=rid,
                                              tags=vtags)
        return int(mv.version), rid
