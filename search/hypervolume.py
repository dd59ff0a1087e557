"""Hypervolume of a set of points to be minimised, and each point's exclusive contribution.

    hv = hypervolume(points, ref)                 # points (n, d), every coordinate <= ref
    contrib = contributions(points, ref)          # hv(all) - hv(all but i), per point

Exact, by coordinate compression: fine for the tens of points of a Pareto front in 2-4 objectives.
"""
from __future__ import annotations

import itertools

import numpy as np


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref))
    pts = pts[(pts < ref).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    grids = [np.unique(np.r_[pts[:, k], ref[k]]) for k in range(len(ref))]
    total = 0.0
    for cell in itertools.product(*(range(len(g) - 1) for g in grids)):
        lo = np.array([g[i] for g, i in zip(grids, cell)])
        if (pts <= lo).all(axis=1).any():  # the cell [lo, next) is dominated by some point
            total += float(np.prod([g[i + 1] - g[i] for g, i in zip(grids, cell)]))
    return total


def contributions(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    full = hypervolume(pts, ref)
    return np.array([full - hypervolume(np.delete(pts, i, axis=0), ref) for i in range(len(pts))])
