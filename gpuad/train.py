"""`gpuad train`: train an MLP or a small CNN on the bundled digits (or an .npz / MNIST directory),
with a progress bar per epoch, train/test accuracy each epoch, and a checkpoint, metrics JSON and
PNG learning curves written to --out. tqdm and matplotlib are optional (the `train` extra): without
them the command still trains, printing one line per epoch, and says what it skipped."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

EPILOG = """examples:
  gpuad train                              # CNN on the bundled 8x8 digits, CPU
  gpuad train --model mlp --epochs 5
  gpuad train --dataset mnist.npz --device cuda --out runs/mnist
data files: an .npz with arrays x (or images) (N, H, W) and y (or labels) (N,), optionally x_test/y_test;
or a directory with MNIST idx files (train-images-idx3-ubyte[.gz], ...)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `gpuad train`."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--model", choices=["mlp", "cnn"], default="cnn", help="network (default: cnn)")
    parser.add_argument("--dataset", default="digits",
                        help="'digits' (bundled, default), an .npz file, or a directory of MNIST idx files")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set (default 20)")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--lr", type=float, default=3e-3,
                        help="Adam learning rate, cosine-annealed over the run (default 3e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seeds initialization and shuffling (default 0)")
    parser.add_argument("--out", default="runs", help="directory for model.npz, metrics.json, curves.png")


class TrainError(Exception):
    """A problem with the command's inputs, reported as one line without a traceback."""


def load_data(dataset: str):
    """(train, test) Datasets; digits and files without a test split get a fixed 80/20 split."""
    from . import data

    if dataset == "digits":
        return data.train_test_split(data.load_digits(), 0.2, seed=0)
    if not os.path.exists(dataset):
        raise TrainError(f"--dataset {dataset}: no such file or directory (use 'digits' for the bundled set)")
    try:
        train, test = data.load_mnist_dir(dataset) if os.path.isdir(dataset) else data.load_npz(dataset)
    except data.DataError as exc:
        raise TrainError(f"--dataset {dataset}: {exc}") from None
    if test is None:
        train, test = data.train_test_split(train, 0.2, seed=0)
    if len(train.labels) == 0 or len(test.labels) == 0:
        raise TrainError(f"--dataset {dataset}: need at least two images")
    return train, test


def build_model(kind: str, image_shape: tuple, n_classes: int):
    """The MLP (pixels -> 128 -> classes) or the CNN (two 3x3 conv + ReLU + 2x2 max-pool blocks, 16 and
    32 channels, then a linear classifier) for (1, H, W) images."""
    from . import nn

    _, h, w = image_shape
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(h * w, 128), nn.ReLU(), nn.Linear(128, n_classes))
    if h < 4 or w < 4:
        raise TrainError(f"--model cnn needs images of at least 4x4 pixels, got {h}x{w}")
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * (h // 4) * (w // 4), n_classes))


def evaluate(model, images: np.ndarray, labels: np.ndarray, device: str, batch: int = 512) -> tuple[float, float]:
    """(mean loss, accuracy) over a data set, in eval mode without recording a graph."""
    import gpuad as ga

    model.eval()
    total, correct = 0.0, 0
    with ga.no_grad():
        for i in range(0, len(labels), batch):
            x = ga.tensor(images[i:i + batch], device=device)
            y = ga.tensor(labels[i:i + batch], device=device)
            logits = model(x)
            total += ga.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(axis=1) == y).sum().item())
    model.train()
    return total / len(labels), correct / len(labels)


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True, file=sys.stdout)


