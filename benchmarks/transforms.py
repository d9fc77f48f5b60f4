"""Transforms benchmark: (a) jacfwd / jacrev crossover, (b) Hessian-vector products, (c) checkpointing.

(a) f: R^n -> R^m, f(x) = W2 @ tanh(W1 @ x). jacfwd runs one JVP per input (n forward passes with
tangents), jacrev one VJP per output (one forward, m backward passes): forward mode should win for
(n, m) = (8, 1024) and reverse mode for (1024, 8).
(b) f(x) = sum(tanh(A @ x)^2) with A 1024x1024: H v by forward-over-reverse (ga.hvp, jvp of grad),
by reverse-over-reverse (grad of <grad f, v>), one gradient, and PyTorch's
torch.func.jvp(torch.func.grad(f)) when torch is installed. Target: an HVP costs at most ~3 gradients
and no more than PyTorch's.
(c) the price of checkpointing: time and peak tensor memory of a 32-layer MLP's forward + backward,
plain and checkpointed every 4 layers.

BLAS, Numba's kernels and torch run single-threaded so that the 2-core machine's other work does
not make thread contention the thing measured. Run: python benchmarks/transforms.py [--out FILE].
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402  (the thread settings must precede NumPy's import)

import numpy as np  # noqa: E402

import gpuad as ga  # noqa: E402
from gpuad.bench.harness import compare, format_table, machine_info  # noqa: E402


def crossover(n: int, m: int, hidden: int = 64, samples: int = 5) -> dict:
    """Timings of jacfwd and jacrev for f: R^n -> R^m (and the check that they agree)."""
    rng = np.random.default_rng(0)
    w1 = ga.tensor(rng.standard_normal((hidden, n)).astype(np.float32) / np.sqrt(n))
    w2 = ga.tensor(rng.standard_normal((m, hidden)).astype(np.float32) / np.sqrt(hidden))
    x = ga.tensor(rng.standard_normal(n).astype(np.float32))

    def f(x):
        return w2 @ ga.tanh(w1 @ x)

    fwd, rev = ga.jacfwd(f)(x).numpy(), ga.jacrev(f)(x).numpy()
    assert fwd.shape == (m, n) and np.allclose(fwd, rev, atol=1e-5), "jacfwd and jacrev disagree"
    return compare({"jacfwd": lambda: ga.jacfwd(f)(x), "jacrev": lambda: ga.jacrev(f)(x)},
                   samples=samples, min_sample_s=0.2)


def hvp_timings(n: int = 1024, samples: int = 9) -> dict:
    """Timings of one HVP three ways (and of one gradient), checked against each other first."""
    rng = np.random.default_rng(0)
    a_np = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    x_np = rng.standard_normal(n).astype(np.float32)
    v_np = rng.standard_normal(n).astype(np.float32)
    a, x, v = ga.tensor(a_np), ga.tensor(x_np), ga.tensor(v_np)

    def f(x):
        return (ga.tanh(a @ x) ** 2).sum()

    def rev_over_rev():
        return ga.grad(lambda x: (ga.grad(f)(x) * v).sum())(x)

    hv = ga.hvp(f, (x,), (v,))[1].numpy()
    assert np.allclose(hv, rev_over_rev().numpy(), rtol=1e-4, atol=1e-5), "HVP methods disagree"
    impls = {"gradient (ga.grad)": lambda: ga.grad(f)(x),
             "hvp fwd-over-rev (ga.hvp)": lambda: ga.hvp(f, (x,), (v,)),
             "hvp rev-over-rev": rev_over_rev}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        at, xt, vt = torch.from_numpy(a_np), torch.from_numpy(x_np), torch.from_numpy(v_np)

        def ft(x):
            return (torch.tanh(at @ x) ** 2).sum()

        hv_t = torch.func.jvp(torch.func.grad(ft), (xt,), (vt,))[1].numpy()
        assert np.allclose(hv, hv_t, rtol=1e-4, atol=1e-5), "gpuad and PyTorch HVPs disagree"
        impls["torch.func grad"] = lambda: torch.func.grad(ft)(xt)
        impls["torch.func jvp(grad)"] = lambda: torch.func.jvp(torch.func.grad(ft), (xt,), (vt,))
    return compare(impls, samples=samples, min_sample_s=0.1)


def checkpoint_timings(layers: int = 32, batch: int = 512, width: int = 64, segment: int = 4,
                       samples: int = 7) -> tuple[dict, dict]:
    """Forward + backward of a tanh MLP with dropout, plain vs checkpointed in segments: (timings,
    peak tensor bytes above the parameters)."""
    rng = np.random.default_rng(0)
    ws = [ga.tensor((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32),
                    requires_grad=True) for _ in range(layers)]
    x = ga.tensor(rng.standard_normal((batch, width)).astype(np.float32))

    def block(h, *group):
        for w in group:
            h = ga.tanh(h @ w) * (ga.rand(*h.shape) > 0.1) * (1 / 0.9)
        return h

    def step(ck: bool):
        h = x
        for start in range(0, layers, segment):
            group = ws[start:start + segment]
            h = ga.checkpoint(block, h, *group) if ck else block(h, *group)
        (h ** 2).mean().backward()
        for w in ws:
            w.grad = None

    impls = {"plain": lambda: step(False), f"checkpoint every {segment} layers": lambda: step(True)}
    peaks = {}
    for name, run in impls.items():
        base = ga.memory.stats()["current_bytes"]
        ga.memory.reset_peak()
        run()
        peaks[name] = ga.memory.stats()["peak_bytes"] - base
    return compare(impls, samples=samples, min_sample_s=0.2), peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args()
    info = machine_info()
    lines = ["# gpuad transforms benchmark (CPU, float32, BLAS/Numba/torch single-threaded)",
             "# " + ", ".join(f"{k}={v}" for k, v in info.items()), ""]
    for n, m in ((8, 1024), (1024, 8)):
        t = crossover(n, m)
        winner, loser = sorted(t, key=lambda k: t[k].median)
        lines += [f"(a) Jacobian of f: R^{n} -> R^{m}: {winner} wins, {loser} takes "
                  f"{t[loser].median / t[winner].median:.1f}x as long", format_table(t, winner), ""]
    t = hvp_timings()
    ref = "gradient (ga.grad)"
    lines += ["(b) f(x) = sum(tanh(A x)^2), A 1024x1024: HVP vs one gradient", format_table(t, ref)]
    if "torch.func jvp(grad)" in t:
        ratio = t["hvp fwd-over-rev (ga.hvp)"].median / t["torch.func jvp(grad)"].median
        lines.append(f"ga.hvp / torch.func jvp(grad) = {ratio:.2f}")
    t, peaks = checkpoint_timings()
    lines += ["", "(c) 32-layer tanh MLP with dropout (batch 512, width 64): forward + backward",
              format_table(t, "plain")]
    lines += [f"peak tensor memory, {name}: {peak / 1e6:.1f} MB" for name, peak in peaks.items()]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report + "\n")


if __name__ == "__main__":
    main()
