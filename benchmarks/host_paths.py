"""The CPU backend's dispatch and allocation choices, each measured against its alternative in one process
(interleaved samples, medians):

1. a one-ufunc program (`0.01 * g`, g a (784, 512) float32 gradient) right after a cache flush: NumPy's
   ufunc, the Numba kernel alone, and the kernel through its call path (`numba_target.run`);
2. the MLP step of benchmarks/overhead.py with one-ufunc programs on NumPy below 2**22 elements (the
   rule in gpuad/elementwise/host.py) and with every large program on the Numba kernel;
3. a tanh writing a 32 MiB output into a block the allocation handler reused, and into a fresh one
   (the handler's cache emptied before each call);
4. an 8-element add right after a (256, 784) x (784, 512) matmul and warm, gpuad against NumPy;
5. an 8-element float32 mul, warm: NumPy's ufunc, the program's kernel (`Program.kernel_for`: the
   generated code with its dtype and size guard) and `host.pointwise` (the dtype-keyed lookup);
6. tanh's VJP g * (1 - y*y) on 8 float32 elements, warm: `1.0 - y` alone, then the ufuncs, with the
   constant as a Python float (NumPy converts it on every call) and as a 0-d float32 array (what a
   kernel binds), and the kernel;
7. an 8-element float32 np.multiply and np.empty(8, float32), warm: through the allocation handler with
   its small-block cache, with that cache off (`counters[SMALL_KEEP] = 0`), and through NumPy's default
   handler (in an empty context: NumPy keeps the handler in a context variable).

    python benchmarks/host_paths.py [--samples 41]
"""
from __future__ import annotations

import argparse
import contextvars
import time

import numpy as np

import gpuad as ga
from gpuad.bench.cases import Env
from gpuad.bench.harness import machine_info
from gpuad.bench.overhead import gpuad_mlp, numpy_mlp
from gpuad.elementwise import host, numba_target
from gpuad.ops.elementwise import PROGRAMS


def medians(cases: dict, samples: int, before=None, pause: float = 0.0) -> dict:
    """Median seconds of one call of each case, round-robin; `before(name)` runs untimed before each call."""
    times: dict = {name: [] for name in cases}
    for _ in range(samples):
        for name, fn in cases.items():
            if before is not None:
                before(name)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            if pause:
                time.sleep(pause)
    return {name: float(np.median(v)) for name, v in times.items()}


def show(title: str, result: dict, unit: float = 1e-6, label: str = "us") -> None:
    print(title)
    first = next(iter(result.values()))
    for name, t in result.items():
        print(f"  {name:<44} {t / unit:9.1f} {label}  {t / first:5.2f}x")
    print()


def one_ufunc(samples: int) -> None:
    rng = np.random.default_rng(0)
    g = rng.random((784, 512), dtype=np.float32)
    lr = np.asarray(np.float32(0.01))
    mul = PROGRAMS["mul"]
    numba_target.run(mul, (lr, g))
    kernel = mul.compiled["numba_plans"][((lr.shape, lr.strides, lr.dtype), (g.shape, g.strides, g.dtype))][0]
    flat, scalar = g.reshape(-1), lr.reshape(-1)
    junk = rng.random(4 << 20)  # 32 MB: reading it evicts g and the code paths from the caches

    cases = {
        "NumPy ufunc (np.multiply)": lambda: np.multiply(lr, g),
        "Numba kernel alone (+ its output)": lambda: kernel(g.size, scalar, flat, np.empty(g.size, np.float32)),
        "Numba kernel through numba_target.run": lambda: numba_target.run(mul, (lr, g)),
    }
    show("1. 0.01 * g, g (784, 512) float32, after a cache flush", medians(cases, samples, lambda _: junk.sum()))


def mlp_rule(samples: int) -> None:
    env = Env(device="cpu", sizes=[8], samples=1, min_sample_s=0.01, compare=())
    step, by_hand = gpuad_mlp(env), numpy_mlp(env)
    rule = host.PARALLEL_MIN_SIZE

    def setting(name: str) -> None:
        host.PARALLEL_MIN_SIZE = 0 if name.startswith("gpuad, every") else rule

    cases = {"NumPy by hand": by_hand, "gpuad, one-ufunc programs on NumPy": step,
             "gpuad, every large program on Numba": step}
    for name in cases:  # warm both settings
        setting(name)
        cases[name]()
    result = medians(cases, samples, setting, pause=0.02)
    host.PARALLEL_MIN_SIZE = rule
    show("2. MLP step 784-512-512-10, batch 256 (one step per sample)", result, 1e-3, "ms")


def output_reuse(samples: int) -> None:
    x = ga.randn(8 << 20)  # 32 MiB of float32

    def empty(name: str) -> None:
        if name.startswith("fresh"):
            ga.memory.empty_cache("cpu")

    cases = {"reused block (handler cache)": lambda: ga.tanh(x), "fresh block (cache emptied)": lambda: ga.tanh(x)}
    show("3. tanh of 2**23 float32, 32 MiB output", medians(cases, samples, empty), 1e-3, "ms")


