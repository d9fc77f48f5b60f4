"""Initializers (in place, under no_grad), with PyTorch's formulas. Random numbers come from the
tensor's device generator, so ga.manual_seed makes initialization reproducible.

The layers use PyTorch's defaults: Linear and Conv2d weights kaiming_uniform_(a=sqrt(5)), which is
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)); Embedding N(0, 1);
norm layers weight 1, bias 0; MultiheadAttention's in-projection xavier_uniform_ with zero biases."""
from __future__ import annotations

import math

from ..autograd.mode import no_grad
from ..tensor import Tensor


def _fill(t: Tensor, data) -> Tensor:
    with no_grad():
        t.copy_(Tensor._wrap(data, t._backend))
    return t


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b)."""
    return _fill(t, t._backend.rand(t.shape, t.dtype) * (b - a) + a)


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std^2)."""
    return _fill(t, t._backend.randn(t.shape, t.dtype) * std + mean)


def constant_(t: Tensor, value: float) -> Tensor:
    """Fill with `value`."""
    with no_grad():
        return t.fill_(value)


def zeros_(t: Tensor) -> Tensor:
    """Fill with 0."""
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(t, 1.0)


def fan_in_and_fan_out(t: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as torch computes them."""
    if t.ndim < 2:
        raise ValueError(f"init: fan in and fan out need at least 2 dimensions, got shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _gain(nonlinearity: str, a: float) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity == "tanh":
        return 5.0 / 3
    return 1.0


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al.)."""
    fan_in, fan_out = fan_in_and_fan_out(t)
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / (fan_in if mode == "fan_in" else fan_out))
    return uniform_(t, -bound, bound)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio)."""
    fan_in, fan_out = fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)
