"""Every differentiable op, and the binding of operators and methods onto Tensor."""
from __future__ import annotations

from ..tensor import Tensor
from . import elementwise as E
from . import index as I
from . import linalg as L
from . import reduce as R
from . import shape as S

_methods = {
    # operators
    "__add__": E.add, "__radd__": E.radd, "__sub__": E.sub, "__rsub__": E.rsub,
    "__mul__": E.mul, "__rmul__": E.rmul, "__truediv__": E.div, "__rtruediv__": E.rdiv,
    "__pow__": E.pow, "__rpow__": E.rpow, "__matmul__": L.matmul, "__rmatmul__": L.rmatmul,
    "__neg__": E.neg, "__pos__": lambda x: x, "__abs__": E.abs,
    "__lt__": E.less, "__le__": E.less_equal, "__gt__": E.greater, "__ge__": E.greater_equal,
    "__eq__": E.equal, "__ne__": E.not_equal, "__and__": E.logical_and, "__or__": E.logical_or,
    "__xor__": E.logical_xor, "__invert__": E.logical_not, "__getitem__": I.getitem,
    # elementwise
    "exp": E.exp, "log": E.log, "log1p": E.log1p, "expm1": E.expm1, "sqrt": E.sqrt, "rsqrt": E.rsqrt,
    "sin": E.sin, "cos": E.cos, "tan": E.tan, "tanh": E.tanh, "sigmoid": E.sigmoid, "relu": E.relu,
    "gelu": E.gelu, "silu": E.silu, "softplus": E.softplus, "abs": E.abs, "sign": E.sign, "erf": E.erf,
    "clip": E.clip, "clamp": E.clip, "maximum": E.maximum, "minimum": E.minimum, "pow": E.pow,
    "astype": E.astype, "neg": E.neg,
    # reductions
    "sum": R.sum, "mean": R.mean, "prod": R.prod, "max": R.max, "min": R.min, "var": R.var, "std": R.std,
    "logsumexp": R.logsumexp, "argmax": R.argmax, "argmin": R.argmin, "sum_to": R.sum_to,
    # shape
    "reshape": S.reshape, "view": S.reshape, "flatten": S.flatten, "transpose": S.transpose,
    "permute": S.permute, "swapaxes": S.swapaxes, "squeeze": S.squeeze, "unsqueeze": S.unsqueeze,
    "expand": S.expand, "broadcast_to": S.broadcast_to, "flip": S.flip, "repeat": S.repeat,
    "tile": S.tile, "pad": S.pad, "split": S.split,
    # linalg
    "matmul": L.matmul, "dot": L.dot, "outer": L.outer,
}
for _name, _fn in _methods.items():
    setattr(Tensor, _name, _fn)
Tensor.T = property(S.transpose, doc="All axes reversed (NumPy's .T).")
Tensor.mT = property(S.matrix_transpose, doc="The last two axes swapped.")
