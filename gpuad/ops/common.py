"""Helpers shared by the op modules: turning operands into tensors, and axis normalization."""
from __future__ import annotations

from ..dtypes import default_float
from ..tensor import Tensor, _scalar_like, tensor


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """`x` as a Tensor: tensors pass through; scalars and arrays are converted as ga.tensor does."""
    if isinstance(x, Tensor):
        return x
    return tensor(x) if like is None else like._coerce(x)


def operands(a, b) -> tuple[Tensor, Tensor]:
    """Both operands of a binary op as tensors. A Python scalar takes its partner's dtype, except that
    a float scalar with an integer tensor gives float32 (the default float), as in PyTorch."""
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            return a, b
        return _with_scalar(a, b), _scalar_like(b, a)
    if isinstance(b, Tensor):
        return _scalar_like(a, b), _with_scalar(b, a)
    a = tensor(a)
    return _with_scalar(a, b), _scalar_like(b, a)


def _with_scalar(t: Tensor, scalar) -> Tensor:
    if isinstance(scalar, float) and t._data.dtype.kind in "iub":
        return t.astype(default_float)
    return t


def shape_arg(shape: tuple) -> tuple:
    """A shape given as f(2, 3) or f((2, 3)) (NumPy and PyTorch spellings) as a tuple of ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(n) for n in shape)


def normalize_axis(axis, ndim: int, op: str) -> tuple | None:
    """axis (None, int or tuple, negatives allowed) as a sorted tuple of non-negative ints."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))
