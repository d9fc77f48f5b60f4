"""Memory statistics per device: live bytes held by tensors, the peak since the last reset, and (on
the GPU) the bytes cached by CuPy's pool."""
from __future__ import annotations

from .backends import for_device


def stats(device: str = "cpu") -> dict:
    """{"current_bytes", "peak_bytes", "pool_bytes", ...} for `device`."""
    return for_device(device).memory_stats()


def reset_peak(device: str = "cpu") -> None:
    """Start a new peak measurement from the current live bytes."""
    for_device(device).reset_peak()


def empty_cache(device: str = "cuda") -> None:
    """Return cached but unused blocks of the device's pool to the driver (no-op on the CPU)."""
    for_device(device).empty_cache()
