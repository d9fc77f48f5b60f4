"""Pointwise ops. For a pointwise f, VJP and JVP are the same product with the partial derivative
(g * df/dx and t * df/dx: PyTorch's `auto_element_wise`), so most entries give only the partials."""
from __future__ import annotations

import math

from ..autograd.function import Op, apply
from ..tensor import Tensor
from .common import NO_PARAMS, as_tensor, operands

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


def _scale_rule(partial):
    return lambda c, g: g * partial(c)


def pointwise_op(name, forward, partials, save, args=("x",)):
    """An Op whose VJP (g * d) and JVP (t * d) rules both come from the partial derivatives d."""
    rules = tuple(_scale_rule(p) for p in partials)
    return Op(name, forward, vjp=rules, jvp=rules, args=args, save=save)


def _unary(op: Op):
    def fn(x):
        return apply(op, (x if isinstance(x, Tensor) else as_tensor(x),), NO_PARAMS)

    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = f"Elementwise {op.name}; differentiable in both modes."
    return fn


def _binary(op: Op):
    def fn(a, b):
        return apply(op, operands(a, b), NO_PARAMS)

    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = f"Elementwise {op.name} with NumPy broadcasting; differentiable in both modes."
    return fn


def _reflected(op: Op):
    def fn(b, a):
        return apply(op, operands(a, b), NO_PARAMS)

    fn.__name__ = fn.__qualname__ = f"r{op.name}"
    return fn


# ---- linear ops: rules without a partial ---------------------------------------------------------
NEG = Op("neg", lambda xp, x: xp.negative(x), vjp=(lambda c, g: -g,), jvp=(lambda c, t: -t,))
ADD = Op("add", lambda xp, a, b: xp.add(a, b), args=("a", "b"),
         vjp=(lambda c, g: g, lambda c, g: g), jvp=(lambda c, t: t, lambda c, t: t))
SUB = Op("sub", lambda xp, a, b: xp.subtract(a, b), args=("a", "b"),
         vjp=(lambda c, g: g, lambda c, g: -g), jvp=(lambda c, t: t, lambda c, t: -t))
ASTYPE = Op("astype", lambda xp, x, dtype: x.astype(dtype),
            vjp=(lambda c, g: g,), jvp=(lambda c, t: t,))

# ---- unary: name, forward, d/dx, what the derivative reads ---------------------------------------
EXP = pointwise_op("exp", lambda xp, x: xp.exp(x), (lambda c: c.y,), "y")
LOG = pointwise_op("log", lambda xp, x: xp.log(x), (lambda c: 1.0 / c.x,), "x")
LOG1P = pointwise_op("log1p", lambda xp, x: xp.log1p(x), (lambda c: 1.0 / (c.x + 1.0),), "x")
EXPM1 = pointwise_op("expm1", lambda xp, x: xp.expm1(x), (lambda c: c.y + 1.0,), "y")
SQRT = pointwise_op("sqrt", lambda xp, x: xp.sqrt(x), (lambda c: 0.5 / c.y,), "y")
RSQRT = pointwise_op("rsqrt", lambda xp, x: 1.0 / xp.sqrt(x), (lambda c: -0.5 * c.y * c.y * c.y,), "y")
SIN = pointwise_op("sin", lambda xp, x: xp.sin(x), (lambda c: cos(c.x),), "x")
COS = pointwise_op("cos", lambda xp, x: xp.cos(x), (lambda c: -sin(c.x),), "x")
TAN = pointwise_op("tan", lambda xp, x: xp.tan(x), (lambda c: 1.0 + c.y * c.y,), "y")
TANH = pointwise_op("tanh", lambda xp, x: xp.tanh(x), (lambda c: 1.0 - c.y * c.y,), "y")
SIGMOID = pointwise_op("sigmoid", lambda xp, x: 0.5 * xp.tanh(0.5 * x) + 0.5,
                       (lambda c: c.y * (1.0 - c.y),), "y")
