"""Primitives for neural networks, forward / VJP / JVP side by side.

Convolution is composed: `im2col` (a linear primitive; its transpose is `col2im`) followed by one
matmul, so its gradients and forward-mode tangents come from those two rules plus matmul's. Max
pooling is an argmax followed by a gather by index; the gather's transpose is a scatter, so both are
linear primitives and double backward works. The gradient goes to each window's first maximum, as
in PyTorch. Softmax and log-softmax are fused primitives with one-line rules instead of compositions
with logsumexp (then seven ops): forward + backward measured 52 vs 184 us (log_softmax) and 49 vs 205 us
(softmax) for (64, 10), 1.19 vs 1.33 ms and 1.09 vs 5.40 ms for (512, 1000), one CPU thread.

Everything stays NCHW and C-contiguous: im2col gives (N, C*kh*kw, Ho*Wo), so a convolution is one
batched matmul (O, C*kh*kw) @ (N, C*kh*kw, Ho*Wo) -> (N, O, Ho*Wo), a free reshape of NCHW output;
pointwise kernels then read contiguous arrays (measured 16.4 vs 19.0 ms for the benchmark CNN's step
against a single (O, C*kh*kw) @ (C*kh*kw, N*Ho*Wo) matmul, whose CNHW output needs transposes).

The forwards of the window primitives first ask the backend for a compiled kernel (`xp.kernels`: on
the CPU, Numba kernels for im2col / col2im of stride-1 "same" windows, the 2x2 max-pool argmax and the
pool scatter); where it has none (it returns None: the GPU, other geometries, float16) the array
formulations below run. They are the reference the kernels are tested against.
"""
from __future__ import annotations

from ..autograd.function import Op, apply
from ..errors import ShapeError
from .common import as_tensor
from .reduce import sum as _sum


def out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a sliding window (floor mode), as PyTorch computes it."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _patches(xp, x, kernel, stride, padding, dilation):
    """(N, C, H, W) -> (N, C, kh, kw, Ho, Wo): every window position, one strided copy per offset."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="constant")
    out = xp.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = x[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
    return out


def _fold(xp, p, shape, kernel, stride, padding, dilation):
    """The transpose of _patches: (N, C, kh, kw, Ho, Wo) summed back into (N, C, H, W)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = shape
    ho, wo = p.shape[4], p.shape[5]
    out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=p.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw] += p[:, :, i, j]
    return out[:, :, ph:ph + h, pw:pw + w] if ph or pw else out


def _out_hw(shape, kernel, stride, padding, dilation) -> tuple[int, int]:
    return (out_size(shape[2], kernel[0], stride[0], padding[0], dilation[0]),
            out_size(shape[3], kernel[1], stride[1], padding[1], dilation[1]))


def _im2col(xp, x, kernel, stride, padding, dilation):
    """_patches, by the backend's compiled kernel where it has one (xp.kernels.im2col gives None elsewhere)."""
    p = xp.kernels.im2col(x, kernel, stride, padding, dilation, _out_hw(x.shape, kernel, stride, padding, dilation))
    if p is None:
        p = _patches(xp, x, kernel, stride, padding, dilation)
    n, c, kh, kw, ho, wo = p.shape
    return p.reshape(n, c * kh * kw, ho * wo)


def _col2im(xp, cols, shape, kernel, stride, padding, dilation):
    """_fold, by the backend's compiled kernel where it has one."""
    p = cols.reshape(shape[0], shape[1], *kernel, *_out_hw(shape, kernel, stride, padding, dilation))
    out = xp.kernels.col2im(p, shape, kernel, stride, padding, dilation)
    return out if out is not None else _fold(xp, p, shape, kernel, stride, padding, dilation)


def _window_params(c):
    return {"kernel": c.kernel, "stride": c.stride, "padding": c.padding, "dilation": c.dilation}


IM2COL = Op("im2col", _im2col,
            vjp=(lambda c, g: col2im(g, c.shapes[0], **_window_params(c)),),
            jvp=(lambda c, t: apply(IM2COL, (t,), _window_params(c)),))
COL2IM = Op("col2im", _col2im,
            vjp=(lambda c, g: apply(IM2COL, (g,), _window_params(c)),),
            jvp=(lambda c, t: col2im(t, c.shape, **_window_params(c)),))


