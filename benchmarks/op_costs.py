"""Per-op cost by op: chains of 200 of one op on 8-element float32 tensors (tanh, sin, `* a`, `+ a`),
forward (graph recorded) and backward timed apart, gpuad beside PyTorch eager in one process (their
order alternating, medians and the median of the per-round ratios). Where benchmarks/overhead.py gives
one figure for its mixed chain, this says which ops and which direction cost what.

    python benchmarks/op_costs.py [--rounds 60]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import gpuad as ga
from gpuad.bench.harness import machine_info

LENGTH = 200  # ops per chain
GRAPHS = 5  # chains built, then backpropagated, per sample


def chains(x, a) -> dict:
    """Each op's chain on `x` (requires grad) with the constant `a`, ending in a sum."""
    def chain(step):
        def build():
            y = x
            for _ in range(LENGTH):
                y = step(y)
            return y.sum()
        return build

    return {"tanh": chain(lambda y: y.tanh()), "sin": chain(lambda y: y.sin()),
            "mul": chain(lambda y: y * a), "add": chain(lambda y: y + a)}


def sample(build, x) -> tuple[float, float]:
    """Seconds per op of the forward (building GRAPHS chains) and of their backward."""
    start = time.perf_counter()
    graphs = [build() for _ in range(GRAPHS)]
    forward = time.perf_counter() - start
    start = time.perf_counter()
    for s in graphs:
        s.backward()
    backward = time.perf_counter() - start
    x.grad = None
    return forward / (GRAPHS * LENGTH), backward / (GRAPHS * LENGTH)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    import torch

    info = machine_info("cpu", command=f"python benchmarks/op_costs.py --rounds {args.rounds}")
    print(", ".join(f"{k}={info[k]}" for k in ("processor", "cpus", "python", "numpy", "date"))
          + f", torch={torch.__version__} ({torch.get_num_threads()} threads)\n")
    values = (np.random.default_rng(0).standard_normal(8) * 0.1).astype(np.float32)
    gx, tx = ga.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    libs = {"gpuad": (chains(gx, ga.tensor(np.full(8, 0.5, np.float32))), gx),
            "torch": (chains(tx, torch.full((8,), 0.5)), tx)}
    times: dict = {}
    for r in range(args.rounds):
        for lib in ("gpuad", "torch") if r % 2 else ("torch", "gpuad"):
            built, x = libs[lib]
            for op, build in built.items():
                fwd, bwd = sample(build, x)
                times.setdefault((lib, "forward", op), []).append(fwd)
                times.setdefault((lib, "backward", op), []).append(bwd)
        time.sleep(0.002)
    print(f"{'op':<5} {'direction':<9} {'gpuad':>9} {'torch':>9} {'gpuad/torch':>12}")
    for op in ("tanh", "sin", "mul", "add"):
        for direction in ("forward", "backward"):
            g, t = (np.array(times[(lib, direction, op)]) for lib in ("gpuad", "torch"))
            print(f"{op:<5} {direction:<9} {np.median(g) * 1e6:6.3f} us {np.median(t) * 1e6:6.3f} us "
                  f"{np.median(g / t):11.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
