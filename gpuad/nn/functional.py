"""ga.nn.functional: torch.nn.functional's signatures and defaults (weights (out, in) and OIHW, NCHW,
pooling stride = kernel size, layer_norm eps 1e-5, attention scaled by 1/sqrt(d), losses averaged);
`axis=` is accepted where torch says `dim=`. Everything is composed from differentiable gpuad ops (the
primitives of ops/nn.py and ops/fused.py among them), so gradients, double backward and forward mode
come for free."""
from __future__ import annotations

import math

import numpy as np

from .. import ops as _ops  # noqa: F401  (binds Tensor methods)
from ..autograd.mode import no_grad
from ..errors import DtypeError, ShapeError
from ..ops import fused as _fused
from ..ops import nn as _nn
from ..ops.common import as_tensor
from ..ops.elementwise import gelu as _gelu
from ..ops.elementwise import relu as _relu
from ..ops.elementwise import sigmoid, tanh, where
from ..tensor import Tensor

# The plain case of cross_entropy goes to the fused kernel (gpuad/ops/fused.py) on the GPU and, on the
# CPU, from this many logits on: measured on the 2-core CPU, the composed form is faster for (64, 10)
# (122 vs 137 us forward + backward) and the fused one for (512, 1000) (1.46 vs 2.04 ms).
_FUSED_XENT_MIN = 1 << 14

__all__ = ["relu", "gelu", "tanh", "sigmoid", "softmax", "log_softmax", "cross_entropy", "nll_loss",
           "mse_loss", "linear", "conv2d", "max_pool2d", "avg_pool2d", "layer_norm", "batch_norm", "dropout",
           "embedding", "scaled_dot_product_attention"]


def _pair(v, name: str, what: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name}: {what} must be an int or a pair, got {v}")
    return v


def _check_4d(x: Tensor, name: str) -> None:
    if x.ndim != 4:
        raise ShapeError(f"{name}: expected input of shape (N, C, H, W), got {x.shape} ({x.dtype})")


def _dim(axis, dim, default):
    return dim if dim is not None else (axis if axis is not None else default)


# ---- activations --------------------------------------------------------------------------------
def relu(x, inplace: bool = False) -> Tensor:
    """max(x, 0); `inplace` is accepted for torch compatibility and ignored (out of place)."""
    return _relu(x)


def gelu(x, approximate: str = "none") -> Tensor:
    """GELU, exact (erf) or `approximate="tanh"`."""
    return _gelu(x, approximate)


def softmax(x, axis: int | None = None, *, dim: int | None = None, dtype=None) -> Tensor:
    """Softmax along `axis` (torch: dim; the last axis when neither is given)."""
    x = as_tensor(x) if dtype is None else as_tensor(x).astype(dtype)
    return _nn.softmax(x, _dim(axis, dim, -1))


def log_softmax(x, axis: int | None = None, *, dim: int | None = None, dtype=None) -> Tensor:
    """log(softmax(x)) along `axis` (torch: dim; the last axis when neither is given), stably."""
    x = as_tensor(x) if dtype is None else as_tensor(x).astype(dtype)
    return _nn.log_softmax(x, _dim(axis, dim, -1))


# ---- losses -------------------------------------------------------------------------------------
def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _labels(target, logits: Tensor, name: str):
    """Integer class labels as a backend array of shape logits.shape without the class axis."""
    if isinstance(target, Tensor):
        if target._backend is not logits._backend:
            raise ShapeError(f"{name}: target is on {target.device}, input on {logits.device}")
        labels = target._data
    else:
        labels = logits._backend.asarray(np.asarray(target))
    if labels.dtype.kind not in "iu":
        raise DtypeError(f"{name}: class-index targets must be integers, got {labels.dtype}")
    expected = logits.shape[:1] + logits.shape[2:]
    if tuple(labels.shape) != expected:
        raise ShapeError(f"{name}: input of shape {logits.shape} needs a target of shape {expected}, "
                         f"got {tuple(labels.shape)}")
    return labels


