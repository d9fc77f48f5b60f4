"""Host allocator settings: keep freed NumPy buffers in the process, as CuPy's pool does on the GPU.

glibc serves each allocation above its mmap threshold (128 KiB at start, raised as such blocks are
freed) with a fresh mmap and unmaps it on free, and trims the heap top once more than twice that is
free. A training step frees and reallocates the same working set every iteration, so each step faulted
its buffers in again: a fresh 1 MiB array took 0.43 ms against 0.04 ms with the settings below, and
the benchmark CNN step spent 4-5 ms in about 2,500 page faults (PyTorch: 7). Raising both thresholds
(glibc's `mallopt`) lets freed buffers be reused; blocks above the largest threshold glibc allows are
cached by the NumPy allocation handler instead (host_memory.py). `GPUAD_HOST_ALLOCATOR=system` leaves
malloc as it is; `ga.memory.empty_cache()` hands the cached heap back to the OS (`malloc_trim`).
"""
from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit: bigger blocks are still mmapped
TRIM_THRESHOLD = 256 << 20  # free heap top kept for reuse before it goes back to the OS

_libc = None  # the process's C library once loaded; False where it has no mallopt (not glibc)


def _c_library():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(None)
            _libc = lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
        except (OSError, TypeError):  # no dlopen(NULL) (Windows)
            _libc = False
    return _libc


def tune() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if they were set."""
    if os.environ.get("GPUAD_HOST_ALLOCATOR", "cached") == "system":
        return False
    lib = _c_library()
    if not lib:
        return False
    return bool(lib.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(lib.mallopt(_M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))


def trim() -> None:
    """Return the free memory cached in the heap to the OS."""
    lib = _c_library()
    if lib:
        lib.malloc_trim(0)
