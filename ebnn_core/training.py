"""Training: a LightningModule over the BNN of an ArchSpec, seeded and deterministic on CPU.

    model, info = train(spec, datamodule, epochs=1, lr=5e-3, seed=0, recipe=Recipe(augment_shift=2))

The recipe (ebnn_core.recipe) chooses the schedule, augmentation, label smoothing, distillation from a
float teacher, batch-norm momentum, the straight-through estimator and weight clipping; every random
draw comes from generators seeded by `seed`.
"""
from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from .arch import ArchSpec
from .nn import BNN
from .recipe import Recipe, distillation_loss, shift_batch


class BNNModule(pl.LightningModule):
    def __init__(self, spec_json: str, lr: float = 2e-2, epochs: int = 1, recipe: dict | None = None,
                 seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.recipe = Recipe.from_dict(recipe)
        self.model = BNN(ArchSpec.from_json(spec_json), ste=self.recipe.ste, bn_momentum=self.recipe.bn_momentum)
        self.lr = lr
        self.epochs = epochs
        self.seed = seed
        # the float teacher when recipe.teacher > 0 (set by train()); held in a list so it is not a submodule:
        # not trained, not in the checkpoint, kept in eval mode
        self.teacher_holder: list[torch.nn.Module] = []
        self._augment_gen = torch.Generator().manual_seed(seed * 7919 + 17)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_start(self) -> None:
        self._augment_gen.manual_seed(self.seed * 7919 + 17)  # the same draws on every fit with this seed

    def training_step(self, batch, batch_idx):
        x, y = batch
        r = self.recipe
        x = shift_batch(x, r.augment_shift, self._augment_gen)
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)
        if r.teacher > 0 and self.teacher_holder:
            with torch.no_grad():
                t_logits = self.teacher_holder[0](x)
            loss = (1.0 - r.teacher) * loss + r.teacher * distillation_loss(logits, t_logits, r.temperature)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.recipe.clip_weights:
            self.model.clip_weights()

    def _eval_step(self, batch, prefix: str):
        x, y = batch
        logits = self(x)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{prefix}_accuracy", acc, prog_bar=True, on_epoch=True, batch_size=len(y))
        self.log(f"{prefix}_loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=len(y))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        params = [p for n, p in self.model.named_parameters()]
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.recipe.weight_decay)
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        if self.recipe.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps, pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def quiet_lightning() -> None:
    """Keep Lightning's advice about workers and deprecations out of the user's terminal."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*limit_val_batches.*")


def set_determinism(seed: int) -> None:
    pl.seed_everything(seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True)


def train(spec: ArchSpec, datamodule: pl.LightningDataModule, epochs: int = 1, lr: float = 2e-2,
          seed: int = 0, progress: bool = True, validate: bool = True, recipe: Recipe | None = None,
          teacher: torch.nn.Module | None = None) -> tuple[BNN, dict]:
    """Train the BNN of `spec`; return the eval-mode model and {'val_accuracy', 'train_seconds', ...}.
    `teacher`: the float model distilled from when recipe.teacher > 0 (ebnn_core.recipe.cached_teacher)."""
    recipe = recipe or Recipe()
    if recipe.teacher > 0 and teacher is None:
        raise ValueError("recipe.teacher > 0 needs a teacher model (ebnn_core.recipe.cached_teacher)")
    quiet_lightning()
    set_determinism(seed)
    module = BNNModule(spec.to_json(), lr=lr, epochs=epochs, recipe=recipe.as_dict(), seed=seed)
    if recipe.teacher > 0:
        for p in teacher.parameters():
            p.requires_grad_(False)
        module.teacher_holder.append(teacher.eval())
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, deterministic=True, logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        num_sanity_val_steps=0, limit_val_batches=1.0 if validate else 0,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule)
    seconds = time.perf_counter() - t0
    model = module.model.eval()
    info = {"train_seconds": seconds, "epochs": epochs, "recipe": recipe.as_dict()}
    val = trainer.callback_metrics.get("val_accuracy")
    if val is not None:
        info["val_accuracy"] = float(val)
    return model, info


@torch.no_grad()
def predict_torch(model: BNN, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Eval-mode class indices for uint8 images (N, C, H, W)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        out.append(model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch]))).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def fit_fold_score(spec: ArchSpec, splits, *, epochs: int, batch_size: int, lr: float, seed: int, val_size: int,
                   train_subset: int | None = None, val_subset: int | None = None, meta: dict | None = None,
                   progress: bool = True, score_test: bool = True, recipe: Recipe | None = None):
    """The data -> fit -> fold sequence every stage shares: train the BNN of `spec` on `splits`, fold it to
    a FoldedModel, and (score_test) score PyTorch and the integer reference on the whole test set.
    Returns (folded, info): info has train_seconds, val_accuracy and, when scored, test_accuracy,
    reference_accuracy, disagreements (reference vs PyTorch), test_images. A recipe with a teacher distils
    from the float teacher of the training split (trained once and cached, ebnn_core.recipe)."""
    from .data import ImageDataModule, split_train_val
    from .folded import fold
    from .reference import predict as reference_predict

    dm = ImageDataModule(splits, batch_size=batch_size, val_size=val_size, seed=seed, train_subset=train_subset,
                         val_subset=val_subset)
    recipe = recipe or Recipe()
    teacher, tinfo = None, {}
    if recipe.teacher > 0:
        from .recipe import cached_teacher

        tr, _ = split_train_val(len(splits.train_x), val_size, seed)  # the whole training split, not a subset
        teacher, tinfo = cached_teacher(splits.train_x[tr], splits.train_y[tr], len(splits.classes),
                                        epochs=recipe.teacher_epochs, seed=seed)
    model, info = train(spec, dm, epochs=epochs, lr=lr, seed=seed, progress=progress, recipe=recipe, teacher=teacher)
    if tinfo:
        info["teacher"] = {"cached": tinfo["cached"], "train_seconds": round(tinfo["train_seconds"], 2)}
    folded = fold(model, meta=dict(meta or {}))
    if score_test:
        torch_pred = predict_torch(model, splits.test_x)
        t0 = time.perf_counter()
        ref_pred, _ = reference_predict(folded, splits.test_x)
        info.update(test_accuracy=float((torch_pred == splits.test_y).mean()),
                    reference_accuracy=float((ref_pred == splits.test_y).mean()),
                    disagreements=int((torch_pred != ref_pred).sum()), test_images=int(len(splits.test_y)),
                    reference_seconds=time.perf_counter() - t0)
    return folded, info
