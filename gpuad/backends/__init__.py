"""Backends: the registry, the CPU backend registered at import, the CUDA backend registered lazily."""
from __future__ import annotations

from .cpu import CPUBackend
from .registry import available, for_device, get, register

cpu = CPUBackend()
register("numpy", cpu, device_kind="cpu")
if cpu.kernel_target == "numba":
    register("numba", cpu)


def _cuda_backend():
    """CuPy is imported only when a "cuda" device is first asked for; ImportError marks it unavailable."""
    from .cuda import make_backend

    return make_backend()


register("cupy", _cuda_backend, device_kind="cuda")

__all__ = ["available", "for_device", "get", "register", "CPUBackend"]
