"""The CUDA backend: CuPy arrays on "cuda:N", kernels from kernels/*.cu and generated CUDA, and the
statistics of CuPy's memory pool (live, peak through a memory hook, cached).

CuPy is imported when this backend is first asked for (registered lazily in backends/__init__.py),
so `import gpuad` works on machines without it. Nothing here waits for the GPU except
`synchronize`, `to_host` and the statistics (which read host-side counters only)."""
from __future__ import annotations

import threading

import numpy as np

from .cpu import array_namespace
from .cpu_kernels import random_key


class PoolPeakHook:
    """A CuPy memory hook counting the bytes handed out by the pool, per device, and their peak.

    CuPy calls it after every allocation from and every release to the pool; the pool's own
    used_bytes() has no peak, which is what this adds. Hooks are thread-local in CuPy: allocations
    made on other threads than the one that first used the backend are not counted in the peak."""

    name = "gpuad_pool_peak"

    def __init__(self):
        self.current: dict[int, int] = {}
        self.peak: dict[int, int] = {}

    def start(self, device_id: int, used_bytes: int) -> None:
        """Begin counting on `device_id` from the pool's bytes in use right now."""
        self.current[device_id] = used_bytes
        self.peak[device_id] = max(self.peak.get(device_id, 0), used_bytes)

    # the names and keyword arguments below are CuPy's MemoryHook protocol
    def alloc_preprocess(self, **kwargs) -> None:
        pass

    def alloc_postprocess(self, **kwargs) -> None:
        pass

    def malloc_preprocess(self, **kwargs) -> None:
        pass

    def free_preprocess(self, **kwargs) -> None:
        pass

    def malloc_postprocess(self, device_id, mem_size, mem_ptr, **kwargs) -> None:
        if not mem_ptr:  # CuPy reports a failed allocation (out of memory) with a null pointer
            return
        current = self.current.get(device_id, 0) + mem_size
        self.current[device_id] = current
        if current > self.peak.get(device_id, 0):
            self.peak[device_id] = current

    def free_postprocess(self, device_id, mem_size, **kwargs) -> None:
        self.current[device_id] = self.current.get(device_id, 0) - mem_size


_hook = PoolPeakHook()
_hook_threads: set[int] = set()


def _install_hook(cupy) -> None:
    """Register the peak hook on this thread (CuPy keeps memory hooks per thread)."""
    ident = threading.get_ident()
    if ident not in _hook_threads:
        from cupy.cuda import memory_hook

        memory_hook.get_memory_hooks()[_hook.name] = _hook
        _hook_threads.add(ident)


def _pointwise_runner(cupy):
    """xp.pointwise(program, *arrays): one cupy.ElementwiseKernel per (program, input dtypes)."""
    cache: dict = {}

    def pointwise(program, *arrays):
        key = (program.key, tuple(a.dtype for a in arrays))
        kernel = cache.get(key)
        if kernel is None:
            kernel = cache[key] = cupy.ElementwiseKernel(**program.cuda_spec(key[1]))
        return kernel(*arrays)

    return pointwise


