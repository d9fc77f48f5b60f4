"""gpuad: a tensor autograd library for NVIDIA GPUs with a CPU fallback. Public API: ../shared/API.md."""
from __future__ import annotations

from . import ops as _ops  # binds operators and methods onto Tensor
from . import autograd, backends, cuda, memory
from .autograd.checkpoint import checkpoint
from .autograd.forward import jvp
from .autograd.gradcheck import gradcheck
from .autograd.transforms import grad, hessian, hvp, jacfwd, jacrev, value_and_grad, vjp
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (arange, empty, eye, full, full_like, linspace, manual_seed, ones, ones_like, rand,
                       randint, randn, zeros, zeros_like)
from .dtypes import bfloat16, bool_, float16, float32, float64, int32, int64
from .elementwise.function import elementwise
from .errors import (DeviceError, DtypeError, GpuadError, GradError, GraphFreedError, IndexOutOfRange,
                     InplaceModifiedError, ReadOnlyError, ShapeError)
from .ops.elementwise import (abs, add, astype, clamp, clip, cos, div, equal, erf, exp, expm1, gelu,
                              greater, greater_equal, isfinite, isnan, less, less_equal, log, log1p,
                              logical_and, logical_not, logical_or, maximum, minimum, mul, neg, not_equal,
                              pow, relu, rsqrt, sigmoid, sign, silu, sin, softplus, sqrt, sub, tan, tanh,
                              where)
from .ops.index import getitem, index_put
from .ops.linalg import dot, einsum, matmul, outer, tensordot
from .ops.reduce import argmax, argmin, logsumexp, max, mean, min, prod, std, sum, sum_to, var
from .ops.shape import (broadcast_to, cat, concatenate, expand, expand_dims, flatten, flip, pad, permute,
                        repeat, reshape, split, squeeze, stack, swapaxes, tile, transpose, unsqueeze, view)
from .tensor import Tensor, tensor
from . import data, nn, optim  # noqa: E402  (after the core: they build on it)
from .serialization import load, save

__version__ = "0.1.0"
_ops  # noqa: B018  (imported for its side effect)
