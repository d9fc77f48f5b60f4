"""The CPU backend's `xp.pointwise`: the compiled Numba kernel for large float arrays, the NumPy
target otherwise (small arrays, integers, no Numba installed, and as the reference)."""
from __future__ import annotations

from . import numpy_target

_xp = None
_numba = None  # the numba_target module once imported; False when Numba is not installed
NUMBA_MIN_SIZE = 1 << 15  # below this, NumPy's per-call cost is lower than a parallel launch


def pointwise(program, *arrays):
    """Evaluate `program` on host arrays (NumPy broadcasting and dtypes): one array or a tuple."""
    for a in arrays:
        if a.size >= NUMBA_MIN_SIZE:
            target = _numba if _numba is not None else _import_numba()
            result = target.run(program, arrays) if target else None
            if result is not None:
                return result
            break
    n = len(arrays)  # numpy_target.evaluate, inlined: this runs for every small op
    key = arrays[0].dtype if n == 1 else (arrays[0].dtype, arrays[1].dtype) if n == 2 else tuple(
        [a.dtype for a in arrays])
    run = program.numpy_plans.get(key)
    if run is None:
        run = program.numpy_plans[key] = numpy_target.runner(program, _xp or _namespace(), arrays)
    return run(*arrays)


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
