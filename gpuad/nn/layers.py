"""Layers: thin Modules holding parameters (initialized as PyTorch does, see init.py) around the
functions in functional.py."""
from __future__ import annotations

import math

from ..autograd.mode import no_grad
from ..creation import empty, ones, zeros
from ..dtypes import int64
from ..errors import ShapeError
from ..ops.common import as_tensor
from ..ops.elementwise import sigmoid, tanh
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter


def _uniform_param(shape, bound: float, dtype, device) -> Parameter:
    p = Parameter(empty(*shape, dtype=dtype, device=device))
    init.uniform_(p, -bound, bound)
    return p


class Linear(Module):
    """y = x @ W.T + b with W of shape (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = _uniform_param((out_features, in_features), bound, dtype, device)
        self.register_parameter("bias", _uniform_param((out_features,), bound, dtype, device) if bias else None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution over NCHW input with an OIHW weight (stride, padding, dilation, groups)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ShapeError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode={padding_mode!r} (only 'zeros')")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = F._pair(kernel_size, "Conv2d", "kernel_size")
        self.stride, self.dilation = F._pair(stride, "Conv2d", "stride"), F._pair(dilation, "Conv2d", "dilation")
        self.padding = padding if isinstance(padding, str) else F._pair(padding, "Conv2d", "padding")
        shape = (out_channels, in_channels // groups) + self.kernel_size
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))
        self.weight = _uniform_param(shape, bound, dtype, device)
        self.register_parameter("bias", _uniform_param((out_channels,), bound, dtype, device) if bias else None)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class MaxPool2d(Module):
    """Max over windows; stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride or kernel_size
        self.padding, self.dilation = padding, dilation

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}")


class AvgPool2d(Module):
    """Mean over windows; stride defaults to kernel_size, zero padding counted."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.count_include_pad = count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                            count_include_pad=self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _BatchNorm(Module):
    _ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(ones(num_features, dtype=dtype, device=device))
            self.bias = Parameter(zeros(num_features, dtype=dtype, device=device))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", zeros((), dtype=int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x):
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}({self.num_features}): expected input with "
                             f"{' or '.join(map(str, self._ndims))} dims and {self.num_features} channels "
                             f"on axis 1, got shape {x.shape}")
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked += 1
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training or self.running_mean is None, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) input."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) input."""

    _ndims = (4,)


class LayerNorm(Module):
    """Normalization over the trailing normalized_shape dims with elementwise scale and shift."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine = elementwise_affine
        w = Parameter(ones(shape, dtype=dtype, device=device)) if elementwise_affine else None
        b = Parameter(zeros(shape, dtype=dtype, device=device)) if elementwise_affine and bias else None
        self.register_parameter("weight", w)
        self.register_parameter("bias", b)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Dropout(Module):
    """Zero elements with probability p while training (scaling the rest by 1/(1-p))."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Embedding(Module):
    """A lookup table of num_embeddings vectors of size embedding_dim, initialized N(0, 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype, device=device))
        init.normal_(self.weight)
        if padding_idx is not None:
            with no_grad():
                self.weight[padding_idx] = 0.0

    def forward(self, idx):
        return F.embedding(idx, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Flatten(Module):
    """Merge dims start_dim..end_dim (by default all but the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x):
        return F.relu(x)


class GELU(Module):
    """GELU elementwise, exact (erf) or approximate="tanh"."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    """tanh elementwise."""

    def forward(self, x):
        return tanh(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise."""

    def forward(self, x):
        return sigmoid(x)


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention: packed in-projection (3E, E), per-head scaled dot-product attention,
    out_proj; inputs (L, N, E), or (N, L, E) with batch_first=True. Returns (output, weights averaged
    over heads, or per head with average_attn_weights=False, or None with need_weights=False)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ShapeError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, dtype=dtype, device=device))
        init.xavier_uniform_(self.in_proj_weight)
        self.register_parameter(
            "in_proj_bias", Parameter(zeros(3 * embed_dim, dtype=dtype, device=device)) if bias else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        if not self.batch_first:
            query, key, value = (t.swapaxes(0, 1) for t in (query, key, value))
        n, lq, e = query.shape
        lk = key.shape[1]
        if e != self.embed_dim or key.shape[-1] != e or value.shape[-1] != e:
            raise ShapeError(f"MultiheadAttention: expected embed_dim {self.embed_dim}, got query {query.shape}, "
                             f"key {key.shape}, value {value.shape}")
        h, d = self.num_heads, e // self.num_heads
        w, b = self.in_proj_weight, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        q = F.linear(query, w[:e], bq).reshape(n, lq, h, d).swapaxes(1, 2)
        k = F.linear(key, w[e:2 * e], bk).reshape(n, lk, h, d).swapaxes(1, 2)
        v = F.linear(value, w[2 * e:], bv).reshape(n, lk, h, d).swapaxes(1, 2)
        scores = (q @ k.mT) * (1.0 / math.sqrt(d))
        mask = _additive_mask(attn_mask, key_padding_mask, is_causal, scores)
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, -1)
        out = F.dropout(weights, self.dropout, self.training) @ v  # (N, H, Lq, D)
        out = self.out_proj(out.swapaxes(1, 2).reshape(n, lq, e))
        if not self.batch_first:
            out = out.swapaxes(0, 1)
        if not need_weights:
            return out, None
        return out, (weights.mean(axis=1) if average_attn_weights else weights)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def _additive_mask(attn_mask, key_padding_mask, is_causal: bool, scores):
    """One float mask (0 or -inf) broadcastable to scores (N, H, Lq, Lk): boolean masks mark positions
    that are NOT allowed (torch's MultiheadAttention convention), float masks are added; a 3-D
    attn_mask is (N*H, Lq, Lk) as in torch."""
    xp, backend = scores._backend.xp, scores._backend
    lq, lk = scores.shape[-2:]
    if is_causal and attn_mask is None:
        attn_mask = xp.triu(xp.ones((lq, lk), dtype=bool), 1)
    parts = []
    n, h = scores.shape[:2]
    mask_shape = (n, h, lq, lk) if attn_mask is not None and len(getattr(attn_mask, "shape", ())) == 3 else None
    for m, shape in ((attn_mask, mask_shape), (key_padding_mask, (-1, 1, 1, lk))):
        if m is None:
            continue
        m = as_tensor(m, scores)
        if m.dtype.kind == "b":
            m = Tensor._wrap(xp.where(m._data, -math.inf, 0.0).astype(scores.dtype), backend)
        m = m.astype(scores.dtype)
        parts.append(m if shape is None else m.reshape(shape))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]
