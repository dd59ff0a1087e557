"""Plain-text tables for the terminal."""
from __future__ import annotations


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def print_table(rows: list[dict], cols: list[str]) -> None:
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _dominates(m: dict, row: dict) -> bool:
    """Ours at least as accurate (test), in no more memory (model_bytes: the paper's accounting) and no more
    time (the latency model on the study's device; the paper measured the Curie)."""
    return (m["test_accuracy"] >= row["accuracy"] and m["model_bytes"] <= row["memory_bytes"]
            and m["latency_ms_est"] <= row["latency_ms"])


def _measured(device: str, path) -> dict:
    """Validation's figures of a promoted model on the study's device, when its C was validated."""
    import json

    if not path.is_file():
        return {}
    dv = json.loads(path.read_text()).get("devices", {}).get(device, {})
    ram, lat = dv.get("ram", {}), dv.get("latency", {})
    return {"ram_measured": ram.get("total_measured"),
            "latency_ms_measured": lat.get("latency_ms_measured", lat.get("latency_ms_from_trace")),
            "validated": dv.get("ok")}


def report(cfg) -> dict:
    """Stage `report`: the promoted front against the paper's Table 1 (report.md, report.json, plots)."""
    import json
    from pathlib import Path

    from ebnn_core.paper import rows as paper_rows

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
    models = [{**m, **_measured(dev.name, A.model_validation_json(arts, name, m["arch_hash"]))}
              for m in doc["models"]]
    paper = paper_rows(doc.get("dataset", d["dataset"]["name"]))
    rows = []
    for r in paper:
        dom = sorted((m for m in models if _dominates(m, r)), key=lambda m: -m["test_accuracy"])
        rows.append({"paper": r["model"], "paper_accuracy": r["accuracy"], "paper_memory_bytes": r["memory_bytes"],
                     "paper_latency_ms": r["latency_ms"], "dominated_by": [m["arch_hash"] for m in dom]})
    out = A.report_dir(arts, name)
    out.mkdir(parents=True, exist_ok=True)
    by_hash = {m["arch_hash"]: m for m in models}
    lines = [f"# {name}: the promoted front against the paper's Table 1", "",
             f"Device {dev.name}; accuracy is test accuracy after full-fidelity training "
             f"(epochs: {doc['fidelity']['epochs']}); memory is model_bytes (parameters + temporaries, the paper's "
             "accounting); our latency is the calibrated model's (the paper measured the Curie at 32 MHz).", "",
             "| paper row | paper acc % | paper KB | paper ms | dominated by (ours) |", "|---|---|---|---|---|"]
    for r in rows:
        best = by_hash[r["dominated_by"][0]] if r["dominated_by"] else None
        who = (f"{best['arch_desc']}: {best['test_accuracy'] * 100:.2f}%, {best['model_bytes'] / 1024:.2f} KB, "
               f"{best['latency_ms_est']:.2f} ms" + (f" (+{len(r['dominated_by']) - 1} more)"
                                                    if len(r["dominated_by"]) > 1 else "")) if best else "none"
        lines.append(f"| {r['paper']} | {r['paper_accuracy'] * 100:.2f} | {r['paper_memory_bytes'] / 1024:.2f} | "
                     f"{r['paper_latency_ms']:.2f} | {who} |")
    lines += ["", "| ours | test acc % | model KB | RAM B (model / measured) | latency ms (model / measured) | "
              "registry version |", "|---|---|---|---|---|---|"]
    for m in models:
        lines.append(f"| {m['arch_desc']} | {m['test_accuracy'] * 100:.2f} | {m['model_bytes'] / 1024:.2f} | "
                     f"{m['ram_bytes']} / {m.get('ram_measured') or '-'} | {m['latency_ms_est']:.2f} / "
                     f"{m.get('latency_ms_measured') or '-'} | {m['registry_version']} |")
    dominated = sum(bool(r["dominated_by"]) for r in rows)
    lines += ["", f"{dominated} of {len(rows)} paper rows dominated."]
    (out / A.REPORT_MD).write_text("\n".join(lines) + "\n")
    summary = {"study": name, "device": dev.name, "paper_rows": len(rows), "paper_rows_dominated": dominated,
               "best_test_accuracy": max((m["test_accuracy"] for m in models), default=0.0),
               "smallest_ram_bytes": min((m["ram_bytes"] for m in models), default=0),
               "fastest_latency_ms": min((m["latency_ms_est"] for m in models), default=0.0),
               "rows": rows, "models": models}
    (out / A.REPORT_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    front = [{"arch": m["arch_desc"], "test_accuracy": m["test_accuracy"], "ram_bytes": m["ram_bytes"],
              "model_bytes": m["model_bytes"], "latency_ms": m["latency_ms_est"]} for m in models]
    (out / A.FRONT).write_text(json.dumps(front, indent=2) + "\n")
    from search.plots import pareto_html, pareto_png

    pts = [{"number": m["trial"], "arch_desc": m["arch_desc"], "mlflow_run_id": m.get("mlflow_run_id"),
            "metrics": {"val_accuracy": m["test_accuracy"], "ram_bytes": m["ram_bytes"],
                        "model_bytes": m["model_bytes"], "latency_ms_est": m["latency_ms_est"]}} for m in models]
    title = f"{name}: {len(models)} promoted models (test accuracy, full fidelity) vs the paper's Table 1"
    files = [out / A.REPORT_MD, out / A.REPORT_JSON,
             pareto_png(pts, pts, paper, out / A.REPORT_PNG, title, acc_label="test accuracy %",
                        ours="promoted (ours)"),
             pareto_html(pts, pts, paper, out / A.REPORT_HTML, title, acc_label="test accuracy")]
    _log_report(arts, name, files, summary)
    print("\n".join(lines))
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
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path="report")
    for k in ("paper_rows_dominated", "best_test_accuracy", "smallest_ram_bytes", "fastest_latency_ms"):
        client.log_metric(run_id, f"report.{k}", float(summary[k]))
