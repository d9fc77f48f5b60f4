"""ga.cuda: whether a GPU can be used, how many, and waiting for queued GPU work."""
from __future__ import annotations


def _cupy():
    try:
        import cupy

        return cupy
    except Exception:  # ImportError, or a CuPy whose CUDA libraries fail to load
        return None


def is_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return device_count() > 0


def device_count() -> int:
    """Number of visible CUDA devices (0 without CuPy or a driver)."""
    cupy = _cupy()
    if cupy is None:
        return 0
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def synchronize(device=None) -> None:
    """Wait for all queued work on the GPU (a no-op without one)."""
    if is_available():
        from .backends import for_device

        for_device(device or "cuda").synchronize()


def device(index: int = 0):
    """Context manager making cuda:index CuPy's current device: ops on tensors of cuda:N (N > 0) run
    on CuPy's current device, so multi-GPU code wraps each device's work in `with ga.cuda.device(N):`."""
    cupy = _cupy()
    if cupy is None or index >= device_count():
        from .errors import DeviceError

        raise DeviceError(f"ga.cuda.device: cuda:{index} is not available ({device_count()} CUDA device(s) visible)")
    return cupy.cuda.Device(index)
