"""@ga.elementwise: a scalar Python function becomes a fused, differentiable pointwise op."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from ..tensor import Tensor, _scalar_like, tensor
from .op import call
from .program import Program
from .trace import Value, rebound, trace


class ElementwiseFunction:
    """A traced pointwise function: called on tensors (or numbers and arrays, converted as ga.tensor
    does) it runs one fused kernel; called on traced values (inside another @ga.elementwise function)
    it inlines."""

    def __init__(self, fn, name: str | None = None):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or fn.__name__
        self._signature = inspect.signature(fn)
        self._programs: dict[tuple, Program] = {}

    def __repr__(self) -> str:
        return f"<gpuad elementwise function {self.name}>"

    def _args(self, args, kwargs) -> tuple:
        if kwargs or len(args) != len(self._signature.parameters):
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self.name}: {exc}") from None
            bound.apply_defaults()
            return bound.args
        return args

    def program(self, kinds: tuple[str, ...]) -> Program:
        """The program for inputs of `kinds` ("f" float, "b" bool), traced on first use."""
        prog = self._programs.get(kinds)
        if prog is None:
            inputs, out = trace(self.fn, kinds)
            prog = self._programs[kinds] = Program(inputs, (out,), self.name)
        return prog

    def __call__(self, *args, **kwargs):
        args = self._args(args, kwargs)
        if any(isinstance(a, Value) for a in args):
            return rebound(self.fn)(*args)
        tensors = to_tensors(args)
        kinds = tuple("b" if t._data.dtype.kind == "b" else "f" for t in tensors)
        return call(self._programs.get(kinds) or self.program(kinds), tensors, linearize=True)


def to_tensors(args) -> list[Tensor]:
    """Tensors for the arguments: numbers take the dtype of the first tensor (weak typing, NumPy 2)."""
    like = next((a for a in args if isinstance(a, Tensor)), None)
    out = []
    for a in args:
        if isinstance(a, Tensor):
            out.append(a)
        elif like is None:
            like = tensor(a)
            out.append(like)
        else:
            out.append(_scalar_like(a, like))
    return out


def elementwise(fn=None, *, name: str | None = None) -> ElementwiseFunction | Callable:
    """Decorator: trace a scalar function into a fused, differentiable pointwise op (see API.md)."""
    if fn is None:
        return lambda f: ElementwiseFunction(f, name)
    return ElementwiseFunction(fn, name)
