"""The Pareto plot of a study beside the paper's Table 1: a PNG (matplotlib) and a self-contained
interactive HTML page (inline SVG; hover a point for its architecture and figures, no JavaScript
libraries, nothing fetched).

Both panels compare like with like on the memory axis: our model_bytes (parameters + temporaries) and
the paper's memory column use the same accounting. Our latency is the model's estimate; the paper's
was measured on the Curie.
"""
from __future__ import annotations

import html
import math
from pathlib import Path


def _latency(m: dict) -> float:
    """The latency the search used (emulated or estimated; records before it was kept: the estimate)."""
    return m.get("latency_ms") if m.get("latency_ms") is not None else m["latency_ms_est"]


def _points(trials: list[dict]):
    return [(t["metrics"]["model_bytes"] / 1024, _latency(t["metrics"]), t["metrics"]["val_accuracy"])
            for t in trials]


def pareto_png(trials: list[dict], pareto: list[dict], paper: list[dict], path: Path, title: str,
               acc_label: str = "accuracy % (ours: validation; paper: test)", ours: str = "Pareto set (ours)") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, idx, xlabel, logx in ((axes[0], 0, "memory KB (parameters + temporaries)", False),
                                  (axes[1], 1, "latency ms (ours: model estimate; paper: measured)", True)):
        pts = _points(trials)
        if pts:
            ax.scatter([p[idx] for p in pts], [p[2] * 100 for p in pts], s=14, c="#bbbbbb", label="feasible trials")
        pp = sorted(_points(pareto), key=lambda p: p[idx])
        if pp:
            ax.scatter([p[idx] for p in pp], [p[2] * 100 for p in pp], s=30, c="#d62728", label=ours)
        if paper:
            ax.scatter([r["memory_bytes"] / 1024 if idx == 0 else r["latency_ms"] for r in paper],
                       [r["accuracy"] * 100 for r in paper], marker="s", s=30, c="#1f77b4", label="paper Table 1")
            for r in paper:
                ax.annotate(r["model"], (r["memory_bytes"] / 1024 if idx == 0 else r["latency_ms"], r["accuracy"] * 100),
                            fontsize=7, xytext=(3, 3), textcoords="offset points", color="#1f77b4")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(acc_label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _svg_panel(trials, pareto, paper, idx: int, xlabel: str, logx: bool, w=520, h=380) -> str:
    ml, mr, mt, mb = 55, 15, 15, 45
    xs = [p[idx] for p in _points(trials)] + [(r["memory_bytes"] / 1024 if idx == 0 else r["latency_ms"]) for r in paper]
    ys = [p[2] * 100 for p in _points(trials)] + [r["accuracy"] * 100 for r in paper]
    if not xs:
        return "<p>no feasible trial yet</p>"
    fx = (lambda v: math.log10(max(v, 1e-6))) if logx else (lambda v: v)
    x0, x1 = min(map(fx, xs)), max(map(fx, xs))
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 + 1e-9 if x1 == x0 else x1), (y1 + 1e-9 if y1 == y0 else y1)
    pad_x, pad_y = (x1 - x0) * 0.05, (y1 - y0) * 0.05
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y

    def sx(v):
        return ml + (fx(v) - x0) / (x1 - x0) * (w - ml - mr)

    def sy(v):
        return h - mb - (v - y0) / (y1 - y0) * (h - mt - mb)

    out = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
           f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="none" stroke="#888"/>']
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        out.append(f'<text x="{ml - 5}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.1f}</text>')
        xv = x0 + (x1 - x0) * k / 4
        label = 10 ** xv if logx else xv
        out.append(f'<text x="{ml + (xv - x0) / (x1 - x0) * (w - ml - mr):.1f}" y="{h - mb + 15}" '
                   f'text-anchor="middle">{label:.3g}</text>')
    out.append(f'<text x="{(w + ml) / 2}" y="{h - 8}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">accuracy %</text>')
    pareto_ids = {t["number"] for t in pareto}
    for t in sorted(trials, key=lambda t: t["number"] in pareto_ids):
        m = t["metrics"]
        x = m["model_bytes"] / 1024 if idx == 0 else _latency(m)
        tip = (f'trial {t["number"]}: {t["arch_desc"]}\naccuracy {m["val_accuracy"]:.4f}\nram_bytes {m["ram_bytes"]}'
               f'\nmodel_bytes {m["model_bytes"]}\nlatency_ms {_latency(m):.2f} ({t.get("latency_source", "model")})\nrun {t.get("mlflow_run_id", "")}')
        color, r = ("#d62728", 5) if t["number"] in pareto_ids else ("#aaaaaa", 3)
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(m["val_accuracy"] * 100):.1f}" r="{r}" fill="{color}">'
                   f'<title>{html.escape(tip)}</title></circle>')
    for rw in paper:
        x = rw["memory_bytes"] / 1024 if idx == 0 else rw["latency_ms"]
        tip = f'paper {rw["model"]}: accuracy {rw["accuracy"] * 100:.2f}%, {rw["latency_ms"]} ms, {rw["memory_bytes"] / 1024:.2f} KB'
        out.append(f'<rect x="{sx(x) - 4:.1f}" y="{sy(rw["accuracy"] * 100) - 4:.1f}" width="8" height="8" fill="#1f77b4">'
                   f'<title>{html.escape(tip)}</title></rect>')
        out.append(f'<text x="{sx(x) + 6:.1f}" y="{sy(rw["accuracy"] * 100) - 5:.1f}" fill="#1f77b4" '
                   f'font-size="9">{html.escape(rw["model"])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def pareto_html(trials: list[dict], pareto: list[dict], paper: list[dict], path: Path, title: str,
                acc_label: str = "val accuracy") -> Path:
    rows = "".join(
        f'<tr><td>{t["number"]}</td><td>{html.escape(t["arch_desc"])}</td><td>{t["metrics"]["val_accuracy"]:.4f}</td>'
        f'<td>{t["metrics"]["ram_bytes"]}</td><td>{t["metrics"]["model_bytes"]}</td>'
        f'<td>{_latency(t["metrics"]):.2f} ({html.escape(t.get("latency_source", "model"))})</td><td>{html.escape(str(t.get("mlflow_run_id", "")))}</td></tr>'
        for t in pareto)
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
.panels{{display:flex;flex-wrap:wrap;gap:1em}} circle:hover,rect:hover{{stroke:#000;stroke-width:2}}</style></head>
<body><h2>{html.escape(title)}</h2>
<p>Grey: feasible trials; red: the Pareto set; blue squares: the paper's Table 1. Hover a point for details.</p>
<div class="panels">
{_svg_panel(trials, pareto, paper, 0, "memory KB (parameters + temporaries)", False)}
{_svg_panel(trials, pareto, paper, 1, "latency ms (ours: emulated or estimated; paper: measured), log scale", True)}
</div>
<h3>Pareto set</h3><table><tr><th>trial</th><th>architecture</th><th>{html.escape(acc_label)}</th><th>ram_bytes</th>
<th>model_bytes</th><th>latency_ms</th><th>MLflow run</th></tr>{rows}</table></body></html>
"""
    path.write_text(doc)
    return path
