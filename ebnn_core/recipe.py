"""How a BNN is trained: the recipe's choices, the data augmentation, and the float teacher for
knowledge distillation (trained once per data set and seed, cached).

    r = Recipe.from_dict({"augment_shift": 2, "teacher": 0.5})
    x = shift_batch(x_uint8, 2, generator)          # random translations, zero fill
    teacher = cached_teacher(splits, dataset="mnist", seed=0)

Every random choice draws from a generator seeded by the training seed, so a recipe is deterministic
for a seed (tests/test_training.py). The teacher's cache is keyed on the training images and labels
(their digest), the teacher's architecture and training settings, and the seed; its file holds plain
arrays (read without pickle).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

TEACHER_CACHE = Path.home() / ".cache" / "ebnn-automl" / "teacher"
TEACHER_VERSION = "cnn32-64-128-v1"


class RecipeError(ValueError):
    """A recipe value that cannot be used; the message names the key and the value."""


SCHEDULES = ("onecycle", "cosine")
STES = ("clipped", "approxsign")


@dataclass(frozen=True)
class Recipe:
    """What the ablation in bench/bench_recipe.py varies (defaults: the recipe before it, Adam +
    one-cycle, latent weights clipped to [-1, 1], the clipped straight-through estimator)."""

    schedule: str = "onecycle"      # onecycle | cosine (Adam either way)
    augment_shift: int = 0          # random translation of each training image by up to N pixels
    label_smoothing: float = 0.0
    teacher: float = 0.0            # weight of the distillation loss from the cached float teacher (0: none)
    temperature: float = 4.0        # of the distillation's softened distributions
    teacher_epochs: int = 3         # the teacher's own training (part of its cache key)
    bn_momentum: float = 0.1
    ste: str = "clipped"            # clipped: gradient 1 where |x| <= 1; approxsign: 2 - 2|x| there
    clip_weights: bool = True       # keep latent weights in [-1, 1] after every step
    weight_decay: float = 0.0

    @classmethod
    def from_dict(cls, d: Any, key: str = "recipe") -> "Recipe":
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise RecipeError(f"{key}={d!r}: must be a mapping of {', '.join(f.name for f in fields(cls))}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise RecipeError(f"{key}.{unknown[0]}={d[unknown[0]]!r}: no such recipe key (known: {', '.join(sorted(names))})")
        r = cls(**d)
        r.check(key)
        return r

    def check(self, key: str = "recipe") -> None:
        def bad(name: str, why: str) -> RecipeError:
            return RecipeError(f"{key}.{name}={getattr(self, name)!r}: {why}")

        def number(name: str, lo: float, hi: float, integer: bool = False) -> None:
            v = getattr(self, name)
            ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok_type or not lo <= v <= hi:
                raise bad(name, f"must be {'an integer' if integer else 'a number'} in [{lo}, {hi}]")

        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"choose one of {', '.join(SCHEDULES)}")
        if self.ste not in STES:
            raise bad("ste", f"choose one of {', '.join(STES)}")
        number("augment_shift", 0, 8, integer=True)
        number("label_smoothing", 0.0, 0.5)
        number("teacher", 0.0, 1.0)
        number("temperature", 0.5, 20.0)
        number("teacher_epochs", 1, 50, integer=True)
        number("bn_momentum", 0.001, 1.0)
        number("weight_decay", 0.0, 0.1)
        if not isinstance(self.clip_weights, bool):
            raise bad("clip_weights", "must be true or false")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- augmentation ---------------------------------------------------------------------------------

def shift_batch(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of a (N, C, H, W) batch by (dy, dx), each uniform in [-max_shift, max_shift],
    filling with zeros (the background of MNIST-like data). Draws 2N integers from `generator`."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    d = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    out = torch.empty_like(x)
    for dy, dx in torch.unique(d, dim=0).tolist():
        idx = ((d[:, 0] == dy) & (d[:, 1] == dx)).nonzero(as_tuple=True)[0]
        # the output pixel (i, j) reads the input at (i - dy, j - dx)
        out[idx] = padded[idx, :, s - dy:s - dy + h, s - dx:s - dx + w]
    return out


# ---- the float teacher ----------------------------------------------------------------------------

class Teacher(nn.Module):
    """A small float CNN (two conv layers, one hidden dense layer) on pixels / 255."""

    def __init__(self, input_shape: tuple[int, int, int], classes: int):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(),
                                  nn.Linear(128, classes))
        self.input_shape, self.classes = tuple(input_shape), classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.to(torch.float32) / 255.0))


def _teacher_key(train_x: np.ndarray, train_y: np.ndarray, classes: int, epochs: int, seed: int) -> str:
    h = hashlib.sha256()
    h.update(hashlib.sha256(np.ascontiguousarray(train_x).tobytes()).digest())
    h.update(hashlib.sha256(np.ascontiguousarray(train_y).tobytes()).digest())
    h.update(json.dumps([TEACHER_VERSION, list(train_x.shape[1:]), classes, epochs, seed, torch.__version__]).encode())
    return h.hexdigest()[:24]


def train_teacher(train_x: np.ndarray, train_y: np.ndarray, classes: int, epochs: int, seed: int,
                  batch_size: int = 128, lr: float = 2e-3) -> Teacher:
    """Adam + cosine over `epochs` with random shifts of up to 2 pixels, deterministic for the seed (CPU)."""
    return fit_float(lambda: Teacher(tuple(train_x.shape[1:]), classes), train_x, train_y, epochs, seed,
                     batch_size=batch_size, lr=lr, shift=2)


def fit_float(make_model: Callable[[], nn.Module], train_x: np.ndarray, train_y: np.ndarray, epochs: int,
              seed: int, batch_size: int = 128, lr: float = 2e-3, shift: int = 0) -> nn.Module:
    """Train a float model (made after seeding) with Adam + cosine over `epochs`, random shifts of up to
    `shift` pixels; deterministic for the seed (CPU). Returns it in eval mode."""
    torch.manual_seed(seed)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(train_x)
    steps = epochs * -(-n // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.from_numpy(np.ascontiguousarray(train_x)), torch.from_numpy(np.ascontiguousarray(train_y))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            b = perm[i:i + batch_size]
            loss = F.cross_entropy(model(shift_batch(xs[b], shift, g)), ys[b].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def cached_teacher(train_x: np.ndarray, train_y: np.ndarray, classes: int, epochs: int = 3, seed: int = 0,
                   cache: Path | None = None) -> tuple[Teacher, dict[str, Any]]:
    """The teacher for these training images: loaded from the cache when one was trained on the same data
    with the same settings, else trained and saved. Returns (teacher, info) with info["cached"]."""
    cache = Path(cache) if cache is not None else TEACHER_CACHE
    key = _teacher_key(train_x, train_y, classes, epochs, seed)
    path = cache / f"teacher-{key}.npz"
    model = Teacher(tuple(train_x.shape[1:]), classes)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                state = {k: torch.from_numpy(z[k]) for k in model.state_dict()}
            model.load_state_dict(state)
            return model.eval(), {"cached": True, "path": str(path), "train_seconds": 0.0}
        except (KeyError, ValueError, RuntimeError, OSError):
            pass  # a broken file: train again and replace it
    t0 = time.perf_counter()
    model = train_teacher(train_x, train_y, classes, epochs, seed)
    seconds = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    os.replace(tmp, path)
    return model, {"cached": False, "path": str(path), "train_seconds": seconds}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened distributions, scaled by T^2 (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True,
                    reduction="batchmean") * (t * t)