def _class_last(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N*d1*..., C); (N, C) is unchanged."""
    if x.ndim == 2:
        return x
    return x.transpose(0, *range(2, x.ndim), 1).reshape(-1, x.shape[1])


def _nll(logp: Tensor, target, weight, ignore_index: int, reduction: str, label_smoothing: float,
         name: str) -> Tensor:
    """The shared core of nll_loss and cross_entropy on log-probabilities `logp` (class axis 1).

    The target distribution (one-hot, smoothed, weighted, ignored rows zeroed, divided by the mean's
    denominator) is built on raw arrays as a constant, so the loss itself is two ops: a product and a
    sum."""
    if logp.ndim == 1:  # an unbatched (C,) input, as torch accepts
        return _nll(logp.unsqueeze(0), _unbatched(target), weight, ignore_index, reduction, label_smoothing,
                    name).reshape(())
    if logp.ndim < 2:
        raise ShapeError(f"{name}: input must have a class axis, got shape {logp.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    n_classes = logp.shape[1]
    xp = logp._backend.xp
    w = None
    if weight is not None:
        w = as_tensor(weight, logp)._data
        if w.shape != (n_classes,):
            raise ShapeError(f"{name}: weight must have shape ({n_classes},), got {tuple(w.shape)}")
    if _target_kind(target) == "f":
        return _soft_targets(logp, as_tensor(target, logp), w, reduction, label_smoothing, name)
    labels = _labels(target, logp, name).reshape(-1)
    valid = labels != ignore_index
    safe = xp.where(valid, labels, 0)
    if bool(((safe < 0) | (safe >= n_classes)).any()):
        bad = labels[valid & ((labels < 0) | (labels >= n_classes))]
        raise ShapeError(f"{name}: target {int(bad[0])} is out of range for {n_classes} classes")
    q = ((xp.arange(n_classes).reshape(1, -1) == safe.reshape(-1, 1)) & valid.reshape(-1, 1)).astype(logp.dtype)
    if w is not None:
        q *= w
    denom = q.sum() if reduction == "mean" else None
    if label_smoothing:
        smooth = valid.reshape(-1, 1).astype(logp.dtype) * (label_smoothing / n_classes)
        q = q * (1.0 - label_smoothing) + (smooth if w is None else smooth * w)
    return _weighted_sum(_class_last(logp), q, denom, reduction, logp.shape[:1] + logp.shape[2:])


def _weighted_sum(flat: Tensor, q, denom, reduction: str, row_shape: tuple) -> Tensor:
    """-sum(flat * q) per row ('none') or in total ('sum'; 'mean' divides by denom, folded into q)."""
    if reduction == "none":
        return (flat * Tensor._wrap(-q, flat._backend)).sum(axis=1).reshape(row_shape)
    q = -q / denom if reduction == "mean" else -q
    return (flat * Tensor._wrap(q.astype(flat.dtype, copy=False), flat._backend)).sum()


def _target_kind(target) -> str:
    """The dtype kind of a target: "f" means class probabilities, "i"/"u" class indices."""
    return target.dtype.kind if isinstance(target, Tensor) else np.asarray(target).dtype.kind


def _unbatched(target):
    if isinstance(target, Tensor):
        return target.reshape(1, *target.shape)
    return np.asarray(target).reshape(1, *np.shape(target))


def _soft_targets(logp, target, w, reduction, label_smoothing, name):
    """Class-probability targets (same shape as the input), as torch's cross_entropy accepts."""
    if target.shape != logp.shape:
        raise ShapeError(f"{name}: probability targets must match the input's shape {logp.shape}, "
                         f"got {target.shape}")
    n_classes = logp.shape[1]
    q = _class_last(target.detach())._data
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / n_classes
    if w is not None:
        q = q * w
    denom = q.shape[0] if reduction == "mean" else None
    return _weighted_sum(_class_last(logp), q, denom, reduction, logp.shape[:1] + logp.shape[2:])


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0, *, axis: int = 1) -> Tensor:
    """Softmax cross-entropy of logits (N, C, ...) and integer labels (N, ...) or class probabilities.

    The mean is over non-ignored targets (weighted by `weight[label]` when given), as in torch;
    `size_average`/`reduce` are torch's deprecated arguments, accepted and unused."""
    input = as_tensor(input)
    if axis not in (1, -input.ndim + 1):
        input = input.swapaxes(1, axis)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if (weight is None and not label_smoothing and input.ndim == 2 and reduction in ("mean", "sum", "none")
            and (input._backend.is_gpu or input.size >= _FUSED_XENT_MIN) and _target_kind(target) in "iu"):
        return _fused.softmax_cross_entropy(input, target, reduction, ignore_index)
    return _nll(log_softmax(input, 1 if input.ndim > 1 else 0), target, weight, ignore_index, reduction,
                label_smoothing, "cross_entropy")


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C, ...) at integer labels (N, ...)."""
    return _nll(as_tensor(input), target, weight, ignore_index, reduction, 0.0, "nll_loss")


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """Mean squared error (broadcasting as torch does)."""
    input = as_tensor(input)
    diff = input - as_tensor(target, input)
    return _reduce(diff * diff, reduction, "mse_loss")


# ---- layers as functions ------------------------------------------------------------------------
def linear(input, weight, bias=None) -> Tensor:
    """input @ weight.T + bias with weight of shape (out_features, in_features)."""
    input = as_tensor(input)
    if weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: input of shape {input.shape} does not match weight of shape "
                         f"{weight.shape} (out_features, in_features)")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ShapeError(f"linear: bias of shape {bias.shape} does not match {weight.shape[0]} out_features")
    return _nn.linear(input, weight, bias)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation, as torch) of NCHW input with OIHW weight, via im2col + matmul.

    `padding` may be an int, a pair, "valid" or "same" (stride 1)."""
    input = as_tensor(input)
    _check_4d(input, "conv2d")
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    if c != cg * groups or o % groups:
        raise ShapeError(f"conv2d: input with {c} channels, weight of shape {weight.shape} (OIHW) and "
                         f"groups={groups} do not match (need C = I * groups and O divisible by groups)")
    stride, dilation = _pair(stride, "conv2d", "stride"), _pair(dilation, "conv2d", "dilation")
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        if stride != (1, 1):
            raise ValueError("conv2d: padding='same' needs stride 1")
        total = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
        if total[0] % 2 or total[1] % 2:
            input = input.pad(((0, 0), (0, 0), (total[0] // 2, total[0] - total[0] // 2),
                               (total[1] // 2, total[1] - total[1] // 2)))
            n, c, h, w = input.shape
            padding = (0, 0)
        else:
            padding = (total[0] // 2, total[1] // 2)
    else:
        padding = _pair(padding, "conv2d", "padding")
    ho = _nn.out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _nn.out_size(w, kw, stride[1], padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ShapeError(f"conv2d: kernel {(kh, kw)} (dilation {dilation}) is larger than the padded input "
                         f"{(h + 2 * padding[0], w + 2 * padding[1])}")
    cols = _nn.im2col(input, (kh, kw), stride, padding, dilation)  # (N, C*kh*kw, Ho*Wo)
    if groups == 1:  # (N, O, Ho*Wo): NCHW without a transpose
        out = _nn.conv_matmul(weight.reshape(o, -1), cols, None if bias is None else bias.reshape(o, 1))
    else:
        out = _nn.conv_matmul(weight.reshape(groups, o // groups, -1), cols.reshape(n, groups, -1, ho * wo),
                              None if bias is None else bias.reshape(groups, o // groups, 1))
    return out.reshape(n, o, ho, wo)


def _pool_args(name, kernel_size, stride, padding, dilation=1):
    kernel = _pair(kernel_size, name, "kernel_size")
    stride = kernel if stride is None or stride == () else _pair(stride, name, "stride")
    padding = _pair(padding, name, "padding")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding, _pair(dilation, name, "dilation")


def _as_4d(x, name):
    """Accept (C, H, W) as torch does, by adding a batch axis; returns (x, squeeze_back)."""
    x = as_tensor(x)
    if x.ndim == 3:
        return x.unsqueeze(0), True
    _check_4d(x, name)
    return x, False


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor:
    """Max over windows (stride defaults to kernel_size); the gradient goes to each window's maximum."""
    if ceil_mode or return_indices:
        raise NotImplementedError("max_pool2d: ceil_mode and return_indices are not supported")
    x, squeeze = _as_4d(input, "max_pool2d")
    out = _nn.max_pool2d(x, *_pool_args("max_pool2d", kernel_size, stride, padding, dilation))
    return out[0] if squeeze else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """Mean over windows (stride defaults to kernel_size; zero padding counted, as torch's default)."""
    if ceil_mode:
        raise NotImplementedError("avg_pool2d: ceil_mode is not supported")
    x, squeeze = _as_4d(input, "avg_pool2d")
    kernel, stride, padding, dilation = _pool_args("avg_pool2d", kernel_size, stride, padding)
    n, c, h, w = x.shape
    ho = _nn.out_size(h, kernel[0], stride[0], padding[0], 1)
    wo = _nn.out_size(w, kernel[1], stride[1], padding[1], 1)
    cols = _nn.im2col(x.reshape(n * c, 1, h, w), kernel, stride, padding, dilation)  # (N*C, K, Ho*Wo)
    total = cols.sum(axis=1).reshape(n, c, ho, wo)
    if divisor_override:
        out = total / divisor_override
    elif count_include_pad or padding == (0, 0):
        out = total / (kernel[0] * kernel[1])
    else:
        ones = Tensor._wrap(x._backend.xp.ones((1, 1, h, w), dtype=x.dtype), x._backend)
        counts = _nn.im2col(ones, kernel, stride, padding, dilation).sum(axis=1).reshape(1, 1, ho, wo)
        out = total / counts
    return out[0] if squeeze else out


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing `normalized_shape` dims (biased variance), then scale and shift.

    Runs the fused kernels of gpuad/ops/fused.py: measured 2.4x faster than the composed form for
    (64, 256) and 1.7x for (512, 1024), forward + backward on the CPU."""
    input = as_tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if input.shape[input.ndim - len(shape):] != shape:
        raise ShapeError(f"layer_norm: input of shape {input.shape} does not end with normalized_shape {shape}")
    return _fused.layer_norm(input, weight, bias, eps, shape)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize per channel (axis 1) with batch statistics (training, which also updates the running
    ones in place with the unbiased variance) or with the running statistics (eval)."""
    input = as_tensor(input)
    if input.ndim < 2:
        raise ShapeError(f"batch_norm: expected input of shape (N, C, ...), got {input.shape}")
    axes = (0,) + tuple(range(2, input.ndim))
    shape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    if training:
        count = input.size // input.shape[1]
        if count < 2:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input "
                             f"of shape {input.shape}")
        mean = input.mean(axis=axes, keepdims=True)
        centered = input - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        if running_mean is not None:
            with no_grad():
                running_mean.copy_(running_mean * (1 - momentum) + mean.reshape(-1) * momentum)
                running_var.copy_(running_var * (1 - momentum) + var.reshape(-1) * (momentum * count / (count - 1)))
    else:
        if running_mean is None:
            raise ValueError("batch_norm: running statistics are needed when training=False")
        centered = input - running_mean.reshape(shape)
        var = running_var.reshape(shape)
    out = centered * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    return out if bias is None else out + bias.reshape(shape)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero elements with probability p and scale the rest by 1/(1-p); identity when not training."""
    input = as_tensor(input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = input._backend.rand(input.shape, input.dtype) >= p
    mask = Tensor._wrap(keep.astype(input.dtype) * (1.0 / (1.0 - p)), input._backend)
    return input * mask


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of `weight` (num_embeddings, dim) at integer indices; no gradient reaches padding_idx's row."""
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: max_norm, scale_grad_by_freq and sparse are not supported")
    idx = input._data if isinstance(input, Tensor) else weight._backend.asarray(np.asarray(input))
    if idx.dtype.kind not in "iu":
        raise DtypeError(f"embedding: indices must be integers, got {idx.dtype}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= weight.shape[0]):
        raise ShapeError(f"embedding: index out of range for {weight.shape[0]} embeddings "
                         f"(min {int(idx.min())}, max {int(idx.max())})")
    out = weight[idx]
    if padding_idx is not None:
        keep = Tensor._wrap((idx != padding_idx % weight.shape[0])[..., None], weight._backend)
        out = where(keep, out, out.detach())
    return out


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False) -> Tensor:
    """softmax(q @ k^T * scale + mask) @ v over the last two axes; scale defaults to 1/sqrt(d).

    A boolean `attn_mask` marks positions that take part (True); a float one is added to the scores.
    `is_causal` lets position i attend to positions <= i (the top-left aligned triangle, as torch)."""
    q, k, v = as_tensor(query), as_tensor(key), as_tensor(value)
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: query {q.shape}, key {k.shape} and value {v.shape} "
                         "do not match (need q[-1] == k[-1] and k[-2] == v[-2])")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.mT) * scale
    xp = q._backend.xp
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: give either attn_mask or is_causal, not both")
        lq, lk = q.shape[-2], k.shape[-2]
        attn_mask = Tensor._wrap(xp.tril(xp.ones((lq, lk), dtype=bool)), q._backend)
    if attn_mask is not None:
        attn_mask = as_tensor(attn_mask, scores)
        if attn_mask.dtype.kind == "b":
            scores = where(attn_mask, scores, -math.inf)
        else:
            scores = scores + attn_mask
    weights = _nn.softmax(scores, -1)
    if dropout_p:
        weights = dropout(weights, dropout_p)
    return weights @ v

