"""ga.data: the bundled digits data set, loaders for MNIST-format (idx) and .npz files, and DataLoader.

`digits.npz` is the UCI ML "Optical Recognition of Handwritten Digits" test set (E. Alpaydin and
C. Kaynak, 1998): 1,797 8x8 images with integer pixels 0..16, taken from scikit-learn's bundled copy
(sklearn/datasets/data/digits.csv.gz; scikit-learn is BSD-3-Clause licensed; the UCI data set is CC BY
4.0). It is read from the package directory: no network access."""
from __future__ import annotations

import gzip
import math
import os
from typing import NamedTuple

import numpy as np

from ..tensor import tensor

_HERE = os.path.dirname(os.path.abspath(__file__))


class Dataset(NamedTuple):
    """Images (N, 1, H, W) float32 in [0, 1] and labels (N,) int64, as NumPy arrays."""

    images: np.ndarray
    labels: np.ndarray


class DataError(ValueError):
    """A data file that is missing, unreadable or has the wrong shape."""


def load_digits() -> Dataset:
    """The bundled 8x8 digits: 1,797 images (1, 8, 8) scaled to [0, 1] and labels 0..9."""
    with np.load(os.path.join(_HERE, "digits.npz"), allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    return Dataset((images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8), labels.astype(np.int64))


def _read_idx(path: str) -> np.ndarray:
    """An array from an MNIST-format idx file (optionally gzipped): magic 0x00 0x00 dtype ndim, sizes."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"cannot read idx file {path}: {exc}") from None
    codes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in codes:
        raise DataError(f"{path} is not an idx (MNIST-format) file: bad magic number {raw[:4]!r}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(codes[raw[2]])
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(shape) * dtype.itemsize:
        raise DataError(f"{path}: the header says shape {shape} ({math.prod(shape) * dtype.itemsize} bytes), "
                        f"the file holds {len(body)} bytes (truncated?)")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, 1, H, W) or (N, H*W) with H == W -> float32 (N, 1, H, W) scaled to [0, 1]."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: images must be numeric, got dtype {x.dtype}")
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise DataError(f"{where}: flat images of {x.shape[1]} pixels are not square; give (N, H, W)")
        x = x.reshape(-1, side, side)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise DataError(f"{where}: expected images of shape (N, H, W) or (N, 1, H, W), got {x.shape}")
    x = x.astype(np.float32)
    top = float(x.max()) if x.size else 1.0
    return x / top if top > 1.0 else x


def _as_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iu":
        raise DataError(f"{where}: expected {n} integer labels of shape ({n},), got {y.shape} {y.dtype}")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, got {y.min()}")
    return y.astype(np.int64)


def load_mnist(images_path: str, labels_path: str) -> Dataset:
    """Images and labels from MNIST-format idx files (e.g. train-images-idx3-ubyte[.gz])."""
    images = _as_images(_read_idx(images_path), images_path)
    return Dataset(images, _as_labels(_read_idx(labels_path), len(images), labels_path))


def load_npz(path: str) -> tuple[Dataset, Dataset | None]:
    """(train, test or None) from an .npz with `x`/`images` and `y`/`labels` (and optionally
    `x_test`/`y_test` or `images_test`/`labels_test`); read with allow_pickle=False."""
    if not os.path.exists(path):
        raise DataError(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:
        raise DataError(f"cannot read {path} as .npz: {type(exc).__name__}: {exc}") from None

    def pick(*names):
        return next((arrays[n] for n in names if n in arrays), None)

    x, y = pick("x", "images", "x_train", "images_train"), pick("y", "labels", "y_train", "labels_train")
    if x is None or y is None:
        raise DataError(f"{path}: expected arrays 'x' (or 'images') and 'y' (or 'labels'), found "
                        f"{sorted(arrays)}")
    images = _as_images(x, f"{path}: x")
    train = Dataset(images, _as_labels(y, len(images), f"{path}: y"))
    xt, yt = pick("x_test", "images_test"), pick("y_test", "labels_test")
    if xt is None or yt is None:
        return train, None
    test = _as_images(xt, f"{path}: x_test")
    if test.shape[1:] != train.images.shape[1:]:
        raise DataError(f"{path}: test images {test.shape[1:]} differ from train images {train.images.shape[1:]}")
    return train, Dataset(test, _as_labels(yt, len(test), f"{path}: y_test"))


def load_mnist_dir(path: str) -> tuple[Dataset, Dataset | None]:
    """(train, test or None) from a directory holding the MNIST idx files (gzipped or not)."""
    def find(stem):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
            if os.path.exists(os.path.join(path, name)):
                return os.path.join(path, name)
        return None

    tr = find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte")
    if None in tr:
        raise DataError(f"{path}: no MNIST files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz])")
    te = find("t10k-images-idx3-ubyte"), find("t10k-labels-idx1-ubyte")
    return load_mnist(*tr), (load_mnist(*te) if None not in te else None)


def train_test_split(data: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A seeded random split (the same for the same seed)."""
    order = np.random.default_rng(seed).permutation(len(data.labels))
    n_test = int(round(len(order) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset(data.images[train], data.labels[train]), Dataset(data.images[test], data.labels[test])


class DataLoader:
    """Mini-batches of a tuple of equally long arrays, as tensors on `device`; reshuffled each epoch
    from a generator seeded with `seed` (so a seeded run sees the same batches)."""

    def __init__(self, arrays, batch_size: int = 1, shuffle: bool = True, seed: int | None = None,
                 drop_last: bool = False, device="cpu"):
        arrays = tuple(a.numpy() if hasattr(a, "numpy") else np.asarray(a) for a in arrays)
        if not arrays:
            raise ValueError("DataLoader: give at least one array")
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError(f"DataLoader: arrays have different lengths {[len(a) for a in arrays]}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.arrays, self.batch_size, self.shuffle, self.drop_last = arrays, batch_size, shuffle, drop_last
        self.device = device
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.arrays[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.arrays[0])
        order = self._rng.permutation(n) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            yield tuple(tensor(np.ascontiguousarray(a[idx]), device=self.device) for a in self.arrays)


__all__ = ["Dataset", "DataError", "DataLoader", "load_digits", "load_mnist", "load_mnist_dir", "load_npz",
           "train_test_split"]
