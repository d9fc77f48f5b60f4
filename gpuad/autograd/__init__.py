"""Autograd: the tape (Node, engine), forward-mode levels, modes, and the function transforms."""
from __future__ import annotations

from .engine import backward, grad
from .function import Op, apply
from .mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__all__ = ["Op", "apply", "backward", "grad", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled"]
