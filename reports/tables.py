"""Tables: plain text for the terminal, and the promoted front against the paper's Table 1 (Markdown)."""
from __future__ import annotations

import json
from pathlib import Path


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


def dominates(m: dict, row: dict) -> bool:
    """Ours at least as accurate (test), in no more memory (model_bytes: the paper's accounting) and no more
    time (the latency model on the study's device; the paper measured the Curie)."""
    return (m["test_accuracy"] >= row["accuracy"] and m["model_bytes"] <= row["memory_bytes"]
            and m["latency_ms_est"] <= row["latency_ms"])


def measured(device: str, path: Path) -> dict:
    """Validation's figures of a promoted model on the study's device, when its C was validated."""
    if not path.is_file():
        return {}
    dv = json.loads(path.read_text()).get("devices", {}).get(device, {})
    ram, lat = dv.get("ram", {}), dv.get("latency", {})
    return {"ram_measured": ram.get("total_measured"),
            "latency_ms_measured": lat.get("latency_ms_measured", lat.get("latency_ms_from_trace")),
            "validated": dv.get("ok")}


def against_paper(models: list[dict], paper: list[dict]) -> list[dict]:
    """For each paper row, our models that dominate it, most accurate first (their ArchSpec hashes)."""
    rows = []
    for r in paper:
        dom = sorted((m for m in models if dominates(m, r)), key=lambda m: -m["test_accuracy"])
        rows.append({"paper": r["model"], "paper_accuracy": r["accuracy"], "paper_memory_bytes": r["memory_bytes"],
                     "paper_latency_ms": r["latency_ms"], "dominated_by": [m["arch_hash"] for m in dom]})
    return rows


def report_markdown(study: str, device: str, epochs: int, models: list[dict], rows: list[dict]) -> str:
    by_hash = {m["arch_hash"]: m for m in models}
    lines = [f"# {study}: the promoted front against the paper's Table 1", "",
             f"Device {device}; accuracy is test accuracy after full-fidelity training "
             f"(epochs: {epochs}); memory is model_bytes (parameters + temporaries, the paper's "
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
    return "\n".join(lines) + "\n"
