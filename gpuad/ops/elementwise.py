"""Pointwise ops, written once as scalar functions in the @ga.elementwise language. Each is traced
into a Program at import; its VJP and JVP are derived on the expression graph (no hand-written
rules), and every op runs as one kernel per call. Called on traced values (inside a user's
@ga.elementwise function) a built-in inlines its expression instead."""
from __future__ import annotations

import math

from .. import dtypes
from ..autograd.function import NO_PARAMS, Op, apply
from ..elementwise.expr import op
from ..elementwise.op import program_op
from ..elementwise.program import Program
from ..elementwise.trace import Value, lift, trace
from ..elementwise.trace import traced_math as m
from ..tensor import Tensor
from .common import as_tensor, operands

_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def _node(name: str, *args) -> Value:
    """A primitive applied to traced values or numbers."""
    return Value(op(name, *(lift(a) for a in args)))


# ---- the table: name -> scalar definition (maximum/minimum split ties, relu'(0) = 0, clip passes the
# gradient at its bounds: the derivative rules of the primitives give exactly these) -----------------
SCALAR = {
    "neg": lambda x: -x,
    "exp": m.exp, "log": m.log, "log1p": m.log1p, "expm1": m.expm1, "sqrt": m.sqrt,
    "rsqrt": lambda x: 1.0 / m.sqrt(x),
    "sin": m.sin, "cos": m.cos, "tan": m.tan, "tanh": m.tanh, "erf": m.erf, "abs": abs,
    "sigmoid": lambda x: 0.5 * m.tanh(0.5 * x) + 0.5,
    "relu": lambda x: _node("where", x <= 0, 0, x),
    "gelu": lambda x: 0.5 * x * (1.0 + m.erf(x * _SQRT_HALF)),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + m.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))),
    "silu": lambda x: x * (0.5 * m.tanh(0.5 * x) + 0.5),
    "softplus": lambda x: _node("max", x, 0.0) + m.log1p(m.exp(-abs(x))),
    "sign": lambda x: _node("sign", x),
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b,
    "maximum": lambda a, b: _node("max", a, b), "minimum": lambda a, b: _node("min", a, b),
    "clip": lambda x, lo, hi: _node("clip", x, lo, hi),
    "where": lambda c, a, b: _node("where", c, a, b),
}
_KINDS = {"where": ("b", "f", "f")}


def _argnames(fn) -> tuple[str, ...]:
    code = getattr(fn, "__code__", None)
    if code is None:
        return ("x",)
    return code.co_varnames[:code.co_argcount - len(fn.__defaults__ or ())]


def _program(name: str) -> Program:
    kinds = _KINDS.get(name, ("f",) * len(_argnames(SCALAR[name])))
    inputs, out = trace(SCALAR[name], kinds)
    return Program(inputs, (out,), name)


PROGRAMS = {name: _program(name) for name in SCALAR}
OPS = {name: program_op(p, _argnames(SCALAR[name])) for name, p in PROGRAMS.items()}
ASTYPE = Op("astype", lambda xp, x, dtype: x.astype(dtype), vjp=(lambda c, g: g,), jvp=(lambda c, t: t,))


def _unary(name: str):
    op_, scalar = OPS[name], SCALAR[name]

    def fn(x):
        if not isinstance(x, Tensor):
            if isinstance(x, Value):
                return scalar(x)
            x = as_tensor(x)
        return apply(op_, (x,), NO_PARAMS)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name}; differentiable in both modes (also usable inside @ga.elementwise)."
    return fn


def _binary(name: str, reflected: bool = False):
    op_, scalar = OPS[name], SCALAR[name]

    def fn(a, b):
        if reflected:
            a, b = b, a
        if isinstance(a, Tensor) and isinstance(b, Tensor):  # the common case first
            return apply(op_, (a, b), NO_PARAMS)
        if isinstance(a, Value) or isinstance(b, Value):
            return scalar(Value(lift(a)), Value(lift(b)))
        a, b = operands(a, b)
        return apply(op_, (a, b), NO_PARAMS)

    fn.__name__ = fn.__qualname__ = f"r{name}" if reflected else name
    fn.__doc__ = f"Elementwise {name} with NumPy broadcasting; differentiable in both modes."
    return fn


# ---- non-differentiable: comparisons and logic return bool tensors --------------------------------
def _nondiff_unary(name: str, forward):
    op_ = Op(name, forward, args=("a",))

    def fn(x):
        return apply(op_, (x if isinstance(x, Tensor) else as_tensor(x),), NO_PARAMS)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} (a bool tensor; not differentiable)."
    return fn


def _nondiff_binary(name: str, forward):
    op_ = Op(name, forward, args=("a", "b"))

    def fn(a, b):
        return apply(op_, operands(a, b), NO_PARAMS)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} with NumPy broadcasting (a bool tensor; not differentiable)."
    return fn