RELU = pointwise_op("relu", lambda xp, x: xp.maximum(x, 0), (lambda c: c.y > 0,), "y")
ERF = pointwise_op("erf", lambda xp, x: xp.erf(x), (lambda c: (2.0 / math.sqrt(math.pi)) * exp(-c.x * c.x),), "x")
GELU = pointwise_op(
    "gelu", lambda xp, x: 0.5 * x * (1.0 + xp.erf(x * (1.0 / _SQRT_2))),
    (lambda c: 0.5 * (1.0 + erf(c.x * (1.0 / _SQRT_2))) + c.x * exp(-0.5 * c.x * c.x) * _INV_SQRT_2PI,), "x")


def _gelu_tanh_partial(c):
    x = c.x
    th = tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x * x)


GELU_TANH = pointwise_op(
    "gelu_tanh", lambda xp, x: 0.5 * x * (1.0 + xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))),
    (_gelu_tanh_partial,), "x")


def _silu_partial(c):
    s = sigmoid(c.x)
    return s * (1.0 + c.x * (1.0 - s))


SILU = pointwise_op("silu", lambda xp, x: x * (0.5 * xp.tanh(0.5 * x) + 0.5), (_silu_partial,), "x")
SOFTPLUS = pointwise_op("softplus", lambda xp, x: xp.logaddexp(0.0, x).astype(x.dtype, copy=False),
                        (lambda c: sigmoid(c.x),), "x")
ABS = pointwise_op("abs", lambda xp, x: xp.abs(x), (lambda c: sign(c.x),), "x")
SIGN = pointwise_op("sign", lambda xp, x: xp.sign(x), (lambda c: c.y * 0.0,), "y")
CLIP = pointwise_op("clip", lambda xp, x, lo, hi: xp.clip(x, lo, hi),
                    (lambda c: _in_range(c.x, c.lo, c.hi),), "x")

# ---- binary ----------------------------------------------------------------------------------------
MUL = pointwise_op("mul", lambda xp, a, b: xp.multiply(a, b), (lambda c: c.b, lambda c: c.a),
                   ("b", "a"), args=("a", "b"))
DIV = pointwise_op("div", lambda xp, a, b: xp.true_divide(a, b),
                   (lambda c: 1.0 / c.b, lambda c: -c.a / (c.b * c.b)), ("b", "a b"), args=("a", "b"))
POW = pointwise_op("pow", lambda xp, a, b: xp.power(a, b),
                   (lambda c: c.b * c.a ** (c.b - 1), lambda c: c.y * log(c.a)), ("a b", "a y"),
                   args=("a", "b"))


def _tie_weight(a, b, greater: bool):
    """1 where a wins, 0 where b wins, 1/2 at ties (the gradient is split, as PyTorch does)."""
    wins = (a > b) if greater else (a < b)
    return wins + (a == b) * 0.5


MAXIMUM = pointwise_op("maximum", lambda xp, a, b: xp.maximum(a, b),
                       (lambda c: _tie_weight(c.a, c.b, True), lambda c: _tie_weight(c.b, c.a, True)),
                       ("a b", "a b"), args=("a", "b"))
MINIMUM = pointwise_op("minimum", lambda xp, a, b: xp.minimum(a, b),
                       (lambda c: _tie_weight(c.a, c.b, False), lambda c: _tie_weight(c.b, c.a, False)),
                       ("a b", "a b"), args=("a", "b"))
WHERE = Op("where", lambda xp, cond, a, b: xp.where(cond, a, b), args=("cond", "a", "b"),
           vjp=(None, lambda c, g: where(c.cond, g, 0.0), lambda c, g: where(c.cond, 0.0, g)),
           jvp=(None, lambda c, t: where(c.cond, t, 0.0), lambda c, t: where(c.cond, 0.0, t)),
           save=("", "cond", "cond"))


def _in_range(x, lo, hi):
    mask = x == x
    if lo is not None:
        mask = mask & (x >= lo)
    if hi is not None:
        mask = mask & (x <= hi)
    return mask


# ---- non-differentiable: comparisons and logic return bool tensors --------------------------------
def _nondiff(name, forward, nargs=2):
    return Op(name, forward, args=("a", "b")[:nargs])


