"""The CPU backend: NumPy arrays, host memory statistics, and Numba-compiled helpers."""
from __future__ import annotations

import math
import types

import numpy as np

from ..elementwise.host import kernel as host_kernel
from ..elementwise.host import pointwise as host_pointwise
from . import cpu_kernels, host_allocator

_erf_ufunc = None


def _erf(x, out=None):
    """Elementwise erf (NumPy has none); a Numba ufunc compiled on first use and cached on disk."""
    global _erf_ufunc
    if _erf_ufunc is None:
        import numba

        _erf_ufunc = numba.vectorize(["float32(float32)", "float64(float64)"], cache=True)(
            lambda v: math.erf(v))
    x = np.asarray(x)
    result = _erf_ufunc(x if x.dtype in (np.float32, np.float64) else x.astype(np.float32))
    result = result.astype(x.dtype if x.dtype.kind == "f" else np.float32, copy=False)
    if out is None:
        return result
    out[...] = result
    return out


def _scatter_add(target, index, values):
    """target[index] += values with repeated indices accumulated (np.add.at)."""
    np.add.at(target, index, values)


def array_namespace(base, **extras) -> types.SimpleNamespace:
    """A flat namespace of `base`'s functions plus `extras` (erf, scatter_add): ops see one `xp`."""
    names = {k: getattr(base, k) for k in dir(base) if not k.startswith("__")}
    names.update(extras)
    return types.SimpleNamespace(**names)


class CPUBackend:
    """NumPy arrays on the host; pointwise kernels are compiled by Numba when it is installed."""

    device_kind = "cpu"
    device = "cpu"
    available = True
    is_gpu = False

    name = "numpy"

    def __init__(self):
        try:
            from . import host_memory
        except ImportError:  # no Numba: no compiled kernels and no memory counting
            host_memory = None
        self.kernel_target = "numba" if host_memory else "numpy"
        self.counted = bool(host_memory) and host_memory.install()  # NumPy's allocations counted from here
        self._memory = host_memory if self.counted else None
        self.xp = array_namespace(np, erf=_erf, scatter_add=_scatter_add, pointwise=host_pointwise,
                                  pointwise_kernel=host_kernel,
                                  kernels=cpu_kernels)
        self.allocator = "cached" if host_allocator.tune() else "system"  # see host_allocator.py
        self.rng = np.random.default_rng(0)

    def __repr__(self) -> str:
        return f"<gpuad backend {self.name} on {self.device}>"

    def on_device(self, index: int) -> CPUBackend:
        raise ValueError("the CPU backend has no device index; use 'cpu'")

    # arrays
    def asarray(self, data, dtype=None):
        """An array on this device from host data (lists, scalars, NumPy or anything with __array__)."""
        if hasattr(data, "__cuda_array_interface__"):
            data = data.get()
        return np.asarray(data, dtype=dtype)

    def to_host(self, arr) -> np.ndarray:
        return arr

    def from_host(self, arr: np.ndarray):
        return arr

    def synchronize(self) -> None:
        """Nothing to wait for: NumPy work is synchronous."""

    # memory
    def memory_stats(self) -> dict:
        """Live and peak bytes of NumPy buffers and the bytes of freed blocks kept for reuse, as counted by
        the allocation handler (host_memory.py); zeros where it could not be installed."""
        m = self._memory
        current = peak = cached = blocks = 0
        if m is not None:
            c = m.counters
            current, peak, cached, blocks = int(c[m.CURRENT]), int(c[m.PEAK]), int(c[m.CACHED]), int(c[m.BLOCKS])
        return {"current_bytes": current, "peak_bytes": peak, "pool_bytes": cached, "buffers": blocks,
                "counted": self.counted, "allocator": self.allocator}

    def reset_peak(self) -> None:
        m = self._memory
        if m is not None:
            m.counters[m.PEAK] = m.counters[m.CURRENT]

    def empty_cache(self) -> None:
        """Hand the freed blocks the allocation handler and the C heap keep for reuse back to the OS."""
        if self._memory is not None:
            self._memory.release()
        host_allocator.trim()

    # random numbers
    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def rng_state(self):
        return self.rng.bit_generator.state

    def set_rng_state(self, state) -> None:
        self.rng.bit_generator.state = state

    def randn(self, shape, dtype):
        return self.rng.standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)

    def rand(self, shape, dtype):
        return self.rng.random(shape, dtype=np.float64).astype(dtype, copy=False)

    def randint(self, low, high, shape, dtype):
        return self.rng.integers(low, high, size=shape, dtype=dtype)
