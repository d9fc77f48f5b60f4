"""The CPU fast path: a program becomes one Numba `parallel` loop over the flat elements, every output
written in the same pass. exp/log/tanh/erf in float32 and exp/tanh in float64 use the vectorizable
versions in fastmath.py; the other functions call libm. Inputs of the output's shape are read in place (copied
only when not C-contiguous or not of the compute dtype); inputs with one element (or one value broadcast,
every stride 0) are read once; other broadcasts are expanded."""
from __future__ import annotations

import hashlib
import math
import os
import sys
import warnings
from pathlib import Path

import numba
import numpy as np

from . import cache, fastmath
from .program import Program, result_dtypes

# OpenMP threads that spin between kernels steal the cores of a busy machine: on 2 shared cores a 1 ms
# kernel took 10 ms with spinning threads and 0.9 ms with sleeping ones (set before OpenMP starts;
# a user's own setting wins)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class OutputPool:
    """Recycles kernel output buffers that nobody references any more. A fresh output page-faults on
    first touch: that took 5 of 8 ms of the benchmark's forward kernel here (32 MB of outputs), so
    buffers of at least `min_bytes` are kept (at most `max_bytes` in all) and handed out again once
    only the pool holds them (CPython reference counts tell)."""

    def __init__(self, min_bytes: int = 1 << 20, max_bytes: int = 1 << 28):
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self.buffers: dict[tuple, list[np.ndarray]] = {}
        self.held = 0

    def empty(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """An uninitialized array, recycled when a free one of this shape and dtype is pooled."""
        nbytes = dtype.itemsize * math.prod(shape)
        if nbytes < self.min_bytes:
            return np.empty(shape, dtype)
        bucket = self.buffers.setdefault((shape, dtype.char), [])
        for buf in bucket:
            if sys.getrefcount(buf) == 3:  # the bucket, this loop and getrefcount's argument
                return buf
        buf = np.empty(shape, dtype)
        if self.held + nbytes <= self.max_bytes:
            bucket.append(buf)
            self.held += nbytes
        return buf


pool = OutputPool()

# a change to fastmath.py must change every generated module: Numba's disk cache keys on the module
# file, not on the functions it inlines
_FASTMATH_DIGEST = hashlib.sha1(Path(fastmath.__file__).read_bytes()).hexdigest()[:16]
_FAST = {"float32": {"exp": "exp_f32", "log": "log_f32", "tanh": "tanh_f32", "erf": "erf_f32"},
         "float64": {"exp": "exp_f64", "tanh": "tanh_f64"}}
_LIBM = {"exp": "math.exp", "log": "math.log", "log1p": "math.log1p", "expm1": "math.expm1",
         "sin": "math.sin", "cos": "math.cos", "tan": "math.tan", "tanh": "math.tanh", "sinh": "math.sinh",
         "cosh": "math.cosh", "asin": "math.asin", "acos": "math.acos", "atan": "math.atan",
         "erf": "math.erf", "erfc": "math.erfc", "sqrt": "np.sqrt", "floor": "np.floor", "ceil": "np.ceil",
         "abs": "abs"}
CHUNK = 1 << 15  # elements per work item: threads take chunks as they free up (a busy core delays less)
# Below this many elements a kernel runs on one thread. Right after a matmul OpenBLAS's threads spin
# for ~0.1 s; a parallel kernel then waits for a core: on this 2-core machine 131K elements took 6.4 ms
# on 2 threads against 94 us on one, and one thread still won at 4M (2.1 vs 3.6 ms). Training-sized
# activations stay on one thread; large elementwise work without BLAS in between gains from all cores.
PARALLEL_MIN_SIZE = 1 << 22
_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "lt": "<", "le": "<=", "gt": ">",
          "ge": ">=", "eq": "==", "ne": "!=", "and": "&", "or": "|"}


def _keep_first(a: str, b: str, cmp: str) -> str:
    """a where `a cmp b` or a is nan, else b: max (>=) and min (<=) that propagate a nan from either side."""
    return f"({a} if (({a} {cmp} {b}) | ({a} != {a})) else {b})"


