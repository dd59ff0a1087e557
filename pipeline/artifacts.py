"""The files the stages hand to each other: one place names them (dvc.yaml follows the same paths,
tests/test_dvc.py checks it). Every path is under ${paths.artifacts}; names that come from a study or a
model are safe names (ebnn_core.safe), so none leads elsewhere.

    search   -> search/<study>/pareto.json          (the Pareto set; trials/<hash>/folded.npz)
    promote  -> promote/<study>/promoted.json        (<hash>/folded.npz, arch.json, metrics.json; and
                metrics/<study>/promote.json: test accuracy, RAM, latency per model, for dvc metrics)
    codegen  -> c/<study>/<hash>/                    (a C library with folded.npz, per promoted model)
    validate -> validate/<study>/validation.json     (and validate/<study>/<hash>/validation.json per model)
    report   -> report/<study>/report.md, report.json, report.png, report.html, front.json (dvc plots)
"""
from __future__ import annotations

from pathlib import Path

PARETO = "pareto.json"
PROMOTED = "promoted.json"
VALIDATION = "validation.json"
REPORT_MD, REPORT_JSON, REPORT_PNG, REPORT_HTML = "report.md", "report.json", "report.png", "report.html"
FRONT = "front.json"


def pareto_json(arts: Path, study: str) -> Path:
    return arts / "search" / study / PARETO


def promote_dir(arts: Path, study: str) -> Path:
    return arts / "promote" / study


def promoted_json(arts: Path, study: str) -> Path:
    return promote_dir(arts, study) / PROMOTED


def promote_metrics_json(arts: Path, study: str) -> Path:
    """Beside, not inside, promote/<study>/ (DVC tracks that folder as one output)."""
    return arts / "metrics" / study / "promote.json"


def c_dir(arts: Path, study: str) -> Path:
    return arts / "c" / study


def validate_dir(arts: Path, study: str) -> Path:
    return arts / "validate" / study


def validation_json(arts: Path, study: str) -> Path:
    return validate_dir(arts, study) / VALIDATION


def model_validation_json(arts: Path, study: str, arch_hash: str) -> Path:
    return validate_dir(arts, study) / arch_hash / VALIDATION


def report_dir(arts: Path, study: str) -> Path:
    return arts / "report" / study