def plot_curves(metrics: dict, path: str) -> None:
    """Loss and accuracy per epoch as a two-panel PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = [e["epoch"] for e in metrics["epochs"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [e["train_loss"] for e in metrics["epochs"]], "o-", label="train")
    ax1.plot(epochs, [e["test_loss"] for e in metrics["epochs"]], "s-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss", yscale="log")
    ax2.plot(epochs, [100 * e["train_acc"] for e in metrics["epochs"]], "o-", label="train")
    ax2.plot(epochs, [100 * e["test_acc"] for e in metrics["epochs"]], "s-", label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    cfg = metrics["config"]
    fig.suptitle(f"gpuad train: {cfg['model']} on {cfg['dataset']} ({cfg['device']}), "
                 f"test accuracy {100 * metrics['final']['test_acc']:.2f}%")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _optional(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _check_device(device: str) -> str:
    import gpuad as ga

    kind = device.partition(":")[0]
    if kind not in ("cpu", "cuda", "gpu"):
        raise TrainError(f"--device {device}: expected 'cpu' or 'cuda'")
    if kind != "cpu" and not ga.cuda.is_available():
        raise TrainError(f"--device {device}: no CUDA GPU is usable here (ga.backends.available() = "
                         f"{ga.backends.available()}); use --device cpu")
    try:
        ga.backends.for_device(device)
    except Exception as exc:
        raise TrainError(f"--device {device}: {exc}") from None
    return device


def train(args) -> dict:
    """Run the training described by the parsed arguments; returns the metrics dict."""
    import gpuad as ga
    from gpuad import nn, optim

    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise TrainError(f"--lr must be positive, got {args.lr}")
    device = _check_device(args.device)
    train_set, test_set = load_data(args.dataset)
    if train_set.images.shape[1:] != test_set.images.shape[1:]:
        raise TrainError(f"train images {train_set.images.shape[1:]} and test images "
                         f"{test_set.images.shape[1:]} differ in shape")
    mean, std = float(train_set.images.mean()), float(train_set.images.std()) or 1.0
    x_train = (train_set.images - mean) / std
    x_test = (test_set.images - mean) / std
    n_classes = int(max(train_set.labels.max(), test_set.labels.max())) + 1

    ga.manual_seed(args.seed)
    model = build_model(args.model, x_train.shape[1:], n_classes).to(device)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    sched = optim.CosineAnnealingLR(opt, T_max=args.epochs)
    loader = ga.data.DataLoader((x_train, train_set.labels), args.batch_size, shuffle=True, seed=args.seed,
                                device=device)
    bar = _optional("tqdm")
    if not bar:
        print("note: tqdm is not installed, so no progress bar (pip install 'gpuad[train]')")
    print(f"{args.model} on {args.dataset}: {len(x_train)} train / {len(x_test)} test images of "
          f"{x_train.shape[2]}x{x_train.shape[3]}, {n_classes} classes, "
          f"{sum(p.size for p in model.parameters())} parameters, device {device}")
    metrics = {"config": {"model": args.model, "dataset": args.dataset, "device": device, "epochs": args.epochs,
                          "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed},
               "epochs": []}
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        seen, running = 0, 0.0
        progress = _progress(loader, len(loader), f"epoch {epoch}/{args.epochs}", bar)
        for x, y in progress:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            seen += len(y)
            running += loss.item() * len(y)
            if bar:
                progress.set_postfix(refresh=False, loss=f"{running / seen:.4f}",
                                     img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        epoch_s = time.perf_counter() - t0
        sched.step()
        train_loss, train_acc = evaluate(model, x_train, train_set.labels, device)
        test_loss, test_acc = evaluate(model, x_test, test_set.labels, device)
        metrics["epochs"].append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                                  "test_loss": test_loss, "test_acc": test_acc, "seconds": epoch_s,
                                  "images_per_s": seen / epoch_s})
        print(f"epoch {epoch:3d}  loss {train_loss:.4f}  train acc {100 * train_acc:6.2f}%  "
              f"test acc {100 * test_acc:6.2f}%  ({seen / epoch_s:,.0f} img/s)", flush=True)
    metrics["final"] = dict(metrics["epochs"][-1])
    metrics["total_seconds"] = time.perf_counter() - start
    _write_outputs(args.out, model, opt, metrics)
    return metrics


def _write_outputs(out: str, model, opt, metrics: dict) -> None:
    import gpuad as ga

    os.makedirs(out, exist_ok=True)
    ga.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "config": metrics["config"]},
            os.path.join(out, "model.npz"))
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    written = ["model.npz", "metrics.json"]
    if _optional("matplotlib"):
        plot_curves(metrics, os.path.join(out, "curves.png"))
        written.append("curves.png")
    else:
        print("note: matplotlib is not installed, so no curves.png (pip install 'gpuad[train]')")
    print(f"test accuracy {100 * metrics['final']['test_acc']:.2f}% after {metrics['total_seconds']:.1f} s; "
          f"wrote {', '.join(os.path.join(out, w) for w in written)}")


def run(args) -> int:
    """Entry point of `gpuad train`: 0 on success, 2 with a one-line error for bad inputs."""
    try:
        train(args)
    except TrainError as exc:
        print(f"gpuad train: error: {exc}", file=sys.stderr)
        return 2
    return 0
