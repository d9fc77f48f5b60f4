"""The CPU backend's `xp.pointwise`: the compiled Numba kernel for large float arrays, the NumPy
target otherwise (small arrays, integers, and as the reference)."""
from __future__ import annotations

from . import numpy_target

_xp = None
NUMBA_MIN_SIZE = 1 << 15  # below this, NumPy's per-call cost is lower than a parallel launch


def pointwise(program, *arrays):
    """Evaluate `program` on host arrays (NumPy broadcasting and dtypes): one array or a tuple."""
    for a in arrays:
        if a.size >= NUMBA_MIN_SIZE:
            from . import numba_target

            result = numba_target.run(program, arrays)
            if result is not None:
                return result
            break
    return numpy_target.evaluate(program, _xp or _namespace(), arrays)


def _namespace():
    """The CPU backend's array namespace (it has erf), looked up once."""
    global _xp
    from ..backends import cpu  # the backend object (it is built after this module is imported)

    _xp = cpu.xp
    return _xp
