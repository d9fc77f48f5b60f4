"""Tensor creation: constants, ranges and random numbers on a device (float32 by default)."""
from __future__ import annotations

from . import dtypes
from .backends import registry
from .ops.common import shape_arg
from .tensor import Tensor, _backend_of


def _make(fill, dtype, device, requires_grad: bool) -> Tensor:
    backend = _backend_of(device)
    t = Tensor._wrap(fill(backend, dtypes.resolve(dtype) or dtypes.default_float), backend)
    if requires_grad:
        t.requires_grad = True
    return t


def zeros(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape = shape_arg(shape)
    return _make(lambda b, dt: b.xp.zeros(shape, dt), dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape = shape_arg(shape)
    return _make(lambda b, dt: b.xp.ones(shape, dt), dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None) -> Tensor:
    shape = shape_arg(shape)
    return _make(lambda b, dt: b.xp.empty(shape, dt), dtype, device, False)


def full(shape, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of `shape` filled with `fill_value` (float32 for floats, int64 for ints)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if dtype is None:
        dtype = dtypes.bool_ if isinstance(fill_value, bool) else (
            dtypes.int64 if isinstance(fill_value, int) else dtypes.default_float)
    return _make(lambda b, dt: b.xp.full(shape, fill_value, dt), dtype, device, requires_grad)


def _like(x, dtype, device):
    return (dtype or x.dtype), (device if device is not None else x._backend)


def zeros_like(x, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dtype, device = _like(x, dtype, device)
    return zeros(x.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(x, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dtype, device = _like(x, dtype, device)
    return ones(x.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(x, fill_value, dtype=None, device=None) -> Tensor:
    dtype, device = _like(x, dtype, device)
    return full(x.shape, fill_value, dtype=dtype, device=device)


def arange(start, stop=None, step=1, dtype=None, device=None) -> Tensor:
    """Like np.arange; integer arguments give int64, any float gives float32."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = dtypes.int64 if all(isinstance(v, int) for v in (start, stop, step)) else dtypes.default_float
    return _make(lambda b, dt: b.xp.arange(start, stop, step, dtype=dt), dtype, device, False)


def linspace(start, stop, num: int = 50, dtype=None, device=None) -> Tensor:
    return _make(lambda b, dt: b.xp.linspace(start, stop, num, dtype=dt), dtype, device, False)


def eye(n: int, m: int | None = None, dtype=None, device=None) -> Tensor:
    return _make(lambda b, dt: b.xp.eye(n, m, dtype=dt), dtype, device, False)


def manual_seed(seed: int) -> None:
    """Seed the random number generators of every backend in use (CPU and GPUs)."""
    for backend in registry.instances():
        backend.seed(seed)


def randn(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the device's generator (seeded by ga.manual_seed)."""
    shape = shape_arg(shape)
    return _make(lambda b, dt: b.randn(shape, dt), dtype, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    shape = shape_arg(shape)
    return _make(lambda b, dt: b.rand(shape, dt), dtype, device, requires_grad)


def randint(low: int, high: int, shape, dtype=None, device=None) -> Tensor:
    """Integers in [low, high)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    backend = _backend_of(device)
    return Tensor._wrap(backend.randint(low, high, shape, dtypes.resolve(dtype) or dtypes.int64), backend)


__all__ = ["zeros", "ones", "empty", "full", "zeros_like", "ones_like", "full_like", "arange", "linspace",
           "eye", "manual_seed", "randn", "rand", "randint"]
