"""xp.kernels on the CPU: NumPy reference implementations of the fused kernels of kernels/*.cu.

Same contract as gpuad/backends/cuda_kernels.py (the ops in gpuad/ops/fused.py call either through
`xp.kernels`): 2-D row-major inputs, float16/bfloat16 storage computed in float32, float64 in float64.
Tests compare the CUDA kernels against these, and these against float64 finite differences."""
from __future__ import annotations

import numpy as np


def acc_dtype(dtype) -> np.dtype:
    """The accumulation dtype of a storage dtype: float64 for float64, float32 otherwise."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _label_rows(labels: np.ndarray, cols: int, ignore_index: int):
    """(ignored rows, rows whose label is out of range): both give no gradient, the latter a NaN loss."""
    ignored = labels == ignore_index
    bad = ~ignored & ((labels < 0) | (labels >= cols))
    return ignored, bad


def softmax_xent_forward(x: np.ndarray, labels: np.ndarray, ignore_index: int) -> np.ndarray:
    """Per-row loss logsumexp(x[r]) - x[r, labels[r]] in the accumulation dtype (0 where ignored)."""
    a = x.astype(acc_dtype(x.dtype), copy=False)
    rows, cols = a.shape
    ignored, bad = _label_rows(labels, cols, ignore_index)
    m = a.max(axis=1, initial=-np.inf, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    lse = np.log(np.exp(a - m).sum(axis=1)) + m[:, 0]
    safe = np.where(ignored | bad, 0, labels)
    picked = a[np.arange(rows), safe] if cols else np.zeros(rows, a.dtype)
    loss = lse - picked
    loss[ignored] = 0
    loss[bad] = np.nan
    return loss


def softmax_xent_backward(x: np.ndarray, labels: np.ndarray, loss: np.ndarray, g: np.ndarray,
                          ignore_index: int) -> np.ndarray:
    """d loss / d x scaled per row by g: g[r] * (softmax(x[r]) - onehot(labels[r])), in x's dtype."""
    a = x.astype(acc_dtype(x.dtype), copy=False)
    rows, cols = a.shape
    ignored, bad = _label_rows(labels, cols, ignore_index)
    safe = np.where(ignored | bad, 0, labels)
    lse = loss + a[np.arange(rows), safe]  # recovered as the CUDA kernel does: no second reduction
    lse[bad] = np.nan
    d = np.exp(a - lse[:, None])
    d[np.arange(rows), safe] -= ~(ignored | bad)
    d *= np.where(ignored, 0, g)[:, None]
    return d.astype(x.dtype, copy=False)


def _row_stats(a: np.ndarray, eps: float):
    mean = a.mean(axis=1, keepdims=True)
    var = np.square(a - mean).mean(axis=1, keepdims=True)
    return mean, 1.0 / np.sqrt(var + eps)


