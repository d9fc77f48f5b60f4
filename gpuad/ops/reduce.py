"""Reductions: sum, prod, max/min and logsumexp are primitives; mean, var, std are composed from them."""
from __future__ import annotations

import math

from .. import dtypes
from ..autograd.function import Op, apply
from ..elementwise.function import elementwise
from ..elementwise.op import call
from ..elementwise.trace import traced_math
from .common import as_tensor, normalize_axis
from .elementwise import sqrt, where


def keepdims_shape(shape, axis) -> tuple:
    """The shape a reduction over `axis` has with keepdims=True."""
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


def _expand(g, c):
    """A reduced gradient broadcast back to the input's shape (reshaped first only where broadcasting
    alone cannot place it: reduced axes not leading and not kept)."""
    shape = c.shapes[0]
    if not c.keepdims and c.axis is not None and c.axis != tuple(range(len(c.axis))):
        g = g.reshape(keepdims_shape(shape, c.axis))
    return g.broadcast_to(shape)


def _kept(t, c):
    return t if c.keepdims else t.reshape(keepdims_shape(c.shapes[0], c.axis))


# forwards call the array methods: NumPy's np.sum/np.max are Python wrappers around them (1.5 us a call)
SUM = Op("sum", lambda xp, x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims),
         vjp=(lambda c, g: _expand(g, c),),
         jvp=(lambda c, t: sum(t, c.axis, c.keepdims),))


def _extreme_weight(c):
    """Where x attains the max (min): 1/count there, 0 elsewhere (ties share the gradient)."""
    mask = c.x == _kept(c.y, c)
    return mask / sum(mask, c.axis, keepdims=True)


MAX = Op("max", lambda xp, x, axis, keepdims: x.max(axis=axis, keepdims=keepdims),
         vjp=(lambda c, g: _expand(g, c) * _extreme_weight(c),),
         jvp=(lambda c, t: sum(t * _extreme_weight(c), c.axis, c.keepdims),), save="x y")
MIN = Op("min", lambda xp, x, axis, keepdims: x.min(axis=axis, keepdims=keepdims),
         vjp=MAX.vjp, jvp=MAX.jvp, save="x y")


def _prod_partial(c):
    """d prod / d x_i = product of the others; exact with zeros (no division by a zero)."""
    x = c.x
    is_zero = x == 0
    nonzero = where(is_zero, 1.0, x)
    prod_nonzero = prod(nonzero, c.axis, keepdims=True)
    zeros = sum(is_zero, c.axis, keepdims=True)
    return where(zeros == 0, prod_nonzero / nonzero, where(is_zero & (zeros == 1), prod_nonzero, 0.0))


PROD = Op("prod", lambda xp, x, axis, keepdims: x.prod(axis=axis, keepdims=keepdims),
          vjp=(lambda c, g: _expand(g, c) * _prod_partial(c),),
          jvp=(lambda c, t: sum(t * _prod_partial(c), c.axis, c.keepdims),), save="x")


def _argreduce(name, fn):
    return Op(name, lambda xp, x, axis, keepdims: getattr(xp, fn)(x, axis=axis, keepdims=keepdims))


ARGMAX = _argreduce("argmax", "argmax")
ARGMIN = _argreduce("argmin", "argmin")


def _reduce(op, x, axis, dim, keepdims):
    """Apply a reduction op; `dim` is torch's name for `axis`. Arg-reductions take one axis or None."""
    x = as_tensor(x)
    axis = dim if axis is None else axis
    if op in (ARGMAX, ARGMIN):
        return apply(op, (x,), {"axis": axis, "keepdims": bool(keepdims)})
    return apply(op, (x,), {"axis": normalize_axis(axis, x.ndim, op.name), "keepdims": bool(keepdims)})


def sum(x, axis=None, keepdims: bool = False, *, dim=None, dtype=None):  # noqa: A001 (NumPy's name)
    """Sum over `axis` (None: all, int or tuple, negatives allowed)."""
    x = as_tensor(x)
    if dtype is not None:
        x = x.astype(dtype)
    return _reduce(SUM, x, axis, dim, keepdims)


def prod(x, axis=None, keepdims: bool = False, *, dim=None):
    """Product over `axis`; its gradient is exact where elements are zero."""
    return _reduce(PROD, x, axis, dim, keepdims)


