"""xp.kernels on the CPU: NumPy reference implementations of the fused kernels of kernels/*.cu, and
Numba kernels for the sliding-window primitives of gpuad/ops/nn.py.

Same contract as gpuad/backends/cuda_kernels.py (the ops in gpuad/ops/fused.py call either through
`xp.kernels`): 2-D row-major inputs, float16/bfloat16 storage computed in float32, float64 in float64.
Tests compare the CUDA kernels against these, and these against float64 finite differences."""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the window kernels below then return None and gpuad/ops/nn.py's NumPy code runs
    numba = None


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


# ---- sliding windows (gpuad/ops/nn.py): Numba kernels where NumPy's strided views are slow ---------------
# Each returns None where it has no kernel (no Numba, a dtype other than float32/float64, a geometry it
# does not cover): the op then runs its NumPy formulation, which the tests compare these against. One
# thread each: they run between matmuls, whose OpenBLAS threads keep spinning for a while after. Loops
# index views from 0 (a possibly negative index costs a wraparound select that stops vectorization).
_WINDOW_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _njit(fn):
    return numba.njit(cache=True, error_model="numpy")(fn) if numba is not None else fn


def _compiled(a) -> bool:
    return numba is not None and a.dtype in _WINDOW_DTYPES


def _zeros(shape, dtype) -> np.ndarray:
    """Zeros written, not calloc'd: an accumulating kernel would fault twice on each fresh page of a
    calloc'd buffer (its read maps the shared zero page, its write then copies it)."""
    out = np.empty(shape, dtype)
    out.fill(0)
    return out


def _same_width(kernel, stride, padding, dilation) -> bool:
    """Stride 1 and an output row as wide as the input row (2 * pw == dw * (kw - 1), "same" padding):
    then the rows of one window offset are one contiguous run of the input plane, shifted."""
    return stride == (1, 1) and 2 * padding[1] == dilation[1] * (kernel[1] - 1)


@_njit
def _runs(h, w, ho, kh, kw, ph, pw, dh, dw):
    """Per window offset (i, j) of a stride-1 width-preserving window: the output positions [lo, hi)
    of an (Ho * W) plane whose input position k + shift lies in the (H * W) plane and in a row in range,
    and shift; and valid[j, k], whether output column k % W maps into the row (not into a neighbour)."""
    bounds = np.empty((kh, kw, 3), np.int64)
    for i in range(kh):
        r0 = i * dh - ph
        for j in range(kw):
            shift = r0 * w + j * dw - pw
            lo = max(max(0, -r0) * w, -shift)
            bounds[i, j, 0] = lo
            bounds[i, j, 1] = max(lo, min(min(ho, h - r0) * w, h * w - shift))
            bounds[i, j, 2] = shift
    valid = np.empty((kw, ho * w), np.bool_)
    for j in range(kw):
        for ow in range(w):
            inside = 0 <= ow + j * dw - pw < w
            for oh in range(ho):
                valid[j, oh * w + ow] = inside
    return bounds, valid


@_njit
def _im2col_runs(x, out, bounds, valid):
    """out[p, i, j] = plane p of x shifted by window offset (i, j), zero outside (see _runs)."""
    planes, kh, kw, n = out.shape
    for p in range(planes):
        for i in range(kh):
            for j in range(kw):
                lo, hi, shift = bounds[i, j, 0], bounds[i, j, 1], bounds[i, j, 2]
                o = out[p, i, j]
                o[:lo] = 0
                dst, src, ok = o[lo:hi], x[p, lo + shift:], valid[j, lo:]
                for k in range(hi - lo):
                    dst[k] = src[k] if ok[k] else 0
                o[hi:] = 0


@_njit
def _col2im_runs(cols, out, bounds, valid):
    """The transpose of _im2col_runs: each offset's run added back into its plane, offsets in the
    order of the NumPy fold (i, then j), so every sum is the same as its."""
    planes, kh, kw, n = cols.shape
    for p in range(planes):
        for i in range(kh):
            for j in range(kw):
                lo, hi, shift = bounds[i, j, 0], bounds[i, j, 1], bounds[i, j, 2]
                dst, src, ok = out[p, lo + shift:], cols[p, i, j, lo:hi], valid[j, lo:]
                for k in range(hi - lo):
                    if ok[k]:
                        dst[k] += src[k]