LT = _nondiff("less", lambda xp, a, b: xp.less(a, b))
LE = _nondiff("less_equal", lambda xp, a, b: xp.less_equal(a, b))
GT = _nondiff("greater", lambda xp, a, b: xp.greater(a, b))
GE = _nondiff("greater_equal", lambda xp, a, b: xp.greater_equal(a, b))
EQ = _nondiff("equal", lambda xp, a, b: xp.equal(a, b))
NE = _nondiff("not_equal", lambda xp, a, b: xp.not_equal(a, b))
AND = _nondiff("logical_and", lambda xp, a, b: xp.logical_and(a, b))
OR = _nondiff("logical_or", lambda xp, a, b: xp.logical_or(a, b))
XOR = _nondiff("logical_xor", lambda xp, a, b: xp.logical_xor(a, b))
NOT = _nondiff("logical_not", lambda xp, a: xp.logical_not(a), nargs=1)
ISNAN = _nondiff("isnan", lambda xp, a: xp.isnan(a), nargs=1)
ISFINITE = _nondiff("isfinite", lambda xp, a: xp.isfinite(a), nargs=1)

neg = _unary(NEG)
exp = _unary(EXP)
log = _unary(LOG)
log1p = _unary(LOG1P)
expm1 = _unary(EXPM1)
sqrt = _unary(SQRT)
rsqrt = _unary(RSQRT)
sin = _unary(SIN)
cos = _unary(COS)
tan = _unary(TAN)
tanh = _unary(TANH)
sigmoid = _unary(SIGMOID)
relu = _unary(RELU)
erf = _unary(ERF)
silu = _unary(SILU)
softplus = _unary(SOFTPLUS)
abs = _unary(ABS)  # noqa: A001 (NumPy's name)
sign = _unary(SIGN)
add = _binary(ADD)
sub = _binary(SUB)
mul = _binary(MUL)
div = _binary(DIV)
maximum = _binary(MAXIMUM)
minimum = _binary(MINIMUM)
less = _binary(LT)
less_equal = _binary(LE)
greater = _binary(GT)
greater_equal = _binary(GE)
equal = _binary(EQ)
not_equal = _binary(NE)
logical_and = _binary(AND)
logical_or = _binary(OR)
logical_xor = _binary(XOR)
logical_not = _unary(NOT)
isnan = _unary(ISNAN)
isfinite = _unary(ISFINITE)
radd = _reflected(ADD)
rsub = _reflected(SUB)
rmul = _reflected(MUL)
rdiv = _reflected(DIV)
rpow = _reflected(POW)
subtract, multiply, divide, true_divide, negative = sub, mul, div, div, neg


def pow(a, b):  # noqa: A001 (NumPy's name)
    """a ** b elementwise; the gradient for b needs a > 0 (log a), as everywhere."""
    return apply(POW, operands(a, b), NO_PARAMS)


power = pow


def gelu(x, approximate: str = "none"):
    """GELU: exact (erf) by default, `approximate="tanh"` for the tanh form (torch's signature)."""
    x = as_tensor(x)
    if approximate == "tanh":
        return apply(GELU_TANH, (x,), NO_PARAMS)
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(GELU, (x,), NO_PARAMS)


def clip(x, lo=None, hi=None, *, min=None, max=None):  # noqa: A002 (torch's clamp names)
    """Clamp into [lo, hi] (either may be None); the gradient passes where lo <= x <= hi."""
    x = as_tensor(x)
    lo = min if lo is None else lo
    hi = max if hi is None else hi
    if isinstance(lo, Tensor) or isinstance(hi, Tensor):
        out = x if lo is None else maximum(x, lo)
        return out if hi is None else minimum(out, hi)
    return apply(CLIP, (x,), {"lo": lo, "hi": hi})


clamp = clip


def where(cond, a, b):
    """Elements of a where cond is true, else of b; no gradient flows to cond."""
    a, b = operands(a, b)
    cond = as_tensor(cond, a)
    if cond.dtype.kind != "b":
        cond = cond != 0
    return apply(WHERE, (cond, a, b), NO_PARAMS)


def astype(x, dtype):
    """Cast to `dtype`; the gradient is cast back to the input's dtype."""
    from .. import dtypes

    dtype = dtypes.resolve(dtype)
    if x.dtype == dtype:
        return x
    return apply(ASTYPE, (x,), {"dtype": dtype})
