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
