"""ga.data: the bundled digits, idx/npz loaders with their errors, and DataLoader."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import gpuad as ga
from gpuad import data


def test_load_digits_is_the_uci_set():
    d = data.load_digits()
    assert d.images.shape == (1797, 1, 8, 8) and d.images.dtype == np.float32
    assert d.labels.shape == (1797,) and d.labels.dtype == np.int64
    assert d.images.min() == 0.0 and d.images.max() == 1.0
    # per-class counts of the UCI test set as scikit-learn ships it
    np.testing.assert_array_equal(np.bincount(d.labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    # pixels are multiples of 1/16 (counts 0..16 of a 4x4 block)
    np.testing.assert_array_equal(d.images * 16, np.round(d.images * 16))


def test_train_test_split_is_seeded_and_disjoint():
    d = data.load_digits()
    tr, te = data.train_test_split(d, 0.2, seed=0)
    assert len(te.labels) == 359 and len(tr.labels) == 1438
    tr2, _ = data.train_test_split(d, 0.2, seed=0)
    np.testing.assert_array_equal(tr.labels, tr2.labels)


def test_dataloader_batches_shuffles_with_seed_and_covers_everything():
    x, y = np.arange(10, dtype=np.float32).reshape(10, 1), np.arange(10)
    loader = data.DataLoader((x, y), batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy()[:, 0] for b in batches]), seen)
    again = np.concatenate([b[1].numpy() for b in data.DataLoader((x, y), 4, seed=1)])
    np.testing.assert_array_equal(again, seen)
    second_epoch = np.concatenate([b[1].numpy() for b in loader])
    assert list(second_epoch) != list(seen)  # reshuffled each epoch
    ordered = data.DataLoader((x, y), 4, shuffle=False, drop_last=True)
    assert len(ordered) == 2 and list(next(iter(ordered))[1].numpy()) == [0, 1, 2, 3]
    assert isinstance(batches[0][0], ga.Tensor)
    with pytest.raises(ValueError, match="different lengths"):
        data.DataLoader((x, y[:5]), 2)


def write_idx(path, arr, code=0x08, gz=False):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
    raw = header + arr.astype(">u1" if code == 0x08 else ">i4").tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (5, 6, 6)), rng.integers(0, 10, 5)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    d = data.load_mnist(str(tmp_path / "train-images-idx3-ubyte.gz"), str(tmp_path / "train-labels-idx1-ubyte"))
    np.testing.assert_allclose(d.images[:, 0], imgs / imgs.max(), rtol=1e-6)
    np.testing.assert_array_equal(d.labels, labels)
    train, test = data.load_mnist_dir(str(tmp_path))
    assert test is None and train.images.shape == (5, 1, 6, 6)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(data.DataError, match="not an idx"):
        data.load_mnist(str(tmp_path / "bad"), str(tmp_path / "bad"))
    write_idx(tmp_path / "short", imgs)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-10])
    with pytest.raises(data.DataError, match="truncated"):
        data.load_mnist(str(tmp_path / "short"), str(tmp_path / "train-labels-idx1-ubyte"))


def test_npz_loader_and_shape_errors(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ok.npz", x=rng.random((6, 4, 4)), y=np.arange(6), x_test=rng.random((2, 16)),
             y_test=np.arange(2))
    train, test = data.load_npz(str(tmp_path / "ok.npz"))
    assert train.images.shape == (6, 1, 4, 4) and test.images.shape == (2, 1, 4, 4)
    np.savez(tmp_path / "flat.npz", images=rng.random((6, 5)), labels=np.arange(6))
    with pytest.raises(data.DataError, match="not square"):
        data.load_npz(str(tmp_path / "flat.npz"))
    np.savez(tmp_path / "labels.npz", x=rng.random((6, 4, 4)), y=np.arange(5))
    with pytest.raises(data.DataError, match=r"expected 6 integer labels"):
        data.load_npz(str(tmp_path / "labels.npz"))
    np.savez(tmp_path / "keys.npz", a=np.zeros(3))
    with pytest.raises(data.DataError, match="expected arrays 'x'"):
        data.load_npz(str(tmp_path / "keys.npz"))
    with pytest.raises(data.DataError, match="no such data file"):
        data.load_npz(str(tmp_path / "missing.npz"))
