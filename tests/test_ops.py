"""Every op of the table in tests/opinfo.py: forward vs NumPy (float64 and float32), VJP and JVP vs
central finite differences in float64, JVP/VJP consistency, and second order through create_graph."""
from __future__ import annotations

import numpy as np
import pytest
from opinfo import NONDIFF, OPS, sample_inputs

import gpuad as ga
from gpuad.autograd import grad as autograd_grad

CASES = [pytest.param(info, sample, id=f"{info.name}-{i}") for info in OPS for i, sample in enumerate(info.samples)]
GRAD_CASES = [c for c in CASES if c.values[0].grad]
EPS = 1e-6


def _rng(request) -> np.random.Generator:
    return np.random.default_rng(abs(hash(request.node.name)) % 2**32)


def _run(info, sample, arrays, requires_grad=False):
    tensors = [ga.tensor(a, requires_grad=requires_grad) for a in arrays]
    return tensors, info.op(*tensors, **sample.kwargs)


def _numeric_grad(scalar_fn, arrays, i):
    """d scalar_fn / d arrays[i] by central differences."""
    x = arrays[i]
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        shifted = []
        for sign in (1, -1):
            xs = [a.copy() for a in arrays]
            xs[i][idx] += sign * EPS
            shifted.append(scalar_fn(xs))
        out[idx] = (shifted[0] - shifted[1]) / (2 * EPS)
    return out


@pytest.mark.parametrize("info,sample", CASES)
def test_forward_matches_numpy(info, sample, request):
    arrays = sample_inputs(info, sample, _rng(request))
    _, out = _run(info, sample, arrays)
    expected = np.asarray(info.ref(*arrays, **sample.kwargs))
    assert out.shape == expected.shape
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("info,sample", CASES)
def test_forward_float32(info, sample, request):
    arrays = sample_inputs(info, sample, _rng(request), dtype=np.float32)
    _, out = _run(info, sample, arrays)
    expected = np.asarray(info.ref(*[a.astype(np.float64) for a in arrays], **sample.kwargs))
    assert out.dtype == np.float32, f"{info.name} promoted float32 to {out.dtype}"
    np.testing.assert_allclose(out.numpy(), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("info,sample", GRAD_CASES)
def test_vjp_matches_finite_differences(info, sample, request):
    rng = _rng(request)
    arrays = sample_inputs(info, sample, rng)
    tensors, out = _run(info, sample, arrays, requires_grad=True)
    u = rng.standard_normal(out.shape)
    (out * ga.tensor(u)).sum().backward()

    def loss(xs):
        return float(np.sum(info.op(*[ga.tensor(x) for x in xs], **sample.kwargs).numpy() * u))

    for i, t in enumerate(tensors):
        expected = _numeric_grad(loss, arrays, i)
        got = np.zeros_like(arrays[i]) if t.grad is None else t.grad.numpy()
        assert got.shape == arrays[i].shape and t.grad is None or t.grad.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=f"{info.name}: input {i}")


@pytest.mark.parametrize("info,sample", GRAD_CASES)
def test_jvp_matches_finite_differences_and_vjp(info, sample, request):
    rng = _rng(request)
    arrays = sample_inputs(info, sample, rng)
    tangents = [rng.standard_normal(a.shape) for a in arrays]
    out, tangent_out = ga.jvp(lambda *xs: info.op(*xs, **sample.kwargs), [ga.tensor(a) for a in arrays],
                              [ga.tensor(t) for t in tangents])
    plus = info.op(*[ga.tensor(a + EPS * t) for a, t in zip(arrays, tangents)], **sample.kwargs).numpy()
    minus = info.op(*[ga.tensor(a - EPS * t) for a, t in zip(arrays, tangents)], **sample.kwargs).numpy()
    assert tangent_out.shape == out.shape
    np.testing.assert_allclose(tangent_out.numpy(), (plus - minus) / (2 * EPS), rtol=1e-5, atol=1e-6)
    # <u, J v> == <J^T u, v>: forward and reverse mode agree exactly (up to rounding)
    tensors, out2 = _run(info, sample, arrays, requires_grad=True)
    u = rng.standard_normal(out2.shape)
    grads = autograd_grad(out2, tensors, grad_outputs=ga.tensor(u))
    lhs = float(np.sum(u * tangent_out.numpy()))
    rhs = sum(float(np.sum(g.numpy() * t)) for g, t in zip(grads, tangents) if g is not None)
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-10)


@pytest.mark.parametrize("info,sample", [c for c in GRAD_CASES if c.values[0].second_order])
def test_second_order_through_create_graph(info, sample, request):
    rng = _rng(request)
    arrays = sample_inputs(info, sample, rng)
    tensors0, out0 = _run(info, sample, arrays)
    u = rng.standard_normal(out0.shape)
    ws = [rng.standard_normal(a.shape) for a in arrays]

    def grad_dot_w(xs, create_graph):
        tensors = [ga.tensor(x, requires_grad=True) for x in xs]
        loss = (info.op(*tensors, **sample.kwargs) * ga.tensor(u)).sum()
        grads = autograd_grad(loss, tensors, create_graph=create_graph)
        total = ga.tensor(0.0, dtype=ga.float64)
        for g, w in zip(grads, ws):
            if g is not None:
                total = total + (g * ga.tensor(w)).sum()
        return tensors, total

    tensors, total = grad_dot_w(arrays, create_graph=True)
    if total.grad_fn is None:  # linear op: the gradient does not depend on the inputs
        second = [None] * len(tensors)
    else:
        second = autograd_grad(total, tensors)
    for i, got in enumerate(second):
        expected = _numeric_grad(lambda xs: grad_dot_w(xs, False)[1].item(), arrays, i)
        got = np.zeros_like(arrays[i]) if got is None else got.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"{info.name}: input {i}")


@pytest.mark.parametrize("name,op,ref", NONDIFF, ids=[n for n, _, _ in NONDIFF])
def test_nondifferentiable_ops(name, op, ref):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    a[0, 0] = b[0, 0]
    ta, tb = ga.tensor(a, requires_grad=True), ga.tensor(b, requires_grad=True)
    out = op(ta, tb)
    np.testing.assert_array_equal(out.numpy(), ref(a, b))
    assert not out.requires_grad and out.grad_fn is None
    assert out.dtype.kind in "bi"
