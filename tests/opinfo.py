"""The op table (PyTorch's OpInfo idea): every op with sample inputs over shapes, broadcasting, 0-d and
empty tensors, negative axes and keepdims, and a NumPy reference. tests/test_ops.py walks it; a new
op is covered the moment it gets an entry here."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gpuad as ga
from gpuad.ops import fused


@dataclass
class Sample:
    shapes: tuple  # shapes of the float (differentiable) tensor arguments, in order
    kwargs: dict = field(default_factory=dict)


@dataclass
class OpInfo:
    name: str
    op: Callable[..., Any]  # gpuad: op(*tensors, **kwargs)
    ref: Callable[..., Any]  # NumPy: ref(*arrays, **kwargs)
    samples: list
    domain: tuple = (-2.0, 2.0)  # inputs are drawn from here ...
    avoid: tuple = ()  # ... at least 0.1 away from these kinks
    grad: bool = True  # differentiable (checked by VJP/JVP/second order)
    second_order: bool = True


def s(*shapes, **kwargs) -> Sample:
    return Sample(shapes, kwargs)


UNARY = [s(()), s((0,)), s((5,)), s((2, 3))]
BINARY = [s((4,), (4,)), s((2, 3), (3,)), s((2, 1), (1, 3)), s((), (2, 3)), s((3, 2), ()), s((0, 3), (3,))]
REDUCE = [s((2, 3, 4)), s((2, 3, 4), axis=1), s((2, 3, 4), axis=-1, keepdims=True), s((2, 3, 4), axis=(0, 2)),
          s((3,), axis=0), s(())]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def unary(name, op, ref, **kw) -> OpInfo:
    return OpInfo(name, op, ref, UNARY, **kw)


def binary(name, op, ref, **kw) -> OpInfo:
    return OpInfo(name, op, ref, BINARY, **kw)


def _lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis if axis is not None else tuple(range(x.ndim)))


def _xent(x, labels, reduction="mean"):
    logp = x - _lse(x, axis=1, keepdims=True)
    losses = -logp[np.arange(len(labels)), labels]
    return losses.mean() if reduction == "mean" else losses


def _layer_norm(x, w, b, eps=1e-5):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


OPS = [
    unary("neg", lambda x: -x, np.negative),
    unary("exp", ga.exp, np.exp),
    unary("log", ga.log, np.log, domain=(0.2, 3.0)),
    unary("log1p", ga.log1p, np.log1p, domain=(-0.5, 2.0)),
    unary("expm1", ga.expm1, np.expm1),
    unary("sqrt", ga.sqrt, np.sqrt, domain=(0.2, 3.0)),
    unary("rsqrt", ga.rsqrt, lambda x: 1 / np.sqrt(x), domain=(0.2, 3.0)),
    unary("sin", ga.sin, np.sin),
    unary("cos", ga.cos, np.cos),
    unary("tan", ga.tan, np.tan, domain=(-1.2, 1.2)),
    unary("tanh", ga.tanh, np.tanh),
    unary("sigmoid", ga.sigmoid, _sig),
    unary("relu", ga.relu, lambda x: np.maximum(x, 0), avoid=(0.0,)),
    unary("gelu", ga.gelu, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    unary("gelu_tanh", lambda x: ga.gelu(x, approximate="tanh"), _gelu_tanh),
    unary("silu", ga.silu, lambda x: x * _sig(x)),
    unary("softplus", ga.softplus, lambda x: np.log1p(np.exp(x))),
    unary("erf", ga.erf, _erf),
    unary("abs", ga.abs, np.abs, avoid=(0.0,)),
    unary("sign", ga.sign, np.sign, avoid=(0.0,)),
    unary("clip", lambda x: ga.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), avoid=(-0.5, 0.7)),
    unary("clip_tensor_bounds", lambda x: x.clamp(min=ga.tensor(-0.5, dtype=x.dtype)),
          lambda x: np.maximum(x, -0.5), avoid=(-0.5,)),
    unary("pow_scalar", lambda x: x ** 3, lambda x: x ** 3),
    unary("rpow_scalar", lambda x: 2.0 ** x, lambda x: 2.0 ** x),
    unary("rdiv_scalar", lambda x: 1.5 / x, lambda x: 1.5 / x, domain=(0.3, 2.0)),
    unary("rsub_scalar", lambda x: 1.5 - x, lambda x: 1.5 - x),
    binary("add", ga.add, np.add),
    binary("sub", lambda a, b: a - b, np.subtract),
    binary("mul", lambda a, b: a * b, np.multiply),
    binary("div", lambda a, b: a / b, np.divide, domain=(0.3, 2.0)),
    binary("pow", ga.pow, np.power, domain=(0.3, 2.0)),
    binary("maximum", ga.maximum, np.maximum),
    binary("minimum", ga.minimum, np.minimum),
    OpInfo("where", lambda a, b: ga.where(a > 0.1, a, b), lambda a, b: np.where(a > 0.1, a, b), BINARY,
           avoid=(0.1,)),
    OpInfo("sum", ga.sum, np.sum, REDUCE),
    OpInfo("mean", ga.mean, np.mean, REDUCE[:-2] + [s((3,), axis=0)]),
    OpInfo("prod", ga.prod, np.prod, REDUCE),
    OpInfo("max", ga.max, np.max, REDUCE),
    OpInfo("min", ga.min, np.min, REDUCE),
    OpInfo("var", ga.var, np.var, [s((2, 3, 4), axis=1), s((5,), ddof=1), s((2, 3), axis=None, keepdims=True)]),
    OpInfo("std", ga.std, np.std, [s((2, 3, 4), axis=-1), s((6,), ddof=1)]),
    OpInfo("logsumexp", ga.logsumexp, _lse, [s((2, 3, 4), axis=1), s((5,)), s((2, 3), axis=-1, keepdims=True)]),
    OpInfo("sum_empty", lambda x: ga.sum(x, axis=0), lambda x: np.sum(x, axis=0), [s((0, 3))]),
    OpInfo("reshape", lambda x, shape: x.reshape(shape), lambda x, shape: x.reshape(shape),
           [s((2, 3, 4), shape=(6, -1)), s((), shape=(1, 1)), s((0, 2), shape=(2, 0))]),
    OpInfo("flatten", lambda x: x.flatten(), lambda x: x.reshape(-1), [s((2, 3, 2))]),
    OpInfo("transpose", lambda x, axes: x.transpose(*axes), lambda x, axes: np.transpose(x, axes or None),
           [s((2, 3, 4), axes=(2, 0, 1)), s((2, 3), axes=())]),
    OpInfo("T", lambda x: x.T, lambda x: x.T, [s((2, 3))]),
    OpInfo("swapaxes", lambda x: x.swapaxes(0, -1), lambda x: np.swapaxes(x, 0, -1), [s((2, 3, 4))]),
    OpInfo("squeeze", lambda x, **k: x.squeeze(**k), lambda x, **k: np.squeeze(x, **k),
           [s((1, 3, 1)), s((1, 3, 1), axis=-1)]),
    OpInfo("unsqueeze", lambda x: x.unsqueeze(-1), lambda x: x[..., None], [s((2, 3)), s(())]),
    OpInfo("broadcast_to", lambda x: x.broadcast_to((4, 2, 3)), lambda x: np.broadcast_to(x, (4, 2, 3)),
           [s((2, 3)), s((1, 3)), s(())]),
    OpInfo("expand", lambda x: x.expand(3, -1), lambda x: np.broadcast_to(x, (3, x.shape[-1])), [s((1, 4))]),
    OpInfo("concatenate", lambda a, b, axis: ga.concatenate([a, b], axis=axis),
           lambda a, b, axis: np.concatenate([a, b], axis=axis),
           [s((2, 3), (4, 3), axis=0), s((2, 3), (2, 1), axis=-1), s((0, 3), (2, 3), axis=0)]),
    OpInfo("stack", lambda a, b: ga.stack([a, b], axis=1), lambda a, b: np.stack([a, b], axis=1),
           [s((2, 3), (2, 3))]),
    OpInfo("split", lambda x: ga.split(x, [1, 3], axis=1)[1] * 2 + ga.split(x, [1, 3], axis=1)[2].sum(),
           lambda x: np.split(x, [1, 3], axis=1)[1] * 2 + np.split(x, [1, 3], axis=1)[2].sum(), [s((2, 5))]),
    OpInfo("pad", lambda x: ga.pad(x, ((1, 0), (2, 1)), value=0.5),
           lambda x: np.pad(x, ((1, 0), (2, 1)), constant_values=0.5), [s((2, 3))]),
    OpInfo("flip", lambda x, **k: ga.flip(x, **k), lambda x, **k: np.flip(x, **k),
           [s((2, 3)), s((2, 3), axis=-1)]),
    OpInfo("repeat", lambda x, **k: ga.repeat(x, **k), lambda x, **k: np.repeat(x, **k),
           [s((2, 3), repeats=2, axis=0), s((2, 3), repeats=[1, 0, 2], axis=1), s((2, 2), repeats=2)]),
    OpInfo("tile", lambda x, reps: ga.tile(x, reps), lambda x, reps: np.tile(x, reps),
           [s((2, 3), reps=(2, 1)), s((3,), reps=(2, 2))]),
    OpInfo("getitem_basic", lambda x: x[1:, ::-2, None, ..., 0], lambda x: x[1:, ::-2, None, ..., 0],
           [s((3, 4, 2))]),
    OpInfo("getitem_int", lambda x: x[-1], lambda x: x[-1], [s((3, 4))]),
    OpInfo("getitem_array_repeats", lambda x: x[[0, 2, 0, 0]], lambda x: x[[0, 2, 0, 0]], [s((3, 2))]),
    OpInfo("getitem_array_2d", lambda x: x[np.array([[0, 1], [1, 1]]), np.array([2, 0])],
           lambda x: x[np.array([[0, 1], [1, 1]]), np.array([2, 0])], [s((2, 3))]),
    OpInfo("getitem_mask", lambda x: x[x > 0], lambda x: x[x > 0], [s((3, 4))], avoid=(0.0,)),
    OpInfo("getitem_tensor_index", lambda x: x[ga.tensor([1, 0, 1])], lambda x: x[[1, 0, 1]], [s((2, 3))]),
    OpInfo("index_put", lambda x, v: ga.index_put(x, (slice(None), [0, 2]), v),
           lambda x, v: _put(x, (slice(None), [0, 2]), v), [s((3, 4), (3, 2)), s((3, 4), ())]),
    OpInfo("matmul", lambda a, b: a @ b, np.matmul,
           [s((2, 3), (3, 4)), s((2, 2, 3), (3, 4)), s((2, 1, 2, 3), (3, 3, 2)), s((3,), (3, 2)),
            s((2, 3), (3,)), s((3,), (3,)), s((3,), (2, 3, 4)), s((2, 4, 3), (3,))]),
    OpInfo("einsum", lambda *xs, spec: ga.einsum(spec, *xs), lambda *xs, spec: np.einsum(spec, *xs),
           [s((2, 3), (3, 4), spec="ij,jk->ik"), s((2, 2, 3), (2, 3, 4), spec="bij,bjk->bik"),
            s((2, 3), spec="ij->"), s((3,), (3,), spec="i,i"), s((2, 3), (3,), spec="ij,j->ij"),
            s((2, 3), (4,), spec="ij,k->ik"), s((2, 2, 3), (3, 4), spec="...ij,jk->...ik"),
            s((2, 3), (3, 2), (2,), spec="ij,jk,k->i")]),
    OpInfo("outer", ga.outer, np.outer, [s((3,), (2,)), s((2, 2), (3,))]),
    OpInfo("dot", ga.dot, np.dot, [s((3,), (3,)), s((2, 3), (3, 4)), s((2, 3, 4), (2, 4, 3)), s((), (3,))]),
    OpInfo("softmax_cross_entropy", lambda x, **k: fused.softmax_cross_entropy(x, [2, 0, 3], **k),
           lambda x, **k: _xent(x, [2, 0, 3], **k), [s((3, 4)), s((3, 4), reduction="none")]),
    OpInfo("layer_norm", lambda x, w, b: fused.layer_norm(x, w, b, eps=1e-5), _layer_norm,
           [s((3, 5), (5,), (5,)), s((2, 2, 4), (4,), (4,))]),
    OpInfo("tensordot", lambda a, b: ga.tensordot(a, b, 1), lambda a, b: np.tensordot(a, b, 1),
           [s((2, 3), (3, 4))]),
]


def _put(x, index, v):
    out = x.copy()
    out[index] = v
    return out


NONDIFF = [
    ("less", lambda a, b: a < b, np.less),
    ("less_equal", lambda a, b: a <= b, np.less_equal),
    ("greater", lambda a, b: a > b, np.greater),
    ("greater_equal", lambda a, b: a >= b, np.greater_equal),
    ("equal", lambda a, b: a == b, np.equal),
    ("not_equal", lambda a, b: a != b, np.not_equal),
    ("argmax", lambda a, b: ga.argmax(a * b, axis=-1), lambda a, b: np.argmax(a * b, axis=-1)),
    ("argmin", lambda a, b: ga.argmin(a + b), lambda a, b: np.argmin(a + b)),
    ("argmax_keepdims", lambda a, b: ga.argmax(a - b, axis=0, keepdims=True),
     lambda a, b: np.argmax(a - b, axis=0, keepdims=True)),
]


def sample_inputs(info: OpInfo, sample: Sample, rng: np.random.Generator, dtype=np.float64) -> list:
    """Random float arrays for `sample`, inside the op's domain and away from its kinks."""
    lo, hi = info.domain
    arrays = []
    for shape in sample.shapes:
        x = rng.uniform(lo, hi, size=shape)
        for kink in info.avoid:
            near = np.abs(x - kink) < 0.1
            x = np.where(near, kink + np.where(x >= kink, 0.1, -0.1) + np.sign(x - kink + 1e-12) * 0.05, x)
        arrays.append(np.asarray(x, dtype=dtype))
    return arrays
