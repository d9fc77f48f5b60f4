"""grad of mean(gelu_tanh(x) * sigmoid(x) + x**2) over 2**22 float32: @ga.elementwise (one fused forward
and one fused backward kernel) vs the op-by-op gpuad path vs hand-written NumPy vs PyTorch eager and
jax.jit when installed. Prints ms, ratios and GB/s (ideal traffic: read x, write the gradient) next
to the machine's copy bandwidth. Run: python benchmarks/elementwise.py [--n-log2 22] [--out FILE]."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import gpuad as ga
from gpuad.bench.harness import compare, copy_bandwidth, format_table, machine_info, to_numpy

_C = math.sqrt(2.0 / math.pi)


@ga.elementwise
def fused(x):
    """The benchmark's integrand as one scalar function."""
    gelu = 0.5 * x * (1.0 + math.tanh(_C * (x + 0.044715 * x * x * x)))
    sigmoid = 0.5 * math.tanh(0.5 * x) + 0.5
    return gelu * sigmoid + x * x


def gpuad_fused(x):
    return ga.grad(lambda t: fused(t).mean())(x)


def gpuad_op_by_op(x):
    return ga.grad(lambda t: (ga.gelu(t, approximate="tanh") * ga.sigmoid(t) + t ** 2).mean())(x)


def numpy_by_hand(x):
    """Forward and the hand-derived backward, each NumPy call one pass over the array."""
    inner = _C * (x + 0.044715 * x * x * x)
    th = np.tanh(inner)
    gelu = 0.5 * x * (1.0 + th)
    sig = 0.5 * np.tanh(0.5 * x) + 0.5
    dgelu = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * _C * (1.0 + 3 * 0.044715 * x * x)
    dsig = sig * (1.0 - sig)
    return (dgelu * sig + gelu * dsig + 2.0 * x) * np.float32(1.0 / x.size)


def _torch_impl(x_np):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    x = torch.from_numpy(x_np)

    def run():
        t = x.detach().requires_grad_(True)
        y = (torch.nn.functional.gelu(t, approximate="tanh") * torch.sigmoid(t) + t ** 2).mean()
        y.backward()
        return t.grad.numpy()

    return run


def _jax_impl(x_np):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    f = jax.jit(jax.grad(lambda t: (jax.nn.gelu(t, approximate=True) * jax.nn.sigmoid(t) + t ** 2).mean()))
    x = jnp.asarray(x_np)
    return lambda: f(x).block_until_ready()


def main(argv: list[str] | None = None) -> str:
    """Time every implementation in one interleaved run; return (and print) the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-log2", type=int, default=22)
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    x_np = np.random.default_rng(0).standard_normal(1 << args.n_log2).astype(np.float32)
    x = ga.tensor(x_np)
    impls = {"gpuad @elementwise": lambda: gpuad_fused(x), "gpuad op by op": lambda: gpuad_op_by_op(x),
             "numpy by hand": lambda: numpy_by_hand(x_np)}
    for name, make in (("torch eager", _torch_impl), ("jax.jit", _jax_impl)):
        impl = make(x_np)
        if impl is not None:
            impls[name] = impl
    reference = numpy_by_hand(x_np.astype(np.float64))
    for name, impl in impls.items():  # every implementation computes the same gradient
        got = to_numpy(impl())
        np.testing.assert_allclose(got, reference, rtol=2e-4, atol=1e-12, err_msg=name)
    bandwidth = copy_bandwidth()
    timings = compare(impls, samples=args.samples)
    info = machine_info()
    lines = [f"grad of mean(gelu_tanh(x) * sigmoid(x) + x**2), x: 2**{args.n_log2} float32",
             ", ".join(f"{k}={v}" for k, v in info.items()), "",
             format_table(timings, "gpuad @elementwise", bytes_moved=2 * x_np.nbytes, bandwidth=bandwidth)]
    fused_t = timings["gpuad @elementwise"].median
    for other in ("jax.jit", "torch eager", "gpuad op by op", "numpy by hand"):
        if other in timings:
            lines.append(f"{other:>16} takes {timings[other].median / fused_t:5.2f}x the time of @elementwise")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    return report


if __name__ == "__main__":
    main()