def max(x, axis=None, keepdims: bool = False, *, dim=None):  # noqa: A001
    """Maximum over `axis`; tied maxima share the gradient equally."""
    return _reduce(MAX, x, axis, dim, keepdims)


def min(x, axis=None, keepdims: bool = False, *, dim=None):  # noqa: A001
    """Minimum over `axis`; tied minima share the gradient equally."""
    return _reduce(MIN, x, axis, dim, keepdims)


def argmax(x, axis=None, keepdims: bool = False, *, dim=None):
    """Index of the maximum (flattened when axis is None); not differentiable."""
    return _reduce(ARGMAX, x, axis, dim, keepdims)


def argmin(x, axis=None, keepdims: bool = False, *, dim=None):
    """Index of the minimum (flattened when axis is None); not differentiable."""
    return _reduce(ARGMIN, x, axis, dim, keepdims)


def _count(x, axis) -> int:
    axes = normalize_axis(axis, x.ndim, "mean")
    return math.prod(x.shape) if axes is None else math.prod(x.shape[a] for a in axes)


def _float(x):
    x = as_tensor(x)
    return x if dtypes.is_floating(x.dtype) else x.astype(dtypes.default_float)


def mean(x, axis=None, keepdims: bool = False, *, dim=None):
    """Arithmetic mean over `axis` (integers are averaged in float32)."""
    x = _float(x)
    axis = dim if axis is None else axis
    return sum(x, axis, keepdims) * (1.0 / _count(x, axis))


def var(x, axis=None, keepdims: bool = False, ddof: int = 0, *, dim=None, correction=None, unbiased=None):
    """Variance with NumPy's ddof=0 default; torch's `correction=` / `unbiased=` are accepted."""
    x = _float(x)
    axis = dim if axis is None else axis
    if correction is not None:
        ddof = correction
    elif unbiased is not None:
        ddof = int(unbiased)
    centered = x - mean(x, axis, keepdims=True)
    return sum(centered * centered, axis, keepdims) * (1.0 / (_count(x, axis) - ddof))


def std(x, axis=None, keepdims: bool = False, ddof: int = 0, *, dim=None, correction=None, unbiased=None):
    """Standard deviation, sqrt(var) with the same arguments."""
    return sqrt(var(x, axis, keepdims, ddof, dim=dim, correction=correction, unbiased=unbiased))


def _logsumexp(xp, x, axis, keepdims):
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, m.dtype.type(0))  # an all -inf (or +inf) slice: no shift
    s = xp.exp(x - m).sum(axis=axis, keepdims=keepdims)
    return xp.log(s) + (m if keepdims else m.reshape(s.shape))


# g * softmax(x) with softmax = exp(x - logsumexp(x)): both rules in one fused, differentiable kernel
_SCALED_SOFTMAX = elementwise(lambda x, y, g: g * traced_math.exp(x - y), name="scaled_softmax").program(("f",) * 3)

LOGSUMEXP = Op("logsumexp", _logsumexp, save="x y",
               vjp=(lambda c, g: call(_SCALED_SOFTMAX, (c.x, _kept(c.y, c), _kept(g, c))),),
               jvp=(lambda c, t: sum(call(_SCALED_SOFTMAX, (c.x, _kept(c.y, c), t)), c.axis, c.keepdims),))


def logsumexp(x, axis=None, keepdims: bool = False, *, dim=None):
    """log(sum(exp(x))) computed stably (one primitive: the composed form costs nine ops forward and
    five nodes backward); its gradient is the softmax."""
    return _reduce(LOGSUMEXP, _float(x), axis, dim, keepdims)


def sum_to(x, shape: tuple):
    """Sum `x` down to `shape` (the inverse of broadcasting); the engine's one reduction step."""
    x, shape = as_tensor(x), tuple(shape)
    have = x.shape
    if have == shape:
        return x
    lead = len(have) - len(shape)
    if have[lead:] == shape:  # only leading axes go (a bias gradient): one sum, no reshape
        return apply(SUM, (x,), {"axis": tuple(range(lead)), "keepdims": False})
    kept = tuple(lead + i for i, n in enumerate(shape) if n == 1 and have[lead + i] != 1)
    return apply(SUM, (x,), {"axis": tuple(range(lead)) + kept, "keepdims": True}).reshape(shape)
