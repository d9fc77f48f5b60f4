"""The CPU fast path: a program becomes one Numba loop over the output elements, every output written in
the same pass; serial below PARALLEL_MIN_SIZE elements, a `parallel` prange above. exp/log/tanh/erf in
float32 and exp/tanh in float64 use the vectorizable versions in fastmath.py; the other functions call
libm. Inputs of the output's shape are read in place (copied only when not C-contiguous or not of the
compute dtype); inputs with one element (or one value broadcast, every stride 0) are read once; a row
broadcast over leading axes (a bias) or a column over trailing axes (a keepdims reduction) is read in
place by a loop over (outer, inner); other broadcasts are expanded."""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from pathlib import Path

import numba
import numpy as np

from . import cache, fastmath
from .host import PARALLEL_MIN_SIZE
from .program import Program, result_dtypes

# OpenMP threads that spin between kernels steal the cores of a busy machine: on 2 shared cores a 1 ms
# kernel took 10 ms with spinning threads and 0.9 ms with sleeping ones (set before OpenMP starts;
# a user's own setting wins)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
CHUNK_ROWS_MIN = 64  # a parallel kernel reads a row or column input in place only with this many outer rows
MAX_PLANS = 64  # call plans kept per program (one per distinct input shapes/strides/dtypes)
_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "lt": "<", "le": "<=", "gt": ">",
          "ge": ">=", "eq": "==", "ne": "!=", "and": "&", "or": "|"}


def _keep_first(a: str, b: str, cmp: str) -> str:
    """a where `a cmp b` or a is nan, else b: max (>=) and min (<=) that propagate a nan from either side."""
    return f"({a} if (({a} {cmp} {b}) | ({a} != {a})) else {b})"


def kernel_source(program: Program, dtype: np.dtype, modes: tuple[str, ...], parallel: bool) -> str:
    """Python source of the Numba kernel for compute `dtype`. `modes[i]` says how input i is read: "s" one
    element, "f" one per output element, "r" a row repeated over the outer index, "c" a column repeated
    over the inner index. With "r" or "c" inputs the kernel loops over (outer, inner), else over the flat
    elements; `parallel`: the outer loop is a prange."""
    fname = dtype.name
    consts: dict[str, str] = {}

    def constant(value) -> str:
        return consts.setdefault(repr(float(value)), f"C{len(consts)}")

    names: dict[int, str] = {}
    loads, rows, body = [], [], []
    index = {"s": "0", "f": "k", "r": "j", "c": "i"}
    for i, (v, mode) in enumerate(zip(program.inputs, modes)):
        names[v.uid] = f"v{i}"
        (loads if mode == "s" else rows if mode == "c" else body).append(f"v{i} = a{i}[{index[mode]}]")
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
    loop = "numba.prange" if parallel else "range"
    lines = ["import math", "", "import numba", "import numpy as np", "",
             "from gpuad.elementwise.fastmath import erf_f32, exp_f32, exp_f64, log_f32, tanh_f32, tanh_f64", ""]
    lines += [f"{name} = np.{fname}(float({value!r}))" for value, name in consts.items()]
    lines += ["", f"# {program.name}: {program.key}", f"# fastmath {_FASTMATH_DIGEST}",
              f'@numba.njit(parallel={parallel}, cache=True, error_model="numpy", nogil=True)']
    if "r" in modes or "c" in modes:
        lines += [f"def kernel(n0, n1, {params}):"] + [f"    {s}" for s in loads]
        lines += [f"    for i in {loop}(n0):"] + [f"        {s}" for s in rows]
        lines += ["        for j in range(n1):", "            k = i * n1 + j"] + [f"            {s}" for s in body]
    else:
        lines += [f"def kernel(n, {params}):"] + [f"    {s}" for s in loads]
        lines += [f"    for k in {loop}(n):"] + [f"        {s}" for s in body]
    return "\n".join(lines) + "\n"


def kernel(program: Program, dtype: np.dtype, modes: tuple[str, ...], in_dtypes: tuple, parallel: bool):
    """The compiled kernel, from memory, from the disk cache, or compiled now (see cache.stats)."""
    key = ("numba", dtype.char, modes, in_dtypes, parallel)
    fn = program.compiled.get(key)
    if fn is not None:
        cache.stats["memory_hits"] += 1
        return fn
    out_types = [numba.types.boolean if o.kind == "b" else numba.from_dtype(dtype) for o in program.outputs]
    arg_types = [numba.types.Array(numba.from_dtype(d), 1, "C") for d in in_dtypes]
    arg_types += [numba.types.Array(t, 1, "C") for t in out_types]
    sizes = (numba.types.intp,) * (2 if "r" in modes or "c" in modes else 1)
    try:
        module = cache.load_module(kernel_source(program, dtype, modes, parallel), f"{program.name}_{dtype.name}")
        cache.record_compile(module.kernel, (*sizes, *arg_types))
        fn = module.kernel
    except Exception as exc:  # a Numba typing or lowering error: correct results from NumPy instead
        warnings.warn(f"gpuad: Numba could not compile the pointwise program {program.name} for {dtype}; "
                      f"using NumPy for it ({type(exc).__name__}: {str(exc)[:200]})", RuntimeWarning, stacklevel=3)
        fn = False
    program.compiled[key] = fn
    return fn