class CUDABackend:
    """CuPy arrays on one CUDA device; one object per device index (see on_device)."""

    device_kind = "cuda"
    is_gpu = True
    name = "cupy"
    kernel_target = "cuda"

    def __init__(self, index: int = 0, _shared: CUDABackend | None = None):
        import cupy  # ImportError here makes the registry report the backend as unavailable

        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver, or no device: the registry reports the reason
            raise RuntimeError(f"CuPy finds no usable CUDA device ({type(exc).__name__}: {exc})") from None
        if index >= count:
            raise RuntimeError(f"cuda:{index} does not exist: {count} CUDA device(s) visible")
        self.cupy = cupy
        self.index = index
        self.device = f"cuda:{index}"
        self.available = True
        self._devices = _shared._devices if _shared is not None else {}
        self._devices[index] = self
        if _shared is not None:
            self.xp = _shared.xp
        else:
            import cupyx
            import cupyx.scipy.special

            from .cuda_kernels import CUDAKernels

            self.xp = array_namespace(
                cupy, erf=cupyx.scipy.special.erf, scatter_add=cupyx.scatter_add,
                kernels=CUDAKernels(cupy), pointwise=_pointwise_runner(cupy))
        self.pool = cupy.get_default_memory_pool()
        self._cuda_device = cupy.cuda.Device(index)
        self._seed = 0
        self._draws = 0
        _install_hook(cupy)
        _hook.start(index, self._pool_used())

    def __repr__(self) -> str:
        return f"<gpuad backend {self.name} on {self.device}>"

    def on_device(self, index: int) -> CUDABackend:
        """The backend object of device `index` (one per device; they share the namespace)."""
        backend = self._devices.get(index)
        return backend if backend is not None else CUDABackend(index, _shared=self)

    # arrays
    def asarray(self, data, dtype=None):
        """An array on this device from host data, a CuPy array (any device) or a DLPack/CAI object."""
        with self._cuda_device:
            if isinstance(data, self.cupy.ndarray):
                if data.device.id != self.index:
                    data = self._peer_copy(data)
                return data.astype(dtype, copy=False) if dtype is not None else data
            if hasattr(data, "__cuda_array_interface__"):
                return self.cupy.asarray(data, dtype=dtype)
            return self.cupy.asarray(np.asarray(data, dtype=dtype))

    def to_host(self, arr) -> np.ndarray:
        """A NumPy copy (waits for the work that produces `arr`: the explicit sync point)."""
        return self.cupy.asnumpy(arr)

    def from_host(self, arr):
        """Copy a host array to this device; a CuPy array on another GPU is copied peer to peer."""
        with self._cuda_device:
            if isinstance(arr, self.cupy.ndarray):
                return arr if arr.device.id == self.index else self._peer_copy(arr)
            return self.cupy.asarray(arr)

    def _peer_copy(self, arr):
        """A device-to-device copy onto this GPU (through the driver: peer access when enabled)."""
        out = self.cupy.empty(arr.shape, arr.dtype)
        src = self.cupy.ascontiguousarray(arr) if not arr.flags.c_contiguous else arr
        out.data.copy_from_device_async(src.data, src.nbytes)
        return out

    def synchronize(self) -> None:
        """Wait for all queued work on this device."""
        self._cuda_device.synchronize()

    # memory: tensors need no accounting of their own, the pool's counters are the truth
    def _pool_used(self) -> int:
        with self._cuda_device:
            return self.pool.used_bytes()

    def memory_stats(self) -> dict:
        """Live bytes (pool used_bytes), peak live bytes (memory hook), bytes held by the pool."""
        with self._cuda_device:
            used, total = self.pool.used_bytes(), self.pool.total_bytes()
        return {"current_bytes": used, "peak_bytes": max(_hook.peak.get(self.index, 0), used),
                "pool_bytes": total, "cached_bytes": total - used, "device": self.device}

    def reset_peak(self) -> None:
        """Start a new peak from the bytes in use now."""
        used = self._pool_used()
        _hook.current[self.index] = used
        _hook.peak[self.index] = used

    def empty_cache(self) -> None:
        """Return the pool's unused cached blocks to the driver (and the pinned host pool's)."""
        with self._cuda_device:
            self.pool.free_all_blocks()
        self.cupy.get_default_pinned_memory_pool().free_all_blocks()

    # random numbers: counter-based (kernels/random.cu), so the state is (seed, draws) and a saved
    # state replays exactly (checkpointing recomputes dropout with the same mask); nothing waits
    def seed(self, seed: int) -> None:
        self._seed, self._draws = int(seed), 0

    def rng_state(self):
        return (self._seed, self._draws)

    def set_rng_state(self, state) -> None:
        self._seed, self._draws = state

    def _key(self) -> np.uint64:
        key = random_key(self._seed, self._draws)
        self._draws += 1
        return key

    def randn(self, shape, dtype):
        dtype = np.dtype(dtype)
        with self._cuda_device:
            draw = dtype if dtype == np.float64 else np.dtype(np.float32)
            return self.xp.kernels.normal(shape, draw, self._key()).astype(dtype, copy=False)

    def rand(self, shape, dtype):
        dtype = np.dtype(dtype)
        with self._cuda_device:
            draw = dtype if dtype == np.float64 else np.dtype(np.float32)
            return self.xp.kernels.uniform(shape, draw, self._key()).astype(dtype, copy=False)

    def randint(self, low, high, shape, dtype):
        with self._cuda_device:
            return self.xp.kernels.integers(int(low), int(high), shape, self._key()).astype(dtype, copy=False)


def make_backend() -> CUDABackend:
    """Factory for the registry: the backend of device 0 (others via on_device)."""
    return CUDABackend(0)