neg = _unary("neg")
exp = _unary("exp")
log = _unary("log")
log1p = _unary("log1p")
expm1 = _unary("expm1")
sqrt = _unary("sqrt")
rsqrt = _unary("rsqrt")
sin = _unary("sin")
cos = _unary("cos")
tan = _unary("tan")
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")
relu = _unary("relu")
erf = _unary("erf")
silu = _unary("silu")
softplus = _unary("softplus")
abs = _unary("abs")  # noqa: A001 (NumPy's name)
sign = _unary("sign")
add = _binary("add")
sub = _binary("sub")
mul = _binary("mul")
div = _binary("div")
maximum = _binary("maximum")
minimum = _binary("minimum")
less = _nondiff_binary("less", lambda xp, a, b: xp.less(a, b))
less_equal = _nondiff_binary("less_equal", lambda xp, a, b: xp.less_equal(a, b))
greater = _nondiff_binary("greater", lambda xp, a, b: xp.greater(a, b))
greater_equal = _nondiff_binary("greater_equal", lambda xp, a, b: xp.greater_equal(a, b))
equal = _nondiff_binary("equal", lambda xp, a, b: xp.equal(a, b))
not_equal = _nondiff_binary("not_equal", lambda xp, a, b: xp.not_equal(a, b))
logical_and = _nondiff_binary("logical_and", lambda xp, a, b: xp.logical_and(a, b))
logical_or = _nondiff_binary("logical_or", lambda xp, a, b: xp.logical_or(a, b))
logical_xor = _nondiff_binary("logical_xor", lambda xp, a, b: xp.logical_xor(a, b))
logical_not = _nondiff_unary("logical_not", lambda xp, a: xp.logical_not(a))
isnan = _nondiff_unary("isnan", lambda xp, a: xp.isnan(a))
isfinite = _nondiff_unary("isfinite", lambda xp, a: xp.isfinite(a))
radd = _binary("add", reflected=True)
rsub = _binary("sub", reflected=True)
rmul = _binary("mul", reflected=True)
rdiv = _binary("div", reflected=True)
rpow = _binary("pow", reflected=True)
subtract, multiply, divide, true_divide, negative = sub, mul, div, div, neg


_pow_tensor = _binary("pow")
_POW_CONST: dict[tuple, object] = {}


def pow(a, b):  # noqa: A001 (NumPy's name)
    """a ** b elementwise; the gradient for b needs a > 0 (log a). A Python-number exponent is part
    of the program (x ** 2 runs as x * x), one program per exponent value."""
    if isinstance(a, Tensor) and type(b) in (int, float):
        key = (type(b), repr(b))
        op_ = _POW_CONST.get(key)
        if op_ is None:
            inputs, out = trace(lambda x: x ** b, ("f",))
            op_ = _POW_CONST[key] = program_op(Program(inputs, (out,), "pow"), ("a",))
        return apply(op_, (a,), NO_PARAMS)
    return _pow_tensor(a, b)


power = pow


_gelu_erf = _unary("gelu")
gelu_tanh = _unary("gelu_tanh")


def gelu(x, approximate: str = "none"):
    """GELU: exact (erf) by default, `approximate="tanh"` for the tanh form (torch's signature)."""
    if approximate == "tanh":
        return gelu_tanh(x)
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gelu_erf(x)


def clip(x, lo=None, hi=None, *, min=None, max=None):  # noqa: A002 (torch's clamp names)
    """Clamp into [lo, hi] (either may be None); the gradient passes where lo <= x <= hi."""
    lo = min if lo is None else lo
    hi = max if hi is None else hi
    if isinstance(x, Value):
        return SCALAR["clip"](x, -math.inf if lo is None else lo, math.inf if hi is None else hi)
    x = as_tensor(x)
    if isinstance(lo, Tensor) or isinstance(hi, Tensor):
        out = x if lo is None else maximum(x, lo)
        return out if hi is None else minimum(out, hi)
    inputs = (x, as_tensor(-math.inf if lo is None else lo, x), as_tensor(math.inf if hi is None else hi, x))
    return apply(OPS["clip"], inputs, NO_PARAMS)


clamp = clip


def where(cond, a, b):
    """Elements of a where cond is true, else of b; no gradient flows to cond. On traced values
    (inside @ga.elementwise) it is the language's data-dependent choice."""
    if isinstance(cond, Value) or isinstance(a, Value) or isinstance(b, Value):
        return SCALAR["where"](cond, a, b)
    a, b = operands(a, b)
    cond = as_tensor(cond, a)
    if cond.dtype.kind != "b":
        cond = cond != 0
    inputs = (cond, a, b)
    return apply(OPS["where"], inputs, NO_PARAMS)


def astype(x, dtype):
    """Cast to `dtype`; the gradient is cast back to the input's dtype."""
    dtype = dtypes.resolve(dtype)
    if x.dtype == dtype:
        return x
    return apply(ASTYPE, (x,), {"dtype": dtype})