def im2col(x, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """(N, C, H, W) -> (N, C*kh*kw, Ho*Wo): every receptive field as a column (zero padded)."""
    return apply(IM2COL, (x,), {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation})


def col2im(cols, shape, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """The transpose of im2col: columns summed back into an (N, C, H, W) image of `shape`."""
    return apply(COL2IM, (cols,), {"shape": tuple(shape), "kernel": kernel, "stride": stride,
                                   "padding": padding, "dilation": dilation})


# ---- linear: x @ w.T + b as one primitive (torch's addmm) ------------------------------------------
def _linear(xp, x, w, b=None):
    y = xp.matmul(x, w.T)
    if b is not None:
        y += b
    return y


def _rows(t, n: int):
    """t as a matrix of rows of length n (batch axes merged)."""
    return t if t.ndim == 2 else t.reshape(-1, n)


def _total(parts):
    """The sum of the tangent contributions that are not None (None if all are)."""
    out = None
    for part in parts:
        if part is not None:
            out = part if out is None else out + part
    return out


def _linear_jvp(c, tangents):
    tx, tw, tb = (list(tangents) + [None])[:3]
    return _total([linear(tx, c.w) if tx is not None else None, linear(c.x, tw) if tw is not None else None, tb])


LINEAR = Op("linear", _linear, args=("x", "w", "b"), save=("w", "x", ""),
            vjp=(lambda c, g: g @ c.w,
                 lambda c, g: _rows(g, c.shapes[1][0]).mT @ _rows(c.x, c.shapes[1][1]),
                 lambda c, g: _sum(_rows(g, c.shapes[1][0]), 0)),
            jvp=_linear_jvp)
LINEAR_NO_BIAS = Op("linear", _linear, args=("x", "w"), save=("w", "x"), vjp=LINEAR.vjp[:2], jvp=_linear_jvp)


def linear(x, w, b=None):
    """x @ w.T + b in one op: the weight gradient comes out as one (out, in) matmul, contiguous, and
    the bias gradient as one row sum, instead of transpose + matmul + broadcast add and their rules."""
    if b is None:
        return apply(LINEAR_NO_BIAS, (x, w), {})
    return apply(LINEAR, (x, w, b), {})


# ---- convolution's matmul: w @ cols + b as one primitive, as linear -----------------------------------
def _conv_matmul(xp, w, cols, b=None):
    y = xp.matmul(w, cols)
    if b is not None:
        y += b  # in place and broadcast: no second (N, O, P) array
    return y


def _conv_matmul_jvp(c, tangents):
    tw, tcols, tb = (list(tangents) + [None])[:3]
    return _total([tw @ c.cols if tw is not None else None, c.w @ tcols if tcols is not None else None, tb])


# the engine sums the weight's and bias's gradients over the axes they were broadcast along
CONV_MATMUL = Op("conv_matmul", _conv_matmul, args=("w", "cols", "b"), save=("cols", "w", ""),
                 vjp=(lambda c, g: g @ c.cols.mT, lambda c, g: c.w.mT @ g, lambda c, g: g), jvp=_conv_matmul_jvp)
CONV_MATMUL_NO_BIAS = Op("conv_matmul", _conv_matmul, args=("w", "cols"), save=("cols", "w"),
                         vjp=CONV_MATMUL.vjp[:2], jvp=_conv_matmul_jvp)


def conv_matmul(w, cols, b=None):
    """w @ cols + b for a convolution: w (O, K) or (G, O/G, K/G), cols (N, K, P) or (N, G, K/G, P) from
    im2col, b broadcast like w's rows with a trailing 1. One op instead of matmul + broadcast add: the
    bias is added in place and its gradient is one sum (10.0 vs 10.3 ms for the benchmark CNN's step,
    one thread)."""
    if b is None:
        return apply(CONV_MATMUL_NO_BIAS, (w, cols), {})
    return apply(CONV_MATMUL, (w, cols, b), {})


# ---- max pooling: argmax (not differentiable), then a gather by index whose transpose is a scatter --
def _pool_argmax(xp, x, kernel, stride, padding, dilation):
    """Flat index into x's (N, C, H, W) layout of each window's first maximum (a NaN wins, the last one,
    as in torch), shape (N, C, Ho, Wo): the backend's compiled kernel where it has one, else _argmax."""
    idx = xp.kernels.pool_argmax(x, kernel, stride, padding, dilation,
                                 _out_hw(x.shape, kernel, stride, padding, dilation))
    return idx if idx is not None else _argmax(xp, x, kernel, stride, padding, dilation)


def _argmax(xp, x, kernel, stride, padding, dilation):
    """_pool_argmax with array operations: one strided view per kernel offset against a running maximum,
    with the winning offset number kept in a small-integer array by arithmetic (masked writes are several
    times slower): no window copy."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    xt = x if not (ph or pw) else xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="constant",
                                         constant_values=-xp.inf)
    small = xp.int8 if kh * kw < 128 else xp.int32
    views = [xt[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
             for i in range(kh) for j in range(kw)]
    best = views[0].copy()
    arg = xp.zeros(best.shape, dtype=small)
    for k in range(1, len(views)):
        better = (views[k] > best) | (views[k] != views[k])  # best stays NaN from the first NaN on
        better = better.view(small) if small == xp.int8 else better.astype(small)
        xp.maximum(best, views[k], out=best)
        xp.maximum(arg, better * small(k), out=arg)  # k exceeds every earlier offset number
    offsets = xp.asarray([(i * dh - ph) * w + (j * dw - pw) for i in range(kh) for j in range(kw)])
    grid = (xp.arange(n * c).reshape(n, c, 1, 1) * (h * w) + xp.arange(ho).reshape(1, 1, ho, 1) * (sh * w)
            + xp.arange(wo).reshape(1, 1, 1, wo) * sw)
    return xp.take(offsets, arg) + grid


def _gather(xp, x, idx, overlap):
    """x's elements at flat (row-major) indices idx (N, C, Ho, Wo)."""
    return xp.take(x.reshape(-1), idx)


def _scatter(xp, g, idx, shape, overlap):
    """The transpose of _gather: g (N, C, Ho, Wo) added into zeros of `shape` (N, C, H, W) at idx; by the
    backend's compiled kernel where it has one, else with NumPy/CuPy indexing."""
    out = xp.kernels.pool_scatter(g, idx, shape)
    return out if out is not None else _scatter_indexed(xp, g, idx, shape, overlap)


def _scatter_indexed(xp, g, idx, shape, overlap):
    out = xp.zeros(shape, dtype=g.dtype)
    flat = out.reshape(-1)
    if overlap:
        xp.scatter_add(flat, idx.reshape(-1), g.reshape(-1))
    else:
        flat[idx.reshape(-1)] = g.reshape(-1)
    return out


POOL_ARGMAX = Op("max_pool2d_argmax", _pool_argmax)
POOL_GATHER = Op("max_pool2d_gather", _gather, args=("x", "idx"), save=("idx", ""),
                 vjp=(lambda c, g: _pool_scatter(g, c.idx, c.shapes[0], c.overlap), None),
                 jvp=(lambda c, t: apply(POOL_GATHER, (t, c.idx), {"overlap": c.overlap}), None))
POOL_SCATTER = Op("max_pool2d_scatter", _scatter, args=("g", "idx"), save=("idx", ""),
                  vjp=(lambda c, h: apply(POOL_GATHER, (h, c.idx), {"overlap": c.overlap}), None),
                  jvp=(lambda c, t: _pool_scatter(t, c.idx, c.shape, c.overlap), None))


def _pool_scatter(g, idx, shape, overlap):
    return apply(POOL_SCATTER, (g, idx), {"shape": shape, "overlap": overlap})


def max_pool2d(x, kernel, stride, padding=(0, 0), dilation=(1, 1)):
    """Max over each window of an (N, C, H, W) tensor; the gradient goes to the first maximum, as torch.

    Composed of an argmax (no gradient) and a gather by index, whose transpose is a scatter, so both
    modes and higher orders follow from two linear rules."""
    params = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    idx = apply(POOL_ARGMAX, (x,), params)
    overlap = stride[0] < dilation[0] * (kernel[0] - 1) + 1 or stride[1] < dilation[1] * (kernel[1] - 1) + 1
    return apply(POOL_GATHER, (x, idx), {"overlap": overlap})


# ---- softmax and log-softmax: fused, one pass forward and one-line rules -------------------------
def _softmax(xp, x, axis):
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _log_softmax(xp, x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    s -= xp.log(xp.exp(s).sum(axis=axis, keepdims=True))
    return s


def _softmax_rule(c, g):
    """Both modes: y * (g - sum(g * y)) (the softmax Jacobian is symmetric)."""
    return c.y * (g - _sum(g * c.y, c.axis, keepdims=True))


SOFTMAX = Op("softmax", _softmax, save="y", vjp=(_softmax_rule,), jvp=(_softmax_rule,))
LOG_SOFTMAX = Op("log_softmax", _log_softmax, save="y",
                 vjp=(lambda c, g: g - c.y.exp() * _sum(g, c.axis, keepdims=True),),
                 jvp=(lambda c, t: t - _sum(c.y.exp() * t, c.axis, keepdims=True),))


def _softmax_axis(x, axis, name):
    x = as_tensor(x)
    if x.ndim == 0:
        raise ShapeError(f"{name}: needs at least one dimension, got a 0-d tensor")
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"{name}: axis {axis} is out of range for shape {x.shape}")
    return x, axis % x.ndim


def softmax(x, axis: int = -1):
    """exp(x) / sum(exp(x)) along `axis`, computed stably (max subtracted)."""
    x, axis = _softmax_axis(x, axis, "softmax")
    return apply(SOFTMAX, (x,), {"axis": axis})


def log_softmax(x, axis: int = -1):
    """x - logsumexp(x) along `axis`, computed stably."""
    x, axis = _softmax_axis(x, axis, "log_softmax")
    return apply(LOG_SOFTMAX, (x,), {"axis": axis})
