"""Tracing: run the user's scalar Python function once on symbolic values and record the expression.

The function runs with `math`, `abs`, `min`, `max` (and `import math` inside it) bound to versions
that build expression nodes. Python control flow that depends on a traced value (if / while / and /
or on it, loops over it, float() of it) cannot be recorded and raises TraceError naming the
construct and the line; `ga.where(cond, a, b)` is the data-dependent choice."""
from __future__ import annotations

import builtins
import linecache
import math
import sys
import types

import numpy as np

from ..errors import GpuadError
from . import expr
from .expr import Node, op


class TraceError(GpuadError, TypeError):
    """A construct that @ga.elementwise cannot turn into an expression."""


def _where_in_user_code() -> str:
    """file:line and the source text of the innermost frame outside gpuad's tracing machinery."""
    frame = sys._getframe(2)
    here = __file__
    while frame is not None and frame.f_code.co_filename == here:
        frame = frame.f_back
    if frame is None:
        return "unknown location"
    filename, lineno = frame.f_code.co_filename, frame.f_lineno
    text = linecache.getline(filename, lineno).strip()
    return f"{filename}:{lineno} (in {frame.f_code.co_name}): `{text}`" if text else f"{filename}:{lineno}"


def _fail(construct: str, hint: str):
    raise TraceError(f"@ga.elementwise: {construct} at {_where_in_user_code()} is not supported; {hint}")


def lift(value) -> Node:
    """A traced value, or a Python number as a constant node."""
    if isinstance(value, Value):
        return value.node
    if isinstance(value, (bool, int, float)):
        return expr.const(value)
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return expr.const(value.item())
    if type(value).__name__ == "Tensor" and value.size == 1 and not value.requires_grad:
        return expr.const(value.item())  # a constant computed with gpuad ops while tracing
    _fail(f"a value of type {type(value).__name__} ({value!r:.40})",
          "only numbers, traced arguments and expressions of them can be combined")


def _binary(name, reflected=False):
    if reflected:
        return lambda self, other: Value(op(name, lift(other), self.node))
    return lambda self, other: Value(op(name, self.node, lift(other)))


class Value:
    """A traced scalar: arithmetic and comparisons build expression nodes."""

    __slots__ = ("node",)
    __array_priority__ = 2000  # numpy scalar * Value -> Value.__rmul__

    def __init__(self, node: Node):
        self.node = node

    __add__, __radd__ = _binary("add"), _binary("add", True)
    __sub__, __rsub__ = _binary("sub"), _binary("sub", True)
    __mul__, __rmul__ = _binary("mul"), _binary("mul", True)
    __truediv__, __rtruediv__ = _binary("div"), _binary("div", True)
    __pow__, __rpow__ = _binary("pow"), _binary("pow", True)
    __lt__, __le__, __gt__, __ge__ = _binary("lt"), _binary("le"), _binary("gt"), _binary("ge")
    __eq__, __ne__ = _binary("eq"), _binary("ne")
    __and__, __rand__ = _binary("and"), _binary("and", True)
    __or__, __ror__ = _binary("or"), _binary("or", True)
    __hash__ = object.__hash__

    def __neg__(self):
        return Value(op("neg", self.node))

    def __pos__(self):
        return self

    def __abs__(self):
        return Value(op("abs", self.node))

    def __invert__(self):
        return Value(op("not", self.node))

    def __bool__(self):
        _fail("a Python `if`/`while`/`and`/`or`/`not` on a traced value (data-dependent control flow)",
              "use ga.where(cond, a, b), or & | ~ for logic on comparisons")

    def __iter__(self):
        _fail("a loop over a traced value", "elementwise functions see one scalar per element")

    def __index__(self):
        _fail("a traced value used as an integer (range(), indexing, loop count)",
              "loop counts must be Python constants")

    __int__ = __index__

    def __float__(self):
        _fail("float() of a traced value (often a call to a function that is not supported)",
              f"use math.* ({', '.join(sorted(MATH_FUNCTIONS))}), abs, min, max or ga.where")

    def __floordiv__(self, other):
        _fail("floor division `//`", "use math.floor(a / b)")

    __rfloordiv__ = __mod__ = __rmod__ = __floordiv__

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = NUMPY_UFUNCS.get(ufunc.__name__)
        if name is None or method != "__call__" or kwargs:
            _fail(f"numpy.{ufunc.__name__} on a traced value", "use the math module's functions")
        return Value(op(name, *(lift(v) for v in inputs)))

    def __repr__(self) -> str:
        return f"<traced {self.node!r}>"


