"""The CPU backend's `xp.pointwise`: the compiled Numba kernel for large float arrays, the NumPy
target otherwise (small arrays, integers, no Numba installed, and as the reference). A program that is
one add, sub, mul, div or neg runs as its NumPy ufunc below the size where the kernels go parallel: on a
(784, 512) float32 array right after a cache flush, `0.01 * g` took 1.05-1.14x the ufunc's time as the
Numba kernel alone and 1.28-1.53x through the kernel's call path (benchmarks/host_paths.py); a fused
program or a transcendental function still gains from the kernel, and so does a large array from all
cores."""
from __future__ import annotations

import numpy as np

from . import numpy_target

_FLOAT32 = np.dtype(np.float32)

_xp = None
_numba = None  # the numba_target module once imported; False when Numba is not installed
NUMBA_MIN_SIZE = 1 << 15  # below this, NumPy's per-call cost is lower than a parallel launch
# Below this many elements a Numba kernel (numba_target) is a plain serial loop. Right after a matmul
# OpenBLAS's threads spin for ~0.1 s; a parallel kernel then waits for a core: on this 2-core machine
# 131K elements took 6.4 ms on 2 threads against 94 us on one, and one thread still won at 4M (2.1 vs
# 3.6 ms). A parallel kernel pinned to one thread still paid the pool's launch and two thread-setting
# calls (a (256, 512) relu: 26 us against 16 us serial). Training-sized activations stay serial; large
# elementwise work without BLAS in between gains from all cores.
PARALLEL_MIN_SIZE = 1 << 22  # numba_target's kernels and one-ufunc programs use every core from here


def pointwise(program, *arrays):
    """Evaluate `program` on host arrays (NumPy broadcasting and dtypes): one array or a tuple."""
    n = len(arrays)  # the dtype key and the largest size, unrolled for one and two inputs (most calls)
    if n == 1:
        a = arrays[0]
        key, size = a.dtype, a.size
    elif n == 2:
        a, b = arrays
        key, size = (a.dtype, b.dtype), a.size if a.size > b.size else b.size
    else:
        key, size = tuple([a.dtype for a in arrays]), max([a.size for a in arrays])
    if size >= NUMBA_MIN_SIZE and (size >= PARALLEL_MIN_SIZE or not program.single_arithmetic):
        target = _numba if _numba is not None else _import_numba()
        result = target.run(program, arrays) if target else None
        if result is not None:
            return result
    run = program.numpy_plans.get(key)  # numpy_target.evaluate, inlined
    if run is None:
        run = program.numpy_plans[key] = numpy_target.runner(program, _xp or _namespace(), arrays)
    return run(*arrays)


def kernel(program):
    """`pointwise(program, *arrays)` as one callable made once per program (`xp.pointwise_kernel`): float32
    arrays below the size where `pointwise` picks a Numba kernel run the generated NumPy code straight
    away, with no dtype-keyed lookup (the small-tensor case, where that lookup was a third of an 8-element
    op's cost); everything else goes through `pointwise`."""
    def fallback(*arrays):
        return pointwise(program, *arrays)

    limit = PARALLEL_MIN_SIZE if program.single_arithmetic else NUMBA_MIN_SIZE
    run = numpy_target.guarded(program, _xp or _namespace(), _FLOAT32, limit, fallback)
    return run or fallback


def _import_numba():
    global _numba
    try:
        from . import numba_target
    except ImportError:
        _numba = False
    else:
        _numba = numba_target
    return _numba


def _namespace():
    """The CPU backend's array namespace (it has erf), looked up once."""
    global _xp
    from ..backends import cpu  # the backend object (it is built after this module is imported)

    _xp = cpu.xp
    return _xp
