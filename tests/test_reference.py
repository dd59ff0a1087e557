"""The integer reference against the PyTorch eval-mode model, over random architectures and weights."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebnn_core import ArchSpec, ConvBlock, DenseBlock, FoldedModel, reference_predict
from ebnn_core.folded import fold, sum_bound
from ebnn_core.nn import BNN
from ebnn_core.semantics import PIXEL_SCALE

from .strategies import arch_specs, randomize


def _torch_with_margins(model: BNN, x: np.ndarray):
    """float64 logits and, per image, the smallest |batch-norm output| of any hidden unit."""
    model = model.double()
    margins = []

    def hook(mod, inp, out):
        margins.append(out.detach().abs().flatten(1).min(1).values)

    handles = [b.bn.register_forward_hook(hook) for b in model.blocks]
    with torch.no_grad():
        logits = model(torch.from_numpy(x.astype(np.float64))).numpy()
    for h in handles:
        h.remove()
    margin = torch.stack(margins).min(0).values.numpy() if margins else np.full(len(x), np.inf)
    return logits, margin


def _decidable(model: BNN, logits: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Images whose every hidden sign and whose argmax float rounding cannot flip."""
    spec = model.spec
    bn = model.classifier.bn
    a = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    b = (bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    if not spec.blocks and spec.input_mode == "uint8":
        a = a / PIXEL_SCALE  # a classifier straight on raw pixels
    bound = sum_bound(spec, spec.shapes()[-1])
    worst = np.max(np.abs(a) * bound + np.abs(b)) + 1
    tol = 2 * (bound + 1) * worst / 2 ** 30  # twice the worst rounding of integer scale and offset
    top2 = np.sort(logits, axis=1)[:, -2:]
    return (margin > 1e-7) & (top2[:, 1] - top2[:, 0] > tol)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=arch_specs(), seed=st.integers(0, 2**31 - 1))
def test_reference_equals_torch_where_decidable(spec, seed):
    model = randomize(BNN(spec), seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (48,) + spec.input_shape, dtype=np.uint8)
    x[:4] = rng.choice([0, 255], (4,) + spec.input_shape)  # saturated images hit the extremes
    logits, margin = _torch_with_margins(model, x)
    folded = fold(model.float())
    pred, scores = reference_predict(folded, x)
    ok = _decidable(model, logits, margin)
    assert ok.sum() >= len(x) // 2, f"only {ok.sum()} of {len(x)} images decidable for {spec.describe()}"
    want = logits.argmax(1)
    bad = np.flatnonzero(ok & (pred != want))
    assert bad.size == 0, f"{spec.describe()}: images {bad.tolist()} ref {pred[bad]} torch {want[bad]}"
    assert scores.dtype == np.int64 and np.abs(scores).max() < 2**31


def test_constant_channels_and_flips_fold_exactly():
    spec = ArchSpec((1, 6, 6), 3, (DenseBlock(4),), input_mode="binary")
    m = BNN(spec).eval()
    bn = m.blocks[0].bn
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.0, 0.0, -1.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, -0.5, 0.25, 0.25]))
        bn.running_mean.copy_(torch.tensor([0.0, 0.0, 3.0, 3.0]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0]) - bn.eps)
    ly = fold(m).layers[0]
    assert ly.constant.tolist() == [1, -1, 0, 0]
    # +1 always: S >= -36 always, no flip; -1 always: flipped
    assert ly.threshold[:2].tolist() == [-36, -36] and ly.flip[:2].tolist() == [0, 1]
    # a = -1: -(S - 3) + 0.25 >= 0 <=> S <= 3.25 <=> NOT (S >= 4)
    assert ly.threshold[2] == 4 and ly.flip[2] == 1
    # a = +1: S - 3 + 0.25 >= 0 <=> S >= 2.75 <=> S >= 3
    assert ly.threshold[3] == 3 and ly.flip[3] == 0


def test_pixel_threshold_absorbs_input_scale():
    spec = ArchSpec((1, 2, 2), 2, (DenseBlock(1),))
    m = BNN(spec).eval()
    with torch.no_grad():
        m.blocks[0].fc.weight.fill_(1.0)
        bn = m.blocks[0].bn
        bn.weight.fill_(1.0), bn.bias.fill_(0.0), bn.running_var.fill_(1.0 - bn.eps)
        bn.running_mean.fill_(2.0)  # sum(pixels)/255 >= 2 <=> sum(pixels) >= 510
    ly = fold(m).layers[0]
    assert ly.threshold.tolist() == [510] and ly.flip.tolist() == [0]


def test_folded_model_save_load_round_trip(tmp_path):
    spec = ArchSpec((2, 9, 7), 4, (ConvBlock(5, 3, padding=1, pool=2, fusion="unfused"), DenseBlock(7)))
    fm = fold(randomize(BNN(spec), 3), meta={"note": "x"})
    p = fm.save(tmp_path / "m.npz")
    back = FoldedModel.load(p)
    assert back.spec == spec and back.meta == {"note": "x"}
    for a, b in zip(fm.layers, back.layers):
        assert a.kind == b.kind and a.n_weight_bits == b.n_weight_bits
        np.testing.assert_array_equal(a.weights, b.weights)
        for k in ("threshold", "flip", "constant", "scale", "offset"):
            if getattr(a, k) is None:
                assert getattr(b, k) is None
            else:
                np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    x = np.random.default_rng(0).integers(0, 256, (20, 2, 9, 7), dtype=np.uint8)
    np.testing.assert_array_equal(reference_predict(fm, x)[1], reference_predict(back, x)[1])


def test_reference_rejects_wrong_input():
    fm = fold(randomize(BNN(ArchSpec((1, 4, 4), 2, ())), 0))
    with pytest.raises(TypeError, match="uint8"):
        reference_predict(fm, np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 1, 4, 4\)"):
        reference_predict(fm, np.zeros((1, 1, 4, 5), np.uint8))
