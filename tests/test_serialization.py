"""ga.save / ga.load: round trips of nested state, and refusal of truncated, foreign and pickled files."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import gpuad as ga
from gpuad import nn, optim
from gpuad.serialization import CheckpointError


def test_round_trip_of_model_optimizer_and_metadata(tmp_path):
    ga.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    model(ga.randn(5, 3)).sum().backward()
    opt.step()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "note": "ok",
           "lrs": [0.1, float("inf")], "shape": (2, 3), "none": None, "arr": np.arange(4, dtype=np.int32),
           "f64": ga.tensor([1.5], dtype=ga.float64, requires_grad=True)}
    path = tmp_path / "ckpt.npz"
    ga.save(obj, path)
    back = ga.load(path)
    assert back["epoch"] == 3 and back["note"] == "ok" and back["none"] is None
    assert back["lrs"] == [0.1, float("inf")] and back["shape"] == (2, 3)
    assert back["arr"].dtype == np.int32 and isinstance(back["arr"], np.ndarray)
    assert back["f64"].dtype == ga.float64 and back["f64"].requires_grad
    assert list(back["model"]) == list(obj["model"])
    for k, v in obj["model"].items():
        np.testing.assert_array_equal(back["model"][k].numpy(), v.numpy())
        assert back["model"][k].dtype == v.dtype
    assert 0 in back["optimizer"]["state"]  # integer keys survive
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    fresh.load_state_dict(back["model"])
    opt2 = optim.Adam(fresh.parameters())
    opt2.load_state_dict(back["optimizer"])
    np.testing.assert_array_equal(opt2.state[fresh[0].weight]["exp_avg"], opt.state[model[0].weight]["exp_avg"])


def test_save_rejects_objects_it_cannot_store_safely(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store a object at root\['x'\]"):
        ga.save({"x": object()}, tmp_path / "x.npz")


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    path = tmp_path / "ckpt.npz"
    ga.save({"w": ga.ones(1000)}, path)
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"cut.npz is truncated or not a gpuad checkpoint"):
        ga.load(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="not a gpuad checkpoint"):
        ga.load(tmp_path / "text.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(CheckpointError, match="no gpuad metadata"):
        ga.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ga.load(tmp_path / "missing.npz")


class _Exploit:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_inside_a_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    good = tmp_path / "good.npz"
    ga.save({"w": ga.ones(2)}, good)
    with np.load(good) as f:
        entries = {k: f[k] for k in f.files}
    evil = np.empty(1, dtype=object)
    evil[0] = _Exploit(str(marker))
    entries["a0"] = evil  # replaces the tensor's array with a pickled object
    np.savez(tmp_path / "evil.npz", allow_pickle=True, **entries)
    with pytest.raises(CheckpointError, match="pickled Python objects, which are refused"):
        ga.load(tmp_path / "evil.npz")
    assert not marker.exists()
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(CheckpointError):
        ga.load(tmp_path / "evil.pkl")
    assert not marker.exists()
    assert not os.path.exists(str(marker))


def test_half_precision_dtypes_round_trip(tmp_path):
    obj = {"h": ga.tensor([1.0, -0.5], dtype=ga.float16)}
    if ga.bfloat16 is not None:
        obj["b"] = ga.tensor(np.array([1.5, -2.25], dtype=ga.bfloat16))
    ga.save(obj, tmp_path / "half.npz")
    back = ga.load(tmp_path / "half.npz")
    for k, v in obj.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k].numpy().astype(np.float32), v.numpy().astype(np.float32))