NUMPY_UFUNCS = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "sqrt": "sqrt",
                "sin": "sin", "cos": "cos", "tan": "tan", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh",
                "arcsin": "asin", "arccos": "acos", "arctan": "atan", "absolute": "abs", "sign": "sign",
                "floor": "floor", "ceil": "ceil", "maximum": "max", "minimum": "min", "add": "add",
                "subtract": "sub", "multiply": "mul", "true_divide": "div", "divide": "div",
                "power": "pow", "negative": "neg"}


def _math_unary(name: str, real):
    def fn(x):
        if isinstance(x, Value):
            return Value(op(name, x.node))
        return real(x)

    fn.__name__ = name
    return fn


def _math_log(x, base=None):
    if not isinstance(x, Value) and not isinstance(base, Value):
        return math.log(x) if base is None else math.log(x, base)
    out = op("log", lift(x))
    return Value(out if base is None else op("div", out, op("log", lift(base))))


def _math_pow(x, y):
    if isinstance(x, Value) or isinstance(y, Value):
        return Value(op("pow", lift(x), lift(y)))
    return math.pow(x, y)


MATH_FUNCTIONS = {name: _math_unary(name, getattr(math, name)) for name in (
    "exp", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos", "atan",
    "erf", "erfc", "floor", "ceil")}
MATH_FUNCTIONS.update(log=_math_log, pow=_math_pow, fabs=_math_unary("abs", math.fabs))


class _MathModule(types.ModuleType):
    """`math` as seen by a traced function: the supported functions build nodes on traced values
    (and compute as usual on numbers); constants are math's own; anything else raises."""

    def __getattr__(self, name):
        if name in ("pi", "e", "tau", "inf", "nan"):
            return getattr(math, name)
        _fail(f"math.{name}", f"supported: {', '.join(sorted(MATH_FUNCTIONS))}")


traced_math = _MathModule("math")
traced_math.__dict__.update(MATH_FUNCTIONS)


def _extreme(name: str, real):
    def fn(*args, **kwargs):
        values = args[0] if len(args) == 1 and not isinstance(args[0], Value) else args
        values = list(values) if not isinstance(values, Value) else [values]
        if kwargs or not any(isinstance(v, Value) for v in values):
            return real(*args, **kwargs)
        out = lift(values[0])
        for v in values[1:]:
            out = op(name, out, lift(v))
        return Value(out)

    fn.__name__ = real.__name__
    return fn


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    if name == "math" and level == 0:
        return traced_math
    return builtins.__import__(name, globals, locals, fromlist, level)


_BUILTINS = {**vars(builtins), "min": _extreme("min", builtins.min), "max": _extreme("max", builtins.max),
             "__import__": _import}


def _rebind(value, seen):
    """`math` -> traced_math; functions defined alongside the user's are rebound the same way."""
    if value is math:
        return traced_math
    if isinstance(value, types.FunctionType) and not (value.__module__ or "").startswith("gpuad"):
        return rebound(value, seen)
    return value


def rebound(fn: types.FunctionType, seen: dict | None = None) -> types.FunctionType:
    """A copy of `fn` whose globals, closure and builtins see the traced math, min and max."""
    seen = {} if seen is None else seen
    if fn in seen:
        return seen[fn]
    scope = dict(fn.__globals__)
    scope["__builtins__"] = _BUILTINS
    closure = None
    if fn.__closure__:
        closure = tuple(types.CellType(_rebind(c.cell_contents, seen)) if _filled(c) else c
                        for c in fn.__closure__)
    copy = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, closure)
    copy.__kwdefaults__ = fn.__kwdefaults__
    seen[fn] = copy
    for name in fn.__code__.co_names:
        if name in scope:
            scope[name] = _rebind(scope[name], seen)
    return copy


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def trace(fn, kinds: tuple[str, ...]) -> tuple[tuple[Node, ...], Node]:
    """(input variables, output node) of `fn` applied to symbolic scalars of `kinds` ("f"/"b")."""
    inputs = tuple(expr.var(f"a{i}", k) for i, k in enumerate(kinds))
    result = _rebind(fn, {})(*(Value(v) for v in inputs))
    if isinstance(result, tuple):
        raise TraceError(f"@ga.elementwise {fn.__name__}: return one value, not a tuple of {len(result)}")
    return inputs, lift(result)