def _split(a_shape: tuple, shape: tuple) -> tuple[str, int] | None:
    """How an input of `a_shape` (more than one element) broadcast to `shape` is read in place: ("f", 0)
    one value per output element, ("r", n1) a row of the last n1 output elements repeated over the
    leading axes (a bias), ("c", n0) one value per outer index repeated over the trailing axes (a
    keepdims reduction). None: another pattern, to be expanded."""
    a_shape = (1,) * (len(shape) - len(a_shape)) + tuple(a_shape)
    spread = [d for d, (m, n) in enumerate(zip(a_shape, shape)) if m == 1 and n != 1]
    kept = [d for d, (m, n) in enumerate(zip(a_shape, shape)) if m == n != 1]
    if not spread:
        return "f", 0
    if max(spread) < min(kept):
        return "r", math.prod(shape[max(spread) + 1:])
    if max(kept) < min(spread):
        return "c", math.prod(shape[:max(kept) + 1])
    return None


def plan(program: Program, arrays: tuple):
    """How run() calls the kernel for arrays of these shapes, strides and dtypes: (kernel, per input how
    run() prepares it and its dtype, output shape, loop sizes, parallel chunk size (0: serial), the dtype
    of each output, the dtype outputs are cast to or False); False where this target does not apply
    (non-float dtypes, a kernel Numba cannot compile)."""
    dtypes = tuple(a.dtype for a in arrays)
    if any(d.kind not in "fb" for d in dtypes):
        return False
    compute, out_dtype = result_dtypes(program, dtypes)
    if compute.kind != "f":
        return False
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    n = math.prod(shape)
    if n == 0:
        return False
    parallel = n >= PARALLEL_MIN_SIZE
    modes, prepare, sizes = [], [], None
    for a in arrays:
        want = compute if a.dtype.kind == "f" else a.dtype
        as_is = "v" if a.flags.c_contiguous and a.dtype == want else "f"  # "v": a flat view, no copy
        if a.size == 1 or (a.ndim and not any(a.strides)):
            modes.append("s")
            prepare.append((as_is if a.size == 1 else "b", want))
            continue
        split = _split(a.shape, shape)
        if split is not None and split[0] in "rc":
            n0, n1 = (n // split[1], split[1]) if split[0] == "r" else (split[1], n // split[1])
            if (sizes is None or sizes == (n0, n1)) and not (parallel and n0 < CHUNK_ROWS_MIN):
                sizes = n0, n1
                modes.append(split[0])
                prepare.append((as_is, want))
                continue
            split = None
        modes.append("f")
        prepare.append((as_is if split else "e", want))  # "e": expanded to a full input first
    fn = kernel(program, compute, tuple(modes), tuple(want for _, want in prepare), parallel)
    if fn is False:
        return False
    chunk = max(1, CHUNK // sizes[1]) if sizes and parallel else CHUNK if parallel else 0
    outs = tuple(np.dtype(np.bool_) if o.kind == "b" else compute for o in program.outputs)
    return fn, tuple(prepare), shape, sizes or (n,), chunk, outs, out_dtype != compute and out_dtype


def run(program: Program, arrays: tuple):
    """Evaluate with the compiled kernel; None when this target does not apply (non-float dtypes). The
    call plan is cached per input shapes, strides and dtypes (a training step repeats the same ones)."""
    plans = program.compiled.get("numba_plans")
    if plans is None:
        plans = program.compiled["numba_plans"] = {}
    key = tuple([(a.shape, a.strides, a.dtype) for a in arrays])
    found = plans.get(key)
    if found is None:
        if len(plans) >= MAX_PLANS:
            plans.clear()
        found = plans[key] = plan(program, arrays)
    else:
        cache.stats["memory_hits"] += 1
    if found is False:
        return None
    fn, prepare, shape, sizes, chunk, out_dtypes, cast = found
    flat = []
    for a, (mode, want) in zip(arrays, prepare):
        if mode == "v":
            flat.append(a.reshape(-1))
            continue
        if mode == "b":  # one value broadcast (every stride 0): its first element
            a = a[(slice(0, 1),) * a.ndim]
        elif mode == "e":
            a = np.broadcast_to(a, shape)
        flat.append(np.ascontiguousarray(a, dtype=want).reshape(-1))
    outs = [np.empty(shape, d) for d in out_dtypes]
    if chunk:
        numba.set_parallel_chunksize(chunk)
    fn(*sizes, *flat, *[o.reshape(-1) for o in outs])
    if cast:
        outs = [o.astype(cast) if o.dtype.kind == "f" else o for o in outs]
    return outs[0] if len(outs) == 1 else tuple(outs)
