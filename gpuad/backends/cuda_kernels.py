"""xp.kernels on the GPU: the CUDA C kernels of kernels/*.cu (loaded with cupy.RawModule) and one
Numba CUDA kernel (the layer-norm weight/bias gradient, a column reduction that Numba states in a
few lines). Same contract as the NumPy reference in gpuad/backends/cpu_kernels.py.

Every launch goes on CuPy's current stream and returns at once: nothing here waits for the GPU."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import cuda  # the CUDA target (numba-cuda); the simulator when NUMBA_ENABLE_CUDASIM=1

from ..errors import DtypeError
from .cpu_kernels import acc_dtype

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"  # gpuad/kernels -> ../kernels in the repo
CHUNK = 4096  # elements per block of the multi-tensor updates (CHUNK in kernels/optim.cu)
_FLOATS = ("float32", "float64", "float16", "bfloat16")  # the dtypes the kernels are instantiated for


def kernel_source(name: str) -> str:
    """The CUDA source of kernels/<name>.cu with common.cuh inlined (NVRTC and CuPy's cache see it)."""
    common = (KERNEL_DIR / "common.cuh").read_text()
    return (KERNEL_DIR / f"{name}.cu").read_text().replace('#include "common.cuh"', common)


def _suffix(op: str, dtype) -> str:
    name = np.dtype(dtype).name
    if name not in _FLOATS:
        raise DtypeError(f"{op}: the CUDA kernel takes float16, bfloat16, float32 or float64, got {dtype}")
    return name


def _rows_launch(rows: int, cols: int) -> tuple[tuple, tuple]:
    """Grid and block of a one-block-per-row kernel: a warp multiple covering the row, at most 1024."""
    block = min(1024, max(32, 1 << max(5, math.ceil(math.log2(max(cols, 1) / 4)))))
    return (min(rows, 1 << 16),), (block,)


# ---- the Numba CUDA kernel: plain Python, jitted on first use (and by the PTX / simulator tests) ----
def layer_norm_param_grad(x, g, mean, rstd, zero, dweight, dbias, rows_per_block):
    """dweight[c] += sum_r g[r, c] * (x[r, c] - mean[r]) * rstd[r]; dbias[c] += sum_r g[r, c].

    Thread (blockIdx.x, threadIdx.x) owns column c and sums rows [blockIdx.y * rows_per_block, ...)
    in the accumulation type (that of `zero`), then adds its partial sums atomically."""
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if c >= x.shape[1]:
        return
    first = cuda.blockIdx.y * rows_per_block
    last = min(first + rows_per_block, x.shape[0])
    acc_w = zero
    acc_b = zero
    for r in range(first, last):
        gv = g[r, c] + zero
        acc_w += gv * ((x[r, c] + zero) - mean[r]) * rstd[r]
        acc_b += gv
    cuda.atomic.add(dweight, c, acc_w)
    cuda.atomic.add(dbias, c, acc_b)


NUMBA_KERNELS = {"layer_norm_param_grad": layer_norm_param_grad}
_numba_jitted: dict = {}


def numba_kernel(name: str):
    """The numba.cuda.jit dispatcher of NUMBA_KERNELS[name] (lazy signatures, compiled per dtype)."""
    kernel = _numba_jitted.get(name)
    if kernel is None:
        kernel = _numba_jitted[name] = cuda.jit(NUMBA_KERNELS[name])
    return kernel


def param_grad_launch(rows: int, cols: int, rows_per_block: int = 64) -> tuple[tuple, tuple]:
    """Grid and block of layer_norm_param_grad: 128 columns by `rows_per_block` rows per block."""
    return (math.ceil(cols / 128), math.ceil(rows / rows_per_block)), (128,)


class CUDAKernels:
    """The fused kernels on CuPy arrays; compiled modules are cached per device."""

    def __init__(self, cupy):
        self.cupy = cupy
        self._modules: dict = {}
        self._functions: dict = {}

    def _function(self, module: str, name: str):
        device = self.cupy.cuda.Device().id
        fn = self._functions.get((name, device))
        if fn is None:
            mod = self._modules.get((module, device))
            if mod is None:
                mod = self._modules[(module, device)] = self.cupy.RawModule(
                    code=kernel_source(module), options=("--std=c++14",))
            fn = self._functions[(name, device)] = mod.get_function(name)
        return fn

    def _contiguous(self, a):
        return a if a.flags.c_contiguous else self.cupy.ascontiguousarray(a)

    # ---- softmax cross-entropy ------------------------------------------------------------------
    def softmax_xent_forward(self, x, labels, ignore_index: int):
        """Per-row loss in the accumulation dtype (see kernels/softmax_xent.cu)."""
        cp = self.cupy
        suffix = _suffix("softmax_cross_entropy", x.dtype)
        x, labels = self._contiguous(x), self._contiguous(labels.astype(np.int64, copy=False))
        rows, cols = x.shape
        loss = cp.empty(rows, acc_dtype(x.dtype))
        if rows:
            grid, block = _rows_launch(rows, cols)
            self._function("softmax_xent", f"softmax_xent_fwd_{suffix}")(
                grid, block, (x, labels, loss, np.int32(rows), np.int32(cols), np.int64(ignore_index)))
        return loss

    def softmax_xent_backward(self, x, labels, loss, g, ignore_index: int):
        """g[r] * (softmax(x[r]) - onehot(labels[r])) in x's dtype, one pass over the logits."""
        cp = self.cupy
        suffix = _suffix("softmax_cross_entropy backward", x.dtype)
        acc = acc_dtype(x.dtype)
        x, labels = self._contiguous(x), self._contiguous(labels.astype(np.int64, copy=False))
        loss = self._contiguous(loss.astype(acc, copy=False))
        g = cp.ascontiguousarray(cp.broadcast_to(g.astype(acc, copy=False), loss.shape))
        rows, cols = x.shape
        dx = cp.empty_like(x)
        if rows and cols:
            grid, block = _rows_launch(rows, cols)
            self._function("softmax_xent", f"softmax_xent_bwd_{suffix}")(
                grid, block, (x, labels, loss, g, dx, np.int32(rows), np.int32(cols), np.int64(ignore_index)))
        return dx

    # ---- layer norm -----------------------------------------------------------------------------
    def layer_norm_forward(self, x, weight, bias, eps: float):
        """Layer norm over the last axis of 2-D x; weight/bias may be None."""
        cp = self.cupy
        suffix = _suffix("layer_norm", x.dtype)
        x = self._contiguous(x)
        rows, cols = x.shape
        y = cp.empty_like(x)
        if rows and cols:
            grid, block = _rows_launch(rows, cols)
            self._function("layer_norm", f"layer_norm_fwd_{suffix}")(
                grid, block, (x, self._param(weight, x.dtype), self._param(bias, x.dtype), y,
                              np.int32(rows), np.int32(cols), acc_dtype(x.dtype).type(eps)))
        return y

    def _param(self, p, dtype):
        """A weight/bias argument: the contiguous array in x's dtype, or a null pointer."""
        return np.uint64(0) if p is None else self._contiguous(p.astype(dtype, copy=False))

    def layer_norm_backward(self, x, weight, g, eps: float, param_grads: bool):
        """(dx, dweight, dbias): dx from kernels/layer_norm.cu, the others from the Numba kernel."""
        cp = self.cupy
        suffix = _suffix("layer_norm backward", x.dtype)
        acc = acc_dtype(x.dtype)
        x, g = self._contiguous(x), self._contiguous(g.astype(x.dtype, copy=False))
        rows, cols = x.shape
        dx = cp.empty_like(x)
        null = np.uint64(0)
        mean = cp.empty(rows, acc) if param_grads else null
        rstd = cp.empty(rows, acc) if param_grads else null
        if rows and cols:
            grid, block = _rows_launch(rows, cols)
            self._function("layer_norm", f"layer_norm_bwd_{suffix}")(
                grid, block, (x, self._param(weight, x.dtype), g, dx, mean, rstd, np.int32(rows),
                              np.int32(cols), acc.type(eps)))
        if not param_grads:
            return dx, None, None
        dweight, dbias = cp.zeros(cols, acc), cp.zeros(cols, acc)
        if rows and cols:
            self._numba_launch("layer_norm_param_grad", *param_grad_launch(rows, cols),
                               x, g, mean, rstd, acc.type(0), dweight, dbias, 64)
        return dx, dweight.astype(x.dtype, copy=False), dbias.astype(x.dtype, copy=False)

    def _numba_launch(self, name, grid, block, *args):
        """Launch a Numba kernel on CuPy's current stream without Numba's host sync on import."""
        ptr = self.cupy.cuda.get_current_stream().ptr
        stream = cuda.external_stream(ptr) if ptr else cuda.default_stream()
        args = [cuda.as_cuda_array(a, sync=False) if isinstance(a, self.cupy.ndarray) else a for a in args]
        with cuda.gpus[self.cupy.cuda.Device().id]:  # Numba's context on CuPy's current device
            numba_kernel(name)[grid, block, stream](*args)

    # ---- sliding windows: no CUDA kernels; on None gpuad/ops/nn.py runs its CuPy formulation -----------
    @staticmethod
    def _no_kernel(*args):
        return None

    im2col = col2im = pool_argmax = pool_scatter = _no_kernel

    # ---- counter-based random numbers (kernels/random.cu; NumPy twins in cpu_kernels) -----------------
    def _draw(self, kernel: str, shape, dtype, *args):
        out = self.cupy.empty(shape, dtype)
        n = out.size
        if n:
            self._function("random", kernel)(
                (min(math.ceil(n / 256), 1 << 16),), (256,), (out, np.int64(n), *args))
        return out

    def uniform(self, shape, dtype, key: np.uint64):
        """Uniform [0, 1) float32/float64 numbers of draw `key`."""
        return self._draw(f"uniform_{_suffix('rand', dtype)}", shape, dtype, np.uint64(key))

    def normal(self, shape, dtype, key: np.uint64):
        """Standard normal float32/float64 numbers of draw `key`."""
        return self._draw(f"normal_{_suffix('randn', dtype)}", shape, dtype, np.uint64(key))

    def integers(self, low: int, high: int, shape, key: np.uint64):
        """int64 numbers in [low, high) of draw `key`."""
        if high <= low:
            raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
        return self._draw("integers_int64", shape, np.int64, np.uint64(key), np.int64(low), np.uint64(high - low))

    # ---- multi-tensor optimizer updates -----------------------------------------------------------
    def _table(self, op: str, groups):
        """One device buffer: pointers (4 per tensor), sizes, and per block its tensor and chunk start."""
        n = len(groups)
        sizes = np.array([arrays[0].size for arrays in groups], np.int64)
        ptrs = np.zeros((n, 4), np.int64)
        for t, arrays in enumerate(groups):
            for k, a in enumerate(arrays):
                if a is None:
                    continue
                if not a.flags.c_contiguous:
                    raise ValueError(f"{op}: in-place update needs contiguous arrays, got strides {a.strides}")
                ptrs[t, k] = a.data.ptr
        nblocks = (sizes + CHUNK - 1) // CHUNK
        block_tensor = np.repeat(np.arange(n, dtype=np.int64), nblocks)
        starts = np.arange(int(nblocks.sum()), dtype=np.int64) - np.repeat(np.cumsum(nblocks) - nblocks, nblocks)
        host = np.concatenate([ptrs.ravel(), sizes, block_tensor, starts * CHUNK])
        dev = self.cupy.asarray(host)  # one host-to-device copy, staged through pinned memory
        nb = len(block_tensor)
        return (dev[:4 * n], dev[4 * n:5 * n], dev[5 * n:5 * n + nb], dev[5 * n + nb:]), nb

    def _grouped(self, *lists):
        """Tensors grouped by (param dtype, state dtype): one launch per group, usually one in all."""
        groups: dict = {}
        for arrays in zip(*lists):
            p, g = arrays[0], arrays[1]
            if p.size == 0:
                continue
            if g.dtype != p.dtype or not g.flags.c_contiguous:
                g = self.cupy.ascontiguousarray(g.astype(p.dtype, copy=False))
            states = {a.dtype for a in arrays[2:] if a is not None}
            if len(states) > 1:
                raise DtypeError(f"multi-tensor update: the optimizer states of a {p.dtype} parameter of shape "
                                 f"{p.shape} have different dtypes {sorted(map(str, states))}")
            state = states.pop() if states else p.dtype
            groups.setdefault((p.dtype, state), []).append((p, g, *arrays[2:]))
        return groups

    def adam_update(self, params, grads, exp_avgs, exp_avg_sqs, *, lr: float, beta1: float, beta2: float,
                    eps: float, weight_decay: float, step: int, decoupled: bool) -> None:
        """Adam/AdamW on lists of arrays in place: one kernel launch per dtype group."""
        for (pdt, sdt), group in self._grouped(params, grads, exp_avgs, exp_avg_sqs).items():
            suffix = _suffix("fused_adam_", pdt)
            if sdt != pdt:
                if sdt != np.float32:
                    raise DtypeError(f"fused_adam_: states of {pdt} parameters must be {pdt} or float32, "
                                     f"got {sdt}")
                suffix += "_float32"
            table, nb = self._table("fused_adam_", group)
            self._function("optim", f"adam_multi_{suffix}")(
                (nb,), (256,), (*table, np.float64(lr), np.float64(beta1), np.float64(beta2), np.float64(eps),
                                np.float64(weight_decay), np.float64(1 - beta1 ** step),
                                np.float64(1 - beta2 ** step), np.int32(bool(decoupled))))

    def sgd_update(self, params, grads, momentum_buffers, *, lr: float, momentum: float, weight_decay: float,
                   nesterov: bool) -> None:
        """SGD (momentum, Nesterov) on lists of arrays in place: one kernel launch per dtype."""
        bufs = momentum_buffers if momentum else [None] * len(params)
        for (pdt, bdt), group in self._grouped(params, grads, bufs).items():
            if bdt != pdt:
                raise DtypeError(f"fused_sgd_: momentum buffers of {pdt} parameters must be {pdt}, got {bdt}")
            table, nb = self._table("fused_sgd_", [(p, g, b, None) for p, g, b in group])
            self._function("optim", f"sgd_multi_{_suffix('fused_sgd_', pdt)}")(
                (nb,), (256,), (*table, np.float64(lr), np.float64(momentum), np.float64(weight_decay),
                                np.int32(bool(nesterov))))

