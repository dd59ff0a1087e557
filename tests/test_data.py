import pickle

import numpy as np
import pytest

from ebnn_core.data import (DEFAULT_CIFAR10_EASY_CLASSES, MNIST_MD5, DataError, ImageDataModule, load_cifar10,
                            load_fashion_mnist, md5, split_train_val)


def test_mnist_is_the_real_one(mnist):
    assert mnist.train_x.shape == (60000, 1, 28, 28) and mnist.test_x.shape == (10000, 1, 28, 28)
    assert md5(mnist.train_x[:, 0]) == MNIST_MD5["train_images"]
    assert md5(mnist.test_x[:, 0]) == MNIST_MD5["test_images"]
    assert md5(mnist.train_y.astype(np.uint8)) == MNIST_MD5["train_labels"]
    assert md5(mnist.test_y.astype(np.uint8)) == MNIST_MD5["test_labels"]
    assert mnist.train_x.dtype == np.uint8 and sorted(np.unique(mnist.test_y)) == list(range(10))


def test_fashion_mnist_from_debian_package():
    s = load_fashion_mnist()
    assert s.train_x.shape == (60000, 1, 28, 28) and s.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(s.test_y).tolist() == [1000] * 10


def _write_cifar(root, n=30, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
    return names


def test_cifar10_easy_reads_the_standard_layout(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    _write_cifar(root)
    s = load_cifar10(root)
    assert s.classes == DEFAULT_CIFAR10_EASY_CLASSES
    assert s.train_x.shape[1:] == (3, 32, 32) and s.train_x.dtype == np.uint8
    assert set(np.unique(s.train_y)) <= set(range(len(DEFAULT_CIFAR10_EASY_CLASSES)))
    # labels remapped: the first image of class 'frog' (id 6) must be label 2 in the default subset
    with open(root / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    kept = [i for i, lab in enumerate(d[b"labels"]) if lab in (0, 1, 6, 7, 8)]
    first = kept[0]
    want = {0: 0, 1: 1, 6: 2, 7: 3, 8: 4}[d[b"labels"][first]]
    assert s.train_y[0] == want
    np.testing.assert_array_equal(s.train_x[0].reshape(-1), d[b"data"][first])
    two = load_cifar10(root, ("cat", "dog"))
    assert set(np.unique(two.train_y)) <= {0, 1}


def test_cifar10_missing_folder_names_the_path(tmp_path):
    with pytest.raises(DataError, match=f"dataset.root={tmp_path / 'nowhere'}: folder missing"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(DataError, match="dataset.classes"):
        root = tmp_path / "c"
        _write_cifar(root, n=2)
        load_cifar10(root, ("cat", "unicorn"))


def test_validation_split_is_fixed_by_seed():
    a = split_train_val(1000, 100, 7)
    b = split_train_val(1000, 100, 7)
    c = split_train_val(1000, 100, 8)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert len(np.intersect1d(a[0], a[1])) == 0 and len(a[0]) + len(a[1]) == 1000
    with pytest.raises(DataError, match="val_size"):
        split_train_val(10, 10, 0)


def test_datamodule_subset(mnist):
    dm = ImageDataModule(mnist, batch_size=64, val_size=5000, seed=0, train_subset=1000)
    assert len(dm.train_idx) == 1000 and len(dm.val_idx) == 5000
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype.is_floating_point is False and x.shape == (64, 1, 28, 28)