def layer_norm_forward(x: np.ndarray, weight, bias, eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis; weight/bias may be None."""
    a = x.astype(acc_dtype(x.dtype), copy=False)
    mean, rstd = _row_stats(a, eps)
    y = (a - mean) * rstd
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y.astype(x.dtype, copy=False)


def layer_norm_backward(x: np.ndarray, weight, g: np.ndarray, eps: float, param_grads: bool):
    """(dx, dweight, dbias) of layer_norm_forward for the incoming gradient g; the last two are None
    unless `param_grads` (they are the same whether or not the forward had weight and bias)."""
    a = x.astype(acc_dtype(x.dtype), copy=False)
    ga = g.astype(a.dtype, copy=False)
    mean, rstd = _row_stats(a, eps)
    xhat = (a - mean) * rstd
    gw = ga * weight if weight is not None else ga
    dx = rstd * (gw - gw.mean(axis=1, keepdims=True) - xhat * (gw * xhat).mean(axis=1, keepdims=True))
    dx = dx.astype(x.dtype, copy=False)
    if not param_grads:
        return dx, None, None
    return dx, (ga * xhat).sum(axis=0).astype(x.dtype, copy=False), ga.sum(axis=0).astype(x.dtype, copy=False)


def adam_update(params, grads, exp_avgs, exp_avg_sqs, *, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, step: int, decoupled: bool) -> None:
    """Adam (decoupled=False) or AdamW (True) on lists of arrays, in place; same math as optim.cu."""
    bias_c1, bias_c2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        acc = acc_dtype(p.dtype)
        pa, ga = p.astype(acc), g.astype(acc)
        if decoupled:
            pa *= acc.type(1.0 - lr * weight_decay)
        elif weight_decay:
            ga += acc.type(weight_decay) * pa
        ma = acc.type(beta1) * m.astype(acc) + acc.type(1 - beta1) * ga
        va = acc.type(beta2) * v.astype(acc) + acc.type(1 - beta2) * ga * ga
        denom = np.sqrt(va) * acc.type(1.0 / np.sqrt(bias_c2)) + acc.type(eps)
        np.copyto(m, ma, casting="unsafe")
        np.copyto(v, va, casting="unsafe")
        np.copyto(p, pa - acc.type(lr / bias_c1) * ma / denom, casting="unsafe")


def sgd_update(params, grads, momentum_buffers, *, lr: float, momentum: float, weight_decay: float,
               nesterov: bool) -> None:
    """SGD with optional momentum (buffers start at zero) and Nesterov, in place; as optim.cu."""
    for i, (p, g) in enumerate(zip(params, grads)):
        acc = acc_dtype(p.dtype)
        pa = p.astype(acc)
        d = g.astype(acc)
        if weight_decay:
            d += acc.type(weight_decay) * pa
        if momentum:
            buf = momentum_buffers[i]
            b = acc.type(momentum) * buf.astype(acc) + d
            np.copyto(buf, b, casting="unsafe")
            d = d + acc.type(momentum) * b if nesterov else b
        np.copyto(p, pa - acc.type(lr) * d, casting="unsafe")


# ---- counter-based random numbers (kernels/random.cu): the same bits as the GPU's ----------------------
_U64 = (1 << 64) - 1


def _mix64(z):
    """SplitMix64's finalizer on uint64 arrays (wrapping arithmetic, as in CUDA)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def random_key(seed: int, draw: int) -> np.uint64:
    """The key of a backend's `draw`-th random call after seeding with `seed`."""
    mixed = _mix64(np.array([seed & _U64], np.uint64))[0]
    return _mix64(np.array([mixed ^ np.uint64(draw & _U64)], np.uint64))[0]


def _bits(key: np.uint64, positions: np.ndarray) -> np.ndarray:
    return _mix64(np.uint64(key) ^ _mix64(positions.astype(np.uint64)))


def _unit(bits: np.ndarray, dtype) -> np.ndarray:
    if np.dtype(dtype) == np.float32:
        return (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def uniform(shape, dtype, key: np.uint64) -> np.ndarray:
    """Uniform [0, 1) float32/float64 numbers of draw `key`, element i from position i."""
    n = int(np.prod(shape))
    return _unit(_bits(key, np.arange(n)), dtype).reshape(shape)


def normal(shape, dtype, key: np.uint64) -> np.ndarray:
    """Standard normal float32/float64 numbers (Box-Muller on positions 2i, 2i + 1) of draw `key`."""
    dtype = np.dtype(dtype)
    i = np.arange(int(np.prod(shape)))
    u1 = dtype.type(1) - _unit(_bits(key, 2 * i), dtype)
    u2 = _unit(_bits(key, 2 * i + 1), dtype)
    return (np.sqrt(dtype.type(-2) * np.log(u1)) * np.cos(dtype.type(2 * np.pi) * u2)).reshape(shape)


def integers(low: int, high: int, shape, key: np.uint64) -> np.ndarray:
    """int64 numbers in [low, high) of draw `key`: the high 64 bits of bits * (high - low)."""
    bits = _bits(key, np.arange(int(np.prod(shape))))
    span = high - low
    high_words = [(int(b) * span) >> 64 for b in bits]  # exact 128-bit products (a reference, not fast)
    return (low + np.array(high_words, np.int64)).reshape(shape)
