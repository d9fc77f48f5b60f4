"""`gpuad train` end to end at small size, its error messages, determinism, and a memory-leak check."""
from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest

import gpuad as ga
from gpuad import nn, optim
from gpuad.cli import main
from gpuad.train import build_model


def test_train_one_epoch_writes_files_that_parse(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "epoch   1" in printed and "test acc" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "mlp" and len(metrics["epochs"]) == 1
    assert metrics["final"]["test_acc"] > 0.5  # ten classes: chance is 0.1
    ckpt = ga.load(out / "model.npz")
    model = build_model("mlp", (1, 8, 8), 10)
    model.load_state_dict(ckpt["model"])
    assert ckpt["config"]["epochs"] == 1
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cnn_one_epoch_learns(tmp_path):
    assert main(["train", "--epochs", "1", "--batch-size", "64", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["final"]["test_acc"] > 0.5


def test_seeded_runs_are_identical(tmp_path):
    for name in ("a", "b"):
        assert main(["train", "--model", "mlp", "--epochs", "1", "--seed", "3", "--out", str(tmp_path / name)]) == 0
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text())["final"] for n in ("a", "b"))
    assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]


def test_own_npz_dataset(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    images = rng.random((200, 8, 8)) * 0.2
    images[labels == 1, :, :4] += 0.8  # class 1: bright left half
    np.savez(tmp_path / "toy.npz", x=images, y=labels)
    assert main(["train", "--model", "cnn", "--dataset", str(tmp_path / "toy.npz"), "--epochs", "2",
                 "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]["test_acc"] > 0.9


def test_clear_errors(tmp_path, capsys):
    assert main(["train", "--dataset", str(tmp_path / "nope.npz"), "--out", str(tmp_path)]) == 2
    assert "--dataset" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2, 3, 3, 3)), y=np.zeros(4, int))
    assert main(["train", "--dataset", str(tmp_path / "bad.npz"), "--out", str(tmp_path)]) == 2
    assert "expected images of shape (N, H, W) or (N, 1, H, W), got (4, 2, 3, 3, 3)" in capsys.readouterr().err
    assert main(["train", "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(ga.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_says_what_is_available(tmp_path, capsys):
    assert main(["train", "--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is usable here" in err and f"{ga.backends.available()}" in err


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for the resident set size")
def test_no_memory_growth_between_20_and_200_training_steps():
    ga.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = ga.tensor(rng.random((32, 1, 8, 8), dtype=np.float32)), ga.tensor(rng.integers(0, 10, 32))

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        gc.collect()
        return ga.memory.stats()["current_bytes"], _rss_bytes()

    live20, rss20 = steps(20)
    live200, rss200 = steps(180)
    assert live200 == live20, f"live tensor bytes grew from {live20} to {live200}"
    assert rss200 - rss20 < 2 * 2**20, f"RSS grew by {(rss200 - rss20) / 2**20:.1f} MiB"


def test_without_tqdm_and_matplotlib_it_still_trains_and_says_so(tmp_path, capsys, monkeypatch):
    from gpuad import train

    monkeypatch.setattr(train, "_optional", lambda module: False)
    assert main(["train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "tqdm is not installed" in printed and "matplotlib is not installed" in printed
    assert (tmp_path / "model.npz").exists() and not (tmp_path / "curves.png").exists()
