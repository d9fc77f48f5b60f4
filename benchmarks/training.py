"""Training-step benchmark: one full step (forward, cross-entropy, backward, optimizer update) of an MLP
and of a small CNN, gpuad vs PyTorch on the CPU, timed in the same run with gpuad.bench.harness.compare.

    python benchmarks/training.py [--threads 1,2] [--samples 9]

Each thread count runs in a fresh process with OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS and
OMP_NUM_THREADS set (they are read at import) and torch.set_num_threads: both libraries get the same
number of threads. OMP_WAIT_POLICY=PASSIVE keeps torch's idle OpenMP threads from spinning while gpuad
runs (and taking the cores from it) between the round-robin samples. On a 2-core machine two pools
(BLAS and Numba, or torch's) can oversubscribe the cores, so the one-thread rows are the steadier
comparison.

MLP: 784 -> 256 -> 256 -> 10 (ReLU), Adam. CNN: conv 1->16 (3x3, pad 1), ReLU, max-pool 2, conv 16->32
(3x3, pad 1), ReLU, max-pool 2, linear 1568 -> 10, Adam. Batch 64 of 28x28 images, float32."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

import gpuad as ga
from gpuad import nn
from gpuad.bench.harness import compare, format_table, machine_info

BATCH = 64


def models(nn):
    """The benchmark MLP and CNN from `nn` (gpuad's or torch's: the constructors share signatures)."""
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(32 * 7 * 7, 10))
    return {"mlp": mlp, "cnn": cnn}


def gpuad_models():
    """The benchmark MLP and CNN in gpuad (seeded)."""
    ga.manual_seed(0)
    return models(nn)


def torch_models(torch):
    """The same two models in PyTorch (seeded)."""
    torch.manual_seed(0)
    return models(torch.nn)


def gpuad_step(model, x, y):
    """A training-step closure for a gpuad model."""
    opt = ga.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = ga.tensor(x), ga.tensor(y)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step


def torch_step(torch, model, x, y):
    """The same step in PyTorch (default Adam: foreach implementation)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step


def worker(threads: int, samples: int) -> int:
    """Time both models in this process (its thread pools were sized by the parent's environment)."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    gm, tm = gpuad_models(), torch_models(torch)
    for name in ("mlp", "cnn"):
        timings = compare({"torch": torch_step(torch, tm[name], x, y), "gpuad": gpuad_step(gm[name], x, y)},
                          samples=samples, min_sample_s=0.2)
        print(f"\n{name} training step, batch {BATCH} of 28x28, Adam, {threads} thread(s) each")
        print(format_table(timings, "torch"))
    return 0


def main(argv=None) -> int:
    """Run one worker process per thread count and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(int(args.threads), args.samples)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: pip install torch (only for measuring)", file=sys.stderr)
        return 1
    info = machine_info()
    info["command"] = "python benchmarks/training.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    for n in args.threads.split(","):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": n, "NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": n,
               "MKL_NUM_THREADS": n, "OMP_WAIT_POLICY": "PASSIVE"}
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "--threads", n,
                               "--samples", str(args.samples)], env=env)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
