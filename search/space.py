"""The architecture search space: define-by-run and conditional, read from conf/space/*.yaml.

    spec = suggest_arch(trial, space, input_shape=(1, 28, 28), classes=10)

`trial` is an Optuna trial or anything with suggest_int / suggest_categorical (RandomChooser below,
used to check before a search that some candidate of the space fits at all). Blocks that no longer
fit the shrinking feature map are dropped (and a pool too large for its map is removed), so every
suggestion is a valid ArchSpec; different parameters can thus give the same ArchSpec, which the study
recognises by its hash and does not train twice.

`filter_growth` (optional): the first conv block draws its filters from `filters`, every later one a
factor (`c<i>_growth`) and takes the smallest count in `filters` of at least the previous block's times
that factor (the largest when none is): conv stacks that keep or widen their channels, the shape of
every hand-designed network of this kind. Without it each block draws its own count, and most deep
candidates squeeze the features through a 2- to 6-filter block that no training recovers from.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ebnn_core import ArchSpec, ConvBlock, DenseBlock

LIST_KEYS = ("filters", "kernel", "stride", "padding", "pool", "pool_overlap", "fusion", "input_mode", "units")
RANGE_KEYS = ("conv_blocks", "dense_blocks")
OPTIONAL_KEYS = ("filter_growth",)


class SpaceError(ValueError):
    """A search-space config that cannot be searched; names the key and the value."""


def check_space(space: dict[str, Any]) -> dict[str, Any]:
    for k in RANGE_KEYS:
        v = space.get(k)
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) and i >= 0 for i in v)
                and v[0] <= v[1]):
            raise SpaceError(f"space.{k}={v}: must be [lo, hi] with 0 <= lo <= hi")
    for k in LIST_KEYS:
        v = space.get(k)
        if not isinstance(v, (list, tuple)) or not v:
            raise SpaceError(f"space.{k}={v}: must be a non-empty list of choices")
    g = space.get("filter_growth")
    if g is not None and not (isinstance(g, (list, tuple)) and g and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 1 for x in g)):
        raise SpaceError(f"space.filter_growth={g}: must be null or a non-empty list of factors >= 1")
    unknown = set(space) - set(LIST_KEYS) - set(RANGE_KEYS) - set(OPTIONAL_KEYS)
    if unknown:
        raise SpaceError(f"space: unknown keys {sorted(unknown)}")
    return space


def suggest_arch(trial, space: dict[str, Any], input_shape: tuple[int, int, int], classes: int) -> ArchSpec:
    n_conv = trial.suggest_int("conv_blocks", *space["conv_blocks"])
    n_dense = trial.suggest_int("dense_blocks", *space["dense_blocks"])
    mode = trial.suggest_categorical("input_mode", list(space["input_mode"]))
    blocks: list = []
    _, h, w = input_shape
    growth = space.get("filter_growth")
    filters = sorted(space["filters"])
    f = 0
    for i in range(n_conv):
        if growth and i > 0:  # relative: at least the previous block's filters times the factor drawn
            g = trial.suggest_categorical(f"c{i}_growth", list(growth))
            f = next((c for c in filters if c >= f * g), filters[-1])
        else:
            f = trial.suggest_categorical(f"c{i}_filters", list(space["filters"]))
        k = trial.suggest_categorical(f"c{i}_kernel", list(space["kernel"]))
        s = trial.suggest_categorical(f"c{i}_stride", list(space["stride"]))
        p = min(trial.suggest_categorical(f"c{i}_padding", list(space["padding"])), k - 1)
        pool = trial.suggest_categorical(f"c{i}_pool", list(space["pool"]))
        overlap, fusion = False, "recompute"
        if pool:
            overlap = trial.suggest_categorical(f"c{i}_pool_overlap", list(space["pool_overlap"]))
            fusion = trial.suggest_categorical(f"c{i}_fusion", list(space["fusion"]))
        if k > min(h, w) + 2 * p:
            break  # the map is too small for this and any later conv block
        h1, w1 = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if pool and pool > min(h1, w1):
            pool = 0
        ps = (pool - 1 if overlap else pool) if pool else 0
        blk = ConvBlock(filters=f, kernel=k, stride=s, padding=p, pool=pool, pool_stride=ps,
                        fusion=fusion if pool else "recompute")
        blocks.append(blk)
        if pool:
            h1, w1 = (h1 - pool) // ps + 1, (w1 - pool) // ps + 1
        h, w = h1, w1
    for j in range(n_dense):
        blocks.append(DenseBlock(trial.suggest_categorical(f"d{j}_units", list(space["units"]))))
    return ArchSpec(input_shape=tuple(input_shape), classes=classes, blocks=tuple(blocks), input_mode=mode)


class RandomChooser:
    """Uniform random choices with Optuna's suggest_* spelling (no study involved)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def suggest_int(self, name: str, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def suggest_categorical(self, name: str, choices: list):
        return choices[int(self.rng.integers(len(choices)))]


class SmallestChooser:
    """Always the cheapest-looking choice: fewest blocks, smallest counts, no pooling, binary input."""

    def suggest_int(self, name: str, lo: int, hi: int) -> int:
        return lo

    def suggest_categorical(self, name: str, choices: list):
        if name == "input_mode":
            return "binary" if "binary" in choices else choices[0]
        if name.endswith("_stride"):
            return max(choices)
        if name.endswith("_fusion"):
            return "recompute" if "recompute" in choices else choices[0]
        try:
            return min(choices)
        except TypeError:
            return choices[0]
