"""The Numba window kernels of gpuad/backends/cpu_kernels.py against the NumPy formulations in
gpuad/ops/nn.py (bit for bit: same sums in the same order), where each applies and where it declines;
conv2d / max_pool2d through them in float64 gradcheck (both modes, second order); the fused conv matmul."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import gpuad as ga
from gpuad.backends import cpu, cpu_kernels
from gpuad.backends.cuda_kernels import CUDAKernels
from gpuad.nn import functional as F
from gpuad.ops import nn as ops_nn

pytestmark = pytest.mark.skipif(cpu_kernels.numba is None, reason="the window kernels need Numba")
RNG = np.random.default_rng(0)
XP = cpu.xp  # NumPy plus the backend's scatter_add


def same_width_cases():
    """(shape, kernel, padding, dilation) of stride-1 windows whose output is as wide as the input."""
    for (h, w), (kh, kw), ph, dh, dw in itertools.product([(7, 6), (2, 3), (5, 9), (1, 4)],
                                                          [(3, 3), (1, 1), (3, 1), (5, 3), (2, 5), (1, 3)],
                                                          [0, 1, 2], [1, 2], [1, 2]):
        if dw * (kw - 1) % 2:
            continue
        padding, dilation = (ph, dw * (kw - 1) // 2), (dh, dw)
        if ops_nn.out_size(h, kh, 1, ph, dh) >= 1:
            yield (2, 3, h, w), (kh, kw), padding, dilation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_and_col2im_kernels_equal_the_numpy_formulation(dtype):
    count = 0
    for shape, kernel, padding, dilation in same_width_cases():
        x = RNG.standard_normal(shape).astype(dtype)
        out_hw = ops_nn._out_hw(shape, kernel, (1, 1), padding, dilation)
        patches = cpu_kernels.im2col(x, kernel, (1, 1), padding, dilation, out_hw)
        assert patches is not None and patches.dtype == dtype
        np.testing.assert_array_equal(patches, ops_nn._patches(np, x, kernel, (1, 1), padding, dilation))
        p = RNG.standard_normal(patches.shape).astype(dtype)
        folded = cpu_kernels.col2im(p, shape, kernel, (1, 1), padding, dilation)
        assert folded.flags.c_contiguous
        np.testing.assert_array_equal(folded, ops_nn._fold(np, p, shape, kernel, (1, 1), padding, dilation))
        count += 1
    assert count > 50


def test_im2col_kernel_reads_non_contiguous_input():
    x = RNG.standard_normal((3, 2, 6, 5)).transpose(1, 0, 2, 3)
    patches = cpu_kernels.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), (6, 5))
    np.testing.assert_array_equal(patches, ops_nn._patches(np, x, (3, 3), (1, 1), (1, 1), (1, 1)))


@pytest.mark.parametrize("kernel,stride,padding,dilation,dtype", [
    ((3, 3), (2, 2), (1, 1), (1, 1), np.float32),  # strided
    ((3, 3), (1, 1), (0, 0), (1, 1), np.float32),  # narrower output ("valid")
    ((3, 3), (1, 2), (1, 1), (1, 1), np.float64),
    ((3, 3), (1, 1), (1, 1), (1, 1), np.float16),
    ((3, 3), (1, 1), (1, 1), (1, 1), np.int32),
])
def test_window_kernels_decline_what_they_do_not_cover(kernel, stride, padding, dilation, dtype):
    x = np.ones((1, 2, 6, 6), dtype)
    out_hw = ops_nn._out_hw(x.shape, kernel, stride, padding, dilation)
    assert cpu_kernels.im2col(x, kernel, stride, padding, dilation, out_hw) is None
    p = np.ones((1, 2, *kernel, *out_hw), dtype)
    assert cpu_kernels.col2im(p, x.shape, kernel, stride, padding, dilation) is None


@pytest.mark.parametrize("shape,stride,dilation", [
    ((2, 3, 8, 6), (2, 2), (1, 1)), ((2, 3, 7, 6), (2, 2), (1, 1)), ((2, 3, 7, 6), (1, 1), (1, 1)),
    ((1, 2, 9, 8), (2, 3), (2, 1)), ((1, 1, 2, 2), (2, 2), (1, 1)), ((2, 2, 5, 7), (3, 1), (1, 3)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_argmax_and_scatter_kernels_equal_the_numpy_formulation(shape, stride, dilation, dtype):
    x = np.round(RNG.standard_normal(shape) * 2).astype(dtype)  # many ties: the first maximum wins
    out_hw = ops_nn._out_hw(shape, (2, 2), stride, (0, 0), dilation)
    idx = cpu_kernels.pool_argmax(x, (2, 2), stride, (0, 0), dilation, out_hw)
    np.testing.assert_array_equal(idx, ops_nn._argmax(np, x, (2, 2), stride, (0, 0), dilation))
    g = RNG.standard_normal(idx.shape).astype(dtype)
    overlap = stride[0] < dilation[0] + 1 or stride[1] < dilation[1] + 1
    scattered = cpu_kernels.pool_scatter(g, idx, shape)
    np.testing.assert_array_equal(scattered, ops_nn._scatter_indexed(XP, g, idx, shape, overlap))


def test_pool_argmax_kernel_declines_other_windows():
    x = np.ones((1, 1, 6, 6), np.float32)
    assert cpu_kernels.pool_argmax(x, (3, 3), (2, 2), (0, 0), (1, 1), (2, 2)) is None
    assert cpu_kernels.pool_argmax(x, (2, 2), (2, 2), (1, 1), (1, 1), (4, 4)) is None
    assert cpu_kernels.pool_argmax(x.astype(np.float16), (2, 2), (2, 2), (0, 0), (1, 1), (3, 3)) is None
    assert cpu_kernels.pool_scatter(np.ones(4, np.float16), np.arange(4), (4,)) is None


@pytest.mark.parametrize("kernel", [(2, 2), (3, 3)])
def test_max_pool2d_propagates_nan_as_torch(kernel):
    """A window with a NaN gives NaN and its gradient goes to the last NaN (torch's CPU kernel)."""
    x = np.arange(2 * 6 * 6, dtype=np.float64).reshape(1, 2, 6, 6)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan  # first window: two NaNs, neither in its first position
    x[0, 1, 3, 3] = np.nan  # second channel: a NaN in the first position of a window
    xt = ga.tensor(x, requires_grad=True)
    out = F.max_pool2d(xt, kernel, 2)
    out.sum().backward()
    torch = pytest.importorskip("torch")
    xr = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.max_pool2d(xr, kernel, 2)
    ref.sum().backward()
    np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
    np.testing.assert_array_equal(xt.grad.numpy(), xr.grad.numpy())


def test_numpy_formulations_run_without_the_kernels(monkeypatch):
    """Without Numba the ops fall back to the NumPy formulations and give the same results."""
    x, w, b = RNG.standard_normal((2, 3, 7, 6)), RNG.standard_normal((4, 3, 3, 3)), RNG.standard_normal(4)

    def run():
        xt = ga.tensor(x, requires_grad=True)
        out = F.max_pool2d(F.conv2d(xt, ga.tensor(w), ga.tensor(b), padding=1), 2)
        out.backward(ga.ones(*out.shape, dtype=ga.float64))
        return out.numpy(), xt.grad.numpy()

    fast = run()
    monkeypatch.setattr(cpu_kernels, "numba", None)
    slow = run()
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-13, atol=1e-13)