def cold_op(samples: int) -> None:
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((256, 784), dtype=np.float32), rng.standard_normal((784, 512), dtype=np.float32)
    small = np.ones(8, np.float32)
    t = ga.tensor(small, requires_grad=True)
    cases = {"NumPy add, after a matmul": lambda: small + small, "gpuad add, after a matmul": lambda: t + t}
    show("4a. 8-element add right after a matmul", medians(cases, samples, lambda _: a @ w))
    cases = {"NumPy add, warm": lambda: small + small, "gpuad add, warm": lambda: t + t}
    show("4b. 8-element add, warm", medians(cases, samples, lambda _: small + small))


def small_kernel(samples: int, calls: int = 2000) -> None:
    program = PROGRAMS["mul"]
    a, b = np.ones(8, np.float32), np.full(8, 2.0, np.float32)
    kernel = program.kernel_for(ga.backends.get("numpy"))

    def repeat(fn):
        def run():
            for _ in range(calls):
                fn(a, b)
        return run

    cases = {"NumPy ufunc (np.multiply)": repeat(np.multiply), "the program's kernel (guarded code)": repeat(kernel),
             "host.pointwise(program, a, b)": repeat(lambda x, y: host.pointwise(program, x, y))}
    result = {name: t / calls for name, t in medians(cases, samples).items()}
    show("5. 8-element float32 mul, warm (per call)", result, 1e-9, "ns")


def kernel_constants(samples: int, calls: int = 2000) -> None:
    program = PROGRAMS["tanh"].vjp((0,))
    y, g = np.linspace(-0.9, 0.9, 8, dtype=np.float32), np.ones(8, np.float32)
    args = [{"y": y, "g": g}[role] for role in program.roles]
    kernel = program.kernel_for(ga.backends.get("numpy"))
    one = np.asarray(1.0, np.float32)
    mul, sub = np.multiply, np.subtract

    def repeat(fn):
        def run():
            for _ in range(calls):
                fn()
        return run

    single = {"subtract(1.0, y), 1.0 a Python float": repeat(lambda: sub(1.0, y)),
              "subtract(one, y), one a 0-d float32 array": repeat(lambda: sub(one, y))}
    result = {name: t / calls for name, t in medians(single, samples).items()}
    show("6a. 1.0 - y, 8 float32 elements, warm (per call)", result, 1e-9, "ns")
    cases = {"ufuncs, 1.0 a Python float": repeat(lambda: mul(g, sub(1.0, mul(y, y)))),
             "ufuncs, 1.0 a 0-d float32 array": repeat(lambda: mul(g, sub(one, mul(y, y)))),
             "the program's kernel (guarded code)": repeat(lambda: kernel(*args))}
    result = {name: t / calls for name, t in medians(cases, samples).items()}
    show("6b. g * (1 - y*y), 8 float32 elements, warm (per call)", result, 1e-9, "ns")


def small_blocks(samples: int, calls: int = 2000) -> None:
    from gpuad.backends import host_memory

    ga.memory.stats()  # the CPU backend installs the handler
    c, keep = host_memory.counters, int(host_memory.counters[host_memory.SMALL_KEEP])
    a, b = np.ones(8, np.float32), np.full(8, 2.0, np.float32)
    mul, empty, f32 = np.multiply, np.empty, np.float32
    # NumPy reads the handler and its error state from context variables on each call: an empty context
    # is NumPy's default handler; the handler's rows run in a copy of this one with the error state set,
    # else its look-up would miss on every ufunc call (CPython caches found values only) and cost them
    # ~10 ns that the empty context does not
    numpy_default, handler = contextvars.Context(), contextvars.copy_context()
    handler.run(np.seterr, **np.geterr())

    def mul_loop():
        for _ in range(calls):
            mul(a, b)

    def empty_loop():
        for _ in range(calls):
            empty(8, f32)

    def setting(name: str) -> None:
        c[host_memory.SMALL_KEEP] = 0 if "cache off" in name else keep
        if "cache off" in name:
            host_memory.release()  # nothing left for a malloc to take

    for part, what, loop in (("7a", "np.multiply(a, b)", mul_loop), ("7b", "np.empty(8, float32)", empty_loop)):
        cases = {f"{what}, NumPy's default handler": lambda loop=loop: numpy_default.run(loop),
                 f"{what}, small-block cache": lambda loop=loop: handler.run(loop),
                 f"{what}, small-block cache off": lambda loop=loop: handler.run(loop)}
        result = {name: t / calls for name, t in medians(cases, samples, setting).items()}
        show(f"{part}. {what}, 8 float32 elements, warm (per call)", result, 1e-9, "ns")
    c[host_memory.SMALL_KEEP] = keep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=41)
    args = parser.parse_args()
    info = machine_info("cpu", command="python benchmarks/host_paths.py --samples " + str(args.samples))
    print(", ".join(f"{k}={info[k]}" for k in ("processor", "cpus", "python", "numpy", "numba", "date")) + "\n")
    one_ufunc(args.samples)
    mlp_rule(args.samples)
    output_reuse(args.samples)
    cold_op(args.samples)
    small_kernel(args.samples)
    kernel_constants(args.samples)
    small_blocks(args.samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
