"""Real training on real MNIST."""
import numpy as np
import torch

from ebnn_core import ArchSpec, ConvBlock, reference_predict
from ebnn_core.data import ImageDataModule
from ebnn_core.folded import fold
from ebnn_core.training import predict_torch, train


def test_training_is_deterministic_for_a_seed(mnist):
    spec = ArchSpec((1, 28, 28), 10, (ConvBlock(4, 3, pool=2),))

    def weights(seed):
        dm = ImageDataModule(mnist, batch_size=64, val_size=1000, seed=seed, train_subset=640)
        model, _ = train(spec, dm, epochs=1, seed=seed, progress=False, validate=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    a, b, c = weights(1), weights(1), weights(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_one_epoch_of_conv1_le_ii_on_mnist(mnist):
    """The small preset conv-1-le-ii (4 filters, 3.8 KB) after one epoch: >= 90% and <= 10 disagreements."""
    spec = ArchSpec((1, 28, 28), 10, (ConvBlock(4, 3),))
    dm = ImageDataModule(mnist, batch_size=128, val_size=5000, seed=0)
    model, info = train(spec, dm, epochs=1, seed=0, progress=False)
    torch_pred = predict_torch(model, mnist.test_x)
    ref_pred, _ = reference_predict(fold(model), mnist.test_x)
    acc = float((torch_pred == mnist.test_y).mean())
    disagreements = int((torch_pred != ref_pred).sum())
    print(f"conv-1-le-ii 1 epoch: test accuracy {acc:.4f}, disagreements {disagreements}, "
          f"{info['train_seconds']:.1f} s")
    assert acc >= 0.90
    assert disagreements <= 10
    assert np.mean(ref_pred == mnist.test_y) >= 0.90


# ---- the training recipe (ebnn_core.recipe) --------------------------------------------------------

def test_recipe_values_are_checked_naming_the_key():
    import pytest

    from ebnn_core.recipe import Recipe, RecipeError

    assert Recipe.from_dict(None) == Recipe() and Recipe.from_dict({"augment_shift": 2}).augment_shift == 2
    for bad, needle in [({"augment_shift": -1}, "recipe.augment_shift=-1: must be an integer"),
                        ({"augment_shift": 1.5}, "recipe.augment_shift=1.5"),
                        ({"teacher": 2}, "recipe.teacher=2: must be a number in [0.0, 1.0]"),
                        ({"ste": "tanh"}, "recipe.ste='tanh': choose one of clipped, approxsign"),
                        ({"schedule": "step"}, "recipe.schedule='step': choose one of onecycle, cosine"),
                        ({"clip_weights": "yes"}, "recipe.clip_weights='yes': must be true or false"),
                        ({"dropout": 0.1}, "recipe.dropout=0.1: no such recipe key")]:
        with pytest.raises(RecipeError) as e:
            Recipe.from_dict(bad)
        assert needle in str(e.value), (bad, str(e.value))


def test_shift_augmentation_is_deterministic_for_a_seed():
    from ebnn_core.recipe import shift_batch

    x = torch.randint(1, 256, (64, 1, 10, 10), dtype=torch.uint8)  # no zero pixel: the fill shows
    a = shift_batch(x, 2, torch.Generator().manual_seed(5))
    b = shift_batch(x, 2, torch.Generator().manual_seed(5))
    c = shift_batch(x, 2, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(shift_batch(x, 0, torch.Generator()), x)
    # each image is its original translated by (dy, dx) in [-2, 2], zero filled: find the shift
    d = torch.randint(-2, 3, (64, 2), generator=torch.Generator().manual_seed(5))
    for i, (dy, dx) in enumerate(d.tolist()):
        want = torch.zeros_like(x[i])
        src = x[i][:, max(0, -dy):10 - max(0, dy), max(0, -dx):10 - max(0, dx)]
        want[:, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
        assert torch.equal(a[i], want), (i, dy, dx)
    assert len({tuple(r) for r in d.tolist()}) > 10  # many different shifts in one batch


def _recipe_weights(mnist, recipe, seed, teacher=None):
    spec = ArchSpec((1, 28, 28), 10, (ConvBlock(4, 3, pool=2),))
    dm = ImageDataModule(mnist, batch_size=64, val_size=1000, seed=seed, train_subset=640)
    model, _ = train(spec, dm, epochs=1, seed=seed, progress=False, validate=False, recipe=recipe, teacher=teacher)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_augmented_training_is_deterministic_for_a_seed(mnist):
    from ebnn_core.recipe import Recipe

    r = Recipe(augment_shift=2, label_smoothing=0.1, ste="approxsign", schedule="cosine", bn_momentum=0.05)
    a, b, c = _recipe_weights(mnist, r, 1), _recipe_weights(mnist, r, 1), _recipe_weights(mnist, r, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, _recipe_weights(mnist, Recipe(), 1))  # the recipe changed the training


def test_teacher_is_cached_reused_and_deterministic(mnist, tmp_path, monkeypatch):
    import pytest

    from ebnn_core import recipe as R

    x, y = mnist.train_x[:512], mnist.train_y[:512]
    t1, info1 = R.cached_teacher(x, y, 10, epochs=1, seed=3, cache=tmp_path / "a")
    assert not info1["cached"] and len(list((tmp_path / "a").glob("teacher-*.npz"))) == 1
    t2, _ = R.cached_teacher(x, y, 10, epochs=1, seed=3, cache=tmp_path / "b")  # trained again elsewhere
    for (k, v), v2 in zip(t1.state_dict().items(), t2.state_dict().values()):
        assert torch.equal(v, v2), k  # deterministic for the seed

    def no_training(*a, **k):
        raise AssertionError("the cached teacher was trained again")

    monkeypatch.setattr(R, "train_teacher", no_training)
    t3, info3 = R.cached_teacher(x, y, 10, epochs=1, seed=3, cache=tmp_path / "a")
    assert info3["cached"] and info3["path"] == info1["path"]
    for v, v3 in zip(t1.state_dict().values(), t3.state_dict().values()):
        assert torch.equal(v, v3)
    # other data, another seed or other epochs: another teacher (a miss)
    for args in [(x[:256], y[:256], 10, 1, 3), (x, y, 10, 1, 4), (x, y, 10, 2, 3)]:
        with pytest.raises(AssertionError, match="trained again"):
            R.cached_teacher(*args[:3], epochs=args[3], seed=args[4], cache=tmp_path / "a")
    # a broken cache file is replaced, not trusted
    monkeypatch.undo()
    path = next((tmp_path / "a").glob("teacher-*.npz"))
    path.write_bytes(b"not an npz")
    _, info4 = R.cached_teacher(x, y, 10, epochs=1, seed=3, cache=tmp_path / "a")
    assert not info4["cached"]

    # distillation changes the training, deterministically
    rec = R.Recipe(teacher=0.5)
    a, b = _recipe_weights(mnist, rec, 1, teacher=t1), _recipe_weights(mnist, rec, 1, teacher=t1)
    assert torch.equal(a, b) and not torch.equal(a, _recipe_weights(mnist, R.Recipe(), 1))
    with pytest.raises(ValueError, match="needs a teacher"):
        _recipe_weights(mnist, rec, 1)


def test_float_twin_has_the_bnn_layers_and_trains_deterministically(mnist):
    """bench/float_baseline.py's float network: the BNN's conv and dense weights in float (same shapes),
    trained the same for a seed, and it learns."""
    from ebnn_core import DenseBlock
    from ebnn_core.nn import BNN, FloatTwin
    from ebnn_core.recipe import fit_float

    spec = ArchSpec(input_shape=(1, 28, 28), classes=10, input_mode="uint8",
                    blocks=(ConvBlock(filters=4, kernel=3, stride=2, pool=2), DenseBlock(16)))
    shapes = lambda m: [tuple(x.weight.shape) for x in m.modules() if isinstance(x, (torch.nn.Conv2d, torch.nn.Linear))]  # noqa: E731
    assert shapes(FloatTwin(spec)) == shapes(BNN(spec))
    x, y = mnist.train_x[:4000], mnist.train_y[:4000]
    a, b = (fit_float(lambda: FloatTwin(spec), x, y, epochs=2, seed=3) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with torch.no_grad():
        acc = (a(torch.from_numpy(mnist.test_x[:1000])).argmax(1).numpy() == mnist.test_y[:1000]).mean()
    assert acc > 0.5
