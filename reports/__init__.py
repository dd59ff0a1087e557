"""reports: what the stages show a person: terminal tables, the comparison with the paper's Table 1, and
the plots (PNG and self-contained HTML) of a front. Plain data in, files or text out; no MLflow, no
Optuna."""
