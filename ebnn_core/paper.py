"""Table 1 of the eBNN paper (EWSN 2017), measured on an Intel Curie at 32 MHz: the bar to beat.

memory_kb is the paper's accounting (parameters plus temporaries), comparable to our model_bytes.
"""
from __future__ import annotations

# (data set, model, accuracy %, time ms, memory KB)
TABLE1 = (
    ("mnist", "MLP-1", 91.54, 17.35, 14.73),
    ("mnist", "MLP-2", 84.65, 9.17, 13.53),
    ("mnist", "Conv-1", 94.56, 53.72, 11.48),
    ("mnist", "Conv-2", 96.49, 193.02, 13.77),
    ("mnist", "ConvPool-1", 97.44, 739.34, 12.79),
    ("mnist", "ConvPool-2", 97.86, 886.53, 13.07),
    ("mnist", "Conv-1-LE-I", 91.95, 23.91, 5.99),
    ("mnist", "Conv-1-LE-II", 90.74, 16.47, 4.63),
    ("cifar10_easy", "MLP-1", 52.30, 21.29, 13.84),
    ("cifar10_easy", "MLP-2", 41.80, 19.65, 14.00),
    ("cifar10_easy", "Conv-1", 74.20, 79.21, 12.72),
    ("cifar10_easy", "Conv-2", 79.80, 250.08, 14.30),
    ("cifar10_easy", "ConvPool-1", 84.30, 847.72, 12.84),
    ("cifar10_easy", "ConvPool-2", 77.20, 968.18, 13.47),
)


def rows(dataset: str) -> list[dict]:
    """The paper's rows for a data set as dicts (accuracy as a fraction, memory in bytes)."""
    return [{"model": m, "accuracy": acc / 100.0, "latency_ms": t, "memory_bytes": kb * 1024}
            for ds, m, acc, t, kb in TABLE1 if ds == dataset]