def kernel_source(program: Program, dtype: np.dtype, scalar: tuple[bool, ...]) -> str:
    """Python source of the Numba kernel for compute `dtype`; `scalar[i]`: input i has one element."""
    fname = dtype.name
    consts: dict[str, str] = {}

    def constant(value) -> str:
        return consts.setdefault(repr(float(value)), f"C{len(consts)}")

    names: dict[int, str] = {}
    loads, body = [], []
    for i, v in enumerate(program.inputs):
        names[v.uid] = f"v{i}"
        (loads if scalar[i] else body).append(f"v{i} = a{i}[0]" if scalar[i] else f"v{i} = a{i}[k]")
    for k, node in enumerate(program.nodes):
        if node.op == "var":
            continue
        if node.op == "const":
            names[node.uid] = str(bool(node.value)) if node.kind == "b" else constant(node.value)
            continue
        a = [names[x.uid] for x in node.args]
        o = node.op
        if o in _INFIX:
            e = f"({a[0]} {_INFIX[o]} {a[1]})"
        elif o == "neg":
            e = f"(-{a[0]})"
        elif o == "not":
            e = f"(not {a[0]})"
        elif o == "where":
            e = f"({a[1]} if {a[0]} else {a[2]})"
        elif o == "float":
            e = f"({constant(1.0)} if {a[0]} else {constant(0.0)})"
        elif o in ("max", "min"):
            e = _keep_first(a[0], a[1], ">=" if o == "max" else "<=")
        elif o == "clip":
            e = _keep_first(_keep_first(a[0], a[1], ">="), a[2], "<=")
        elif o == "sign":
            one, zero = constant(1.0), constant(0.0)
            e = f"({one} if {a[0]} > {zero} else (-{one} if {a[0]} < {zero} else {a[0]}))"
        elif o in _FAST.get(fname, ()):
            e = f"{_FAST[fname][o]}({a[0]})"
        else:
            e = f"{_LIBM[o]}({a[0]})"
        names[node.uid] = f"t{k}"
        body.append(f"t{k} = {e}")
    for j, out in enumerate(program.outputs):
        body.append(f"o{j}[k] = {names[out.uid]}")
    params = ", ".join([f"a{i}" for i in range(program.n_inputs)] + [f"o{j}" for j in range(program.n_outputs)])
    lines = ["import math", "", "import numba", "import numpy as np", "",
             "from gpuad.elementwise.fastmath import erf_f32, exp_f32, exp_f64, log_f32, tanh_f32, tanh_f64", ""]
    lines += [f"{name} = np.{fname}(float({value!r}))" for value, name in consts.items()]
    lines += ["", f"# {program.name}: {program.key}", f"# fastmath {_FASTMATH_DIGEST}",
              '@numba.njit(parallel=True, cache=True, error_model="numpy", nogil=True)',
              f"def kernel(n, {params}):"]
    lines += [f"    {s}" for s in loads]
    lines += ["    for k in numba.prange(n):"] + [f"        {s}" for s in body]
    return "\n".join(lines) + "\n"


def kernel(program: Program, dtype: np.dtype, scalar: tuple[bool, ...], in_dtypes: tuple):
    """The compiled kernel, from memory, from the disk cache, or compiled now (see cache.stats)."""
    key = ("numba", dtype.char, scalar, in_dtypes)
    fn = program.compiled.get(key)
    if fn is not None:
        cache.stats["memory_hits"] += 1
        return fn
    out_types = [numba.types.boolean if o.kind == "b" else numba.from_dtype(dtype) for o in program.outputs]
    arg_types = [numba.types.Array(numba.from_dtype(d), 1, "C") for d in in_dtypes]
    arg_types += [numba.types.Array(t, 1, "C") for t in out_types]
    try:
        module = cache.load_module(kernel_source(program, dtype, scalar), f"{program.name}_{dtype.name}")
        cache.record_compile(module.kernel, (numba.types.intp, *arg_types))
        fn = module.kernel
    except Exception as exc:  # a Numba typing or lowering error: correct results from NumPy instead
        warnings.warn(f"gpuad: Numba could not compile the pointwise program {program.name} for {dtype}; "
                      f"using NumPy for it ({type(exc).__name__}: {str(exc)[:200]})", RuntimeWarning, stacklevel=2)
        fn = False
    program.compiled[key] = fn
    return fn


def run(program: Program, arrays: tuple):
    """Evaluate with the compiled kernel; None when this target does not apply (non-float dtypes)."""
    dtypes = tuple(a.dtype for a in arrays)
    if any(d.kind not in "fb" for d in dtypes):
        return None
    compute, out_dtype = result_dtypes(program, dtypes)
    if compute.kind != "f":
        return None
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    n = math.prod(shape)
    flat, scalar = [], []
    for a in arrays:
        want = compute if a.dtype.kind == "f" else a.dtype
        if a.size == 1 or (a.ndim and not any(a.strides)):
            flat.append(np.full(1, a.flat[0], dtype=want))
            scalar.append(True)
            continue
        if a.shape != shape:
            a = np.broadcast_to(a, shape)
        flat.append(np.ascontiguousarray(a, dtype=want).reshape(-1))
        scalar.append(False)
    fn = kernel(program, compute, tuple(scalar), tuple(f.dtype for f in flat))
    if fn is False:
        return None
    outs = [pool.empty(shape, np.dtype(np.bool_) if o.kind == "b" else compute) for o in program.outputs]
    numba.set_parallel_chunksize(CHUNK)
    numba.set_num_threads(1 if n < PARALLEL_MIN_SIZE else numba.config.NUMBA_NUM_THREADS)
    fn(n, *flat, *(o.reshape(-1) for o in outs))
    if out_dtype != compute:
        outs = [o.astype(out_dtype) if o.dtype.kind == "f" else o for o in outs]
    return outs[0] if len(outs) == 1 else tuple(outs)
