"""Backends: the registry, the CPU backend registered at import, the CUDA backend registered lazily."""
from __future__ import annotations

from .cpu import CPUBackend
from .registry import available, for_device, get, register

cpu = CPUBackend()
register("numpy", cpu, device_kind="cpu")
if cpu.kernel_target == "numba":
    register("numba", cpu)

__all__ = ["available", "for_device", "get", "register", "CPUBackend"]