def im2col(x, kernel, stride, padding, dilation, out_hw):
    """(N, C, H, W) -> (N, C, kh, kw, Ho, Wo) windows, zero padded, as _patches in gpuad/ops/nn.py, for
    stride-1 width-preserving windows; None otherwise. One contiguous run per plane and offset instead
    of kh * kw strided copies of a padded copy: 0.18 vs 0.78 ms for (64, 16, 14, 14), 3x3, one thread."""
    if not _compiled(x) or not _same_width(kernel, stride, padding, dilation):
        return None
    (n, c, h, w), (kh, kw), (ho, wo) = x.shape, kernel, out_hw
    out = np.empty((n, c, kh, kw, ho, wo), x.dtype)
    bounds, valid = _runs(h, w, ho, kh, kw, *padding, *dilation)
    _im2col_runs(np.ascontiguousarray(x).reshape(n * c, h * w), out.reshape(n * c, kh, kw, ho * wo), bounds, valid)
    return out


def col2im(patches, shape, kernel, stride, padding, dilation):
    """The transpose of im2col: (N, C, kh, kw, Ho, Wo) summed into zeros of `shape` (N, C, H, W), as
    _fold in gpuad/ops/nn.py, for the windows im2col covers; None otherwise (0.27 vs 1.79 ms for the
    (64, 16, 14, 14) 3x3 case, bit for bit the same sums)."""
    if not _compiled(patches) or not _same_width(kernel, stride, padding, dilation):
        return None
    (n, c, h, w), (kh, kw), (ho, wo) = shape, kernel, patches.shape[4:]
    out = _zeros(shape, patches.dtype)
    bounds, valid = _runs(h, w, ho, kh, kw, *padding, *dilation)
    _col2im_runs(np.ascontiguousarray(patches).reshape(n * c, kh, kw, ho * wo), out.reshape(n * c, h * w),
                 bounds, valid)
    return out


@_njit
def _argmax_2x2(x, idx, sh, sw, dh, dw):
    """idx[p, oh, ow]: flat index into x of the first maximum of the unpadded 2x2 window, a NaN winning
    (the last one, as torch); three compare-and-selects per window, no branch to mispredict."""
    planes, h, w = x.shape
    _, ho, wo = idx.shape
    xf = x.ravel()
    for p in range(planes):
        out = idx[p]
        for oh in range(ho):
            top = p * h * w + oh * sh * w
            row = out[oh]
            for ow in range(wo):
                k = top + ow * sw
                best, arg = xf[k], k
                for q in (k + dw, k + dh * w, k + dh * w + dw):
                    v = xf[q]
                    take = (v > best) | (v != v)
                    best = v if take else best
                    arg = q if take else arg
                row[ow] = arg


def pool_argmax(x, kernel, stride, padding, dilation, out_hw):
    """Flat index into x's (N, C, H, W) layout of each window's first maximum (NaN wins, as torch), as
    _pool_argmax in gpuad/ops/nn.py, for unpadded 2x2 windows; None otherwise. One pass, no temporaries:
    0.63 vs 1.67 ms for (64, 16, 28, 28), one thread."""
    if not _compiled(x) or kernel != (2, 2) or padding != (0, 0):
        return None
    n, c, h, w = x.shape
    idx = np.empty((n, c, *out_hw), np.int64)
    _argmax_2x2(np.ascontiguousarray(x).reshape(n * c, h, w), idx.reshape(n * c, *out_hw), *stride, *dilation)
    return idx


@_njit
def _scatter_add(out, idx, g):
    for k in range(idx.size):
        out[idx[k]] += g[k]


def pool_scatter(g, idx, shape):
    """zeros(shape) with g added at the flat indices idx (repeated indices accumulate), as _scatter in
    gpuad/ops/nn.py; None for dtypes without a kernel."""
    if not _compiled(g):
        return None
    out = _zeros(shape, g.dtype)
    _scatter_add(out.reshape(-1), np.ascontiguousarray(idx).reshape(-1), np.ascontiguousarray(g).reshape(-1))
    return out
