"""Stage `report`: the promoted front against the paper's Table 1 (reports/ builds the tables and plots)."""
from __future__ import annotations


def report(cfg) -> dict:
    """Stage `report`: the promoted front against the paper's Table 1 (report.md, report.json, plots)."""
    import json
    from pathlib import Path

    from ebnn_core.paper import rows as paper_rows
    from reports.tables import against_paper, measured, report_markdown

    from . import artifacts as A
    from .config import device, resolved
    from .errors import UserError
    from .search import study_name

    d = resolved(cfg)
    dev = device(d)
    name = study_name(d)
    arts = Path(d["paths"]["artifacts"]).resolve()
    pj = A.promoted_json(arts, name)
    if not pj.is_file():
        raise UserError(f"study_name={name}: nothing promoted ({pj} is missing); run python -m pipeline promote "
                        "with the same overrides first")
    doc = json.loads(pj.read_text())
    models = [{**m, **measured(dev.name, A.model_validation_json(arts, name, m["arch_hash"]))}
              for m in doc["models"]]
    paper = paper_rows(doc.get("dataset", d["dataset"]["name"]))
    rows = against_paper(models, paper)
    out = A.report_dir(arts, name)
    out.mkdir(parents=True, exist_ok=True)
    md = report_markdown(name, dev.name, doc["fidelity"]["epochs"], models, rows)
    dominated = sum(bool(r["dominated_by"]) for r in rows)
    (out / A.REPORT_MD).write_text(md)
    summary = {"study": name, "device": dev.name, "paper_rows": len(rows), "paper_rows_dominated": dominated,
               "best_test_accuracy": max((m["test_accuracy"] for m in models), default=0.0),
               "smallest_ram_bytes": min((m["ram_bytes"] for m in models), default=0),
               "fastest_latency_ms": min((m["latency_ms_est"] for m in models), default=0.0),
               "rows": rows, "models": models}
    (out / A.REPORT_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    front = [{"arch": m["arch_desc"], "test_accuracy": m["test_accuracy"], "ram_bytes": m["ram_bytes"],
              "model_bytes": m["model_bytes"], "latency_ms": m["latency_ms_est"]} for m in models]
    (out / A.FRONT).write_text(json.dumps(front, indent=2) + "\n")
    from reports.plots import pareto_html, pareto_png

    pts = [{"number": m["trial"], "arch_desc": m["arch_desc"], "mlflow_run_id": m.get("mlflow_run_id"),
            "metrics": {"val_accuracy": m["test_accuracy"], "ram_bytes": m["ram_bytes"],
                        "model_bytes": m["model_bytes"], "latency_ms_est": m["latency_ms_est"]}} for m in models]
    title = f"{name}: {len(models)} promoted models (test accuracy, full fidelity) vs the paper's Table 1"
    files = [out / A.REPORT_MD, out / A.REPORT_JSON,
             pareto_png(pts, pts, paper, out / A.REPORT_PNG, title, acc_label="test accuracy %",
                        ours="promoted (ours)"),
             pareto_html(pts, pts, paper, out / A.REPORT_HTML, title, acc_label="test accuracy")]
    _log_report(arts, name, files, summary)
    print(md, end="")
    print(f"\nwrote {out}")
    return summary


def _log_report(arts, study: str, files: list, summary: dict) -> None:
    """Attach the report to the study's MLflow parent run (named in pareto.json), when there is one."""
    import json

    from . import artifacts as A

    doc = json.loads(A.pareto_json(arts, study).read_text()) if A.pareto_json(arts, study).is_file() else {}
    run_id, uri = doc.get("mlflow_parent_run_id"), doc.get("mlflow_tracking_uri")
    if not (run_id and uri):
        return
    from tracking.client import attach

    attach(uri, run_id, files, artifact_path="report",
           metrics={f"report.{k}": summary[k] for k in ("paper_rows_dominated", "best_test_accuracy",
                                                       "smallest_ram_bytes", "fastest_latency_ms")})
