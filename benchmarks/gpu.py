"""GPU benchmarks of the CUDA backend (issue 5), each against the device's copy bandwidth measured in
the same run: the fused @ga.elementwise backward (target >= 80% of copy bandwidth), softmax
cross-entropy forward+backward and the multi-tensor fused Adam (targets >= 70%), layer norm
forward+backward, each beside the composed CuPy chain it replaces. Times are CUDA-event times of
calibrated batches (the device is synchronized before each batch starts).

    python benchmarks/gpu.py [--out benchmarks/results/gpu-DATE-DEVICE.txt] [--quick]

Needs a CUDA GPU and CuPy; exits with a message otherwise. Each bench_* function also takes
(numpy, HostClock(), "cpu") so that its code can be smoke-run on a machine without a GPU."""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import gpuad as ga
from gpuad.autograd import grad as autograd_grad
from gpuad.bench.harness import CudaEventClock, compare, copy_bandwidth, format_table, machine_info
from gpuad.ops.fused import fused_adam_, layer_norm, softmax_cross_entropy


def _share(timings: dict, name: str, nbytes: int, bandwidth: float) -> str:
    rate = nbytes / timings[name].median / 1e9
    return f"{name}: {rate:.1f} GB/s = {100 * rate / bandwidth:.0f}% of the measured copy bandwidth"


def bench_elementwise_backward(cp, clock, device: str, n: int, bandwidth: float) -> str:
    """swish's fused VJP kernel (reads x and g, writes dx) vs the CuPy chain of its formula."""
    @ga.elementwise
    def swish(x, beta):
        return x / (1.0 + math.exp(-beta * x))

    x = ga.randn(n, device=device, requires_grad=True)
    g = ga.randn(n, device=device)
    y = swish(x, 1.5)
    xa, ga_ = x.data, g.data

    def cupy_chain():
        s = 1.0 / (1.0 + cp.exp(-1.5 * xa))
        return ga_ * (s + 1.5 * xa * s * (1.0 - s))

    impls = {
        "gpuad fused backward": lambda: autograd_grad(y, x, grad_outputs=g, retain_graph=True),
        "cupy chain (5+ kernels)": cupy_chain,
        "copy x -> dx": lambda: cp.copyto(cp.empty_like(xa), xa),
    }
    timings = compare(impls, clock=clock)
    nbytes = 3 * n * 4
    return "\n".join([f"## fused elementwise backward, swish, {n} float32 (x, g read; dx written)",
                      format_table(timings, "cupy chain (5+ kernels)", nbytes, bandwidth),
                      _share(timings, "gpuad fused backward", nbytes, bandwidth) + " (target >= 80%)"])


def bench_softmax_xent(cp, clock, device: str, rows: int, cols: int, dtype: str, bandwidth: float) -> str:
    """Fused forward+backward (one read; one read + one write) vs log-softmax composed in CuPy."""
    rng = np.random.default_rng(0)
    x = ga.tensor(rng.standard_normal((rows, cols)).astype(dtype), device=device, requires_grad=True)
    labels = ga.tensor(rng.integers(0, cols, rows), device=device)
    kernels = x._backend.xp.kernels
    xa, la = x.data, labels.data
    ones = cp.ones(rows, np.float32 if dtype != "float64" else np.float64)

    def fused_op():
        loss = softmax_cross_entropy(x, labels, reduction="sum")
        return autograd_grad(loss, x)

    def raw_kernels():
        loss = kernels.softmax_xent_forward(xa, la, -100)
        return kernels.softmax_xent_backward(xa, la, loss, ones, -100)

    def cupy_composed():
        a = xa.astype(cp.float32)
        m = a.max(axis=1, keepdims=True)
        e = cp.exp(a - m)
        s = e.sum(axis=1, keepdims=True)
        loss = (cp.log(s) + m)[:, 0] - a[cp.arange(rows), la]
        p = e / s
        p[cp.arange(rows), la] -= 1
        return loss, p.astype(xa.dtype)

    timings = compare({"gpuad op fwd+bwd": fused_op, "raw kernels fwd+bwd": raw_kernels,
                       "cupy composed": cupy_composed}, clock=clock)
    nbytes = 3 * rows * cols * np.dtype(dtype).itemsize
    return "\n".join([f"## softmax cross-entropy fwd+bwd, ({rows}, {cols}) {dtype}",
                      format_table(timings, "cupy composed", nbytes, bandwidth),
                      _share(timings, "gpuad op fwd+bwd", nbytes, bandwidth) + " (target >= 70%)",
                      _share(timings, "raw kernels fwd+bwd", nbytes, bandwidth)])