def test_cuda_kernels_leave_the_windows_to_the_cupy_formulation():
    kernels = CUDAKernels(cupy=None)
    assert kernels.im2col(None, (3, 3), (1, 1), (1, 1), (1, 1), (4, 4)) is None
    assert kernels.col2im(None, (1, 1, 4, 4), (3, 3), (1, 1), (1, 1), (1, 1)) is None
    assert kernels.pool_argmax(None, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2)) is None
    assert kernels.pool_scatter(None, None, (1, 1, 4, 4)) is None


# ---- through the ops: float64 gradcheck, both modes, second order -------------------------------------
@pytest.mark.parametrize("padding,dilation,groups", [(1, 1, 1), (2, 2, 1), ((1, 2), (1, 2), 2)])
def test_conv2d_with_kernels_gradcheck(padding, dilation, groups):
    x, w, b = (ga.tensor(RNG.standard_normal(s)) for s in [(2, 4, 5, 6), (4, 4 // groups, 3, 3), (4,)])
    assert ga.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=padding, dilation=dilation, groups=groups),
                        (x, w, b), check_second_order=True)


@pytest.mark.parametrize("stride,dilation", [(2, 1), (1, 1), ((2, 1), (1, 2))])
def test_max_pool2d_2x2_with_kernels_gradcheck(stride, dilation):
    x = ga.tensor(RNG.permutation(2 * 3 * 6 * 7).reshape(2, 3, 6, 7) * 0.1)  # distinct values: no ties
    assert ga.gradcheck(lambda x: F.max_pool2d(x, 2, stride, dilation=dilation), x, eps=1e-4,
                        check_second_order=True)


def test_conv_matmul_adds_the_bias_in_place_and_sums_its_gradient():
    w, cols, b = (ga.tensor(RNG.standard_normal(s), requires_grad=True) for s in [(3, 4), (2, 4, 5), (3, 1)])
    out = ops_nn.conv_matmul(w, cols, b)
    np.testing.assert_allclose(out.numpy(), w.numpy() @ cols.numpy() + b.numpy(), rtol=1e-13)
    g = RNG.standard_normal(out.shape)
    out.backward(ga.tensor(g))
    np.testing.assert_allclose(b.grad.numpy(), g.sum(axis=(0, 2))[:, None], rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), (g @ cols.numpy().transpose(0, 2, 1)).sum(0), rtol=1e-12)
    np.testing.assert_allclose(cols.grad.numpy(), w.numpy().T @ g, rtol=1e-12)
    assert ga.gradcheck(lambda w, c, b: ops_nn.conv_matmul(w, c, b), (w, cols, b), check_second_order=True)
    assert ga.gradcheck(lambda w, c: ops_nn.conv_matmul(w, c), (w, cols), check_second_order=True)