def bench_layer_norm(cp, clock, device: str, rows: int, cols: int, bandwidth: float) -> str:
    """Fused forward and backward (dx, dweight, dbias) vs the same math composed in CuPy."""
    rng = np.random.default_rng(1)
    x = ga.tensor(rng.standard_normal((rows, cols)).astype(np.float32), device=device, requires_grad=True)
    w = ga.tensor(rng.standard_normal(cols).astype(np.float32), device=device, requires_grad=True)
    b = ga.tensor(rng.standard_normal(cols).astype(np.float32), device=device, requires_grad=True)
    g = ga.randn(rows, cols, device=device)
    xa, wa, ba, gda = x.data, w.data, b.data, g.data

    def fused():
        return autograd_grad(layer_norm(x, w, b), (x, w, b), grad_outputs=g)

    def composed():
        mean = xa.mean(axis=1, keepdims=True)
        rstd = 1.0 / cp.sqrt(((xa - mean) ** 2).mean(axis=1, keepdims=True) + 1e-5)
        xhat = (xa - mean) * rstd
        y = xhat * wa + ba
        gw = gda * wa
        dx = rstd * (gw - gw.mean(axis=1, keepdims=True) - xhat * (gw * xhat).mean(axis=1, keepdims=True))
        return y, dx, (gda * xhat).sum(axis=0), gda.sum(axis=0)

    timings = compare({"gpuad fused fwd+bwd": fused, "cupy composed": composed}, clock=clock)
    nbytes = 5 * rows * cols * 4  # fwd: x read, y written; bwd: x and g read, dx written
    return "\n".join([f"## layer norm fwd+bwd, ({rows}, {cols}) float32",
                      format_table(timings, "cupy composed", nbytes, bandwidth),
                      _share(timings, "gpuad fused fwd+bwd", nbytes, bandwidth)])


def bench_adam(cp, clock, device: str, sizes: list[int], bandwidth: float) -> str:
    """One multi-tensor launch for all parameters vs one CuPy Adam chain per parameter."""
    params = [ga.randn(n, device=device) for n in sizes]
    grads = [ga.randn(n, device=device) for n in sizes]
    ms = [ga.zeros(n, device=device) for n in sizes]
    vs = [ga.zeros(n, device=device) for n in sizes]
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, step=10, decoupled=True)

    def fused():
        fused_adam_(params, grads, ms, vs, **hyper)

    def per_tensor():
        for p, g, m, v in zip(params, grads, ms, vs):
            pa, gd, ma, va = p.data, g.data, m.data, v.data
            pa *= 1 - 1e-3 * 0.01
            ma *= 0.9
            ma += 0.1 * gd
            va *= 0.999
            va += 0.001 * gd * gd
            pa -= (1e-3 / (1 - 0.9 ** 10)) * ma / (cp.sqrt(va / (1 - 0.999 ** 10)) + 1e-8)

    timings = compare({"gpuad fused_adam_ (1 launch)": fused, "cupy per tensor": per_tensor}, clock=clock)
    total = sum(sizes)
    nbytes = 7 * total * 4  # p, g, m, v read; p, m, v written
    return "\n".join([f"## fused AdamW, {len(sizes)} tensors, {total} float32 parameters",
                      format_table(timings, "cupy per tensor", nbytes, bandwidth),
                      _share(timings, "gpuad fused_adam_ (1 launch)", nbytes, bandwidth) + " (target >= 70%)"])


def main(argv: list[str] | None = None) -> int:
    """Run every GPU benchmark, print the report and write it to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the report here (benchmarks/results/...)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    args = parser.parse_args(argv)
    if not ga.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU and CuPy; none is available here", file=sys.stderr)
        return 2
    import cupy as cp

    clock = CudaEventClock(cp)
    scale = 1 / 64 if args.quick else 1
    bandwidth = copy_bandwidth(int((1 << 28) * scale), xp=cp, clock=clock)
    info = machine_info("cuda", " ".join(["python benchmarks/gpu.py", *(argv or sys.argv[1:])]))
    n = int((1 << 26) * scale)
    rng = np.random.default_rng(2)
    sizes = [int(s) for s in rng.integers(1 << 10, 1 << 21, size=int(200 * math.sqrt(scale)))]
    sections = [
        "\n".join(f"{k}: {v}" for k, v in info.items()),
        f"measured copy bandwidth (device to device, read + write): {bandwidth:.1f} GB/s",
        bench_elementwise_backward(cp, clock, "cuda", n, bandwidth),
        bench_softmax_xent(cp, clock, "cuda", int(4096 * scale) or 64, 32768, "float32", bandwidth),
        bench_softmax_xent(cp, clock, "cuda", int(4096 * scale) or 64, 32768, "float16", bandwidth),
        bench_layer_norm(cp, clock, "cuda", int(16384 * scale) or 64, 4096, bandwidth),
        bench_adam(cp, clock, "cuda", sizes, bandwidth),
    ]
    report = "\n\n".join(sections) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
