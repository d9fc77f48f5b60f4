"""Fused ops (gpuad/ops/fused.py) through the CPU's NumPy kernels: forward against independent NumPy
formulas, every derivative (reverse, forward, second order both ways) against float64 finite
differences, the first-order fused layer-norm path against the composed one, and the multi-tensor
optimizer updates against step-by-step NumPy versions of torch's formulas."""
from __future__ import annotations

import numpy as np
import pytest

import gpuad as ga
from gpuad.autograd import grad as autograd_grad
from gpuad.ops.fused import fused_adam_, fused_sgd_, layer_norm, softmax_cross_entropy

IGNORE = -100


def xent_ref(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row softmax cross-entropy in float64; 0 on ignored rows."""
    x = x.astype(np.float64)
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    out = lse - x[np.arange(len(x)), np.where(labels == IGNORE, 0, labels)]
    return np.where(labels == IGNORE, 0.0, out)


def ln_ref(x: np.ndarray, w=None, b=None, eps: float = 1e-5) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.mean(-1, keepdims=True)
    y = (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.fixture
def rng(request) -> np.random.Generator:
    return np.random.default_rng(abs(hash(request.node.name)) % 2**32)


# ---- softmax cross-entropy ----------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softmax_xent_forward_matches_numpy(rng, reduction):
    x = rng.standard_normal((6, 5)) * 3
    labels = np.array([0, 4, IGNORE, 2, 2, 1])
    out = softmax_cross_entropy(ga.tensor(x), labels, reduction=reduction)
    per_row = xent_ref(x, labels)
    expected = {"none": per_row, "sum": per_row.sum(), "mean": per_row.sum() / 5}[reduction]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_softmax_xent_gradient_is_softmax_minus_onehot(rng):
    x = rng.standard_normal((4, 7))
    labels = np.array([3, IGNORE, 0, 6])
    t = ga.tensor(x, requires_grad=True)
    softmax_cross_entropy(t, labels, reduction="mean").backward()
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    p[np.arange(4), np.where(labels == IGNORE, 0, labels)] -= 1
    p[labels == IGNORE] = 0
    np.testing.assert_allclose(t.grad.numpy(), p / 3, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_softmax_xent_derivatives_all_orders(rng, reduction):
    labels = ga.tensor(np.array([1, 0, IGNORE, 3]))
    x = ga.tensor(rng.standard_normal((4, 5)))
    assert ga.gradcheck(lambda z, y: softmax_cross_entropy(z, y, reduction=reduction), (x, labels),
                        check_second_order=True)


def test_softmax_xent_third_order_through_fused_grad(rng):
    """d/dx of <H(x) v, w> goes through the fused backward op's own rules (third derivative)."""
    labels = np.array([2, 0, 1])
    x0 = rng.standard_normal((3, 4))
    v, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))

    def hv_dot_w(xa, create_graph):
        x = ga.tensor(xa, requires_grad=True)
        (g,) = autograd_grad(softmax_cross_entropy(x, labels, reduction="sum"), x, create_graph=True)
        (h,) = autograd_grad((g * ga.tensor(v)).sum(), x, create_graph=True)
        return x, (h * ga.tensor(w)).sum()

    x, s = hv_dot_w(x0, True)
    (third,) = autograd_grad(s, x)
    eps, num = 1e-5, np.zeros_like(x0)
    for idx in np.ndindex(x0.shape):
        hi, lo = x0.copy(), x0.copy()
        hi[idx] += eps
        lo[idx] -= eps
        num[idx] = (hv_dot_w(hi, False)[1].item() - hv_dot_w(lo, False)[1].item()) / (2 * eps)
    np.testing.assert_allclose(third.numpy(), num, rtol=1e-5, atol=1e-7)


def test_softmax_xent_half_precision_accumulates_in_float32(rng):
    x = (rng.standard_normal((8, 300)) * 4).astype(np.float16)
    labels = rng.integers(0, 300, 8)
    t = ga.tensor(x, requires_grad=True)
    loss = softmax_cross_entropy(t, labels, reduction="none")
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.numpy(), xent_ref(x, labels), rtol=1e-5, atol=1e-5)
    loss.sum().backward()
    assert t.grad.dtype == np.float16
    p = np.exp(x.astype(np.float64) - xent_ref(x, labels)[:, None] - x[np.arange(8), labels][:, None])
    p[np.arange(8), labels] -= 1
    np.testing.assert_allclose(t.grad.numpy().astype(np.float64), p, atol=2e-3)


def test_softmax_xent_bad_label_gives_nan_and_bad_shapes_raise(rng):
    out = softmax_cross_entropy(ga.tensor(rng.standard_normal((2, 3))), [1, 7], reduction="none").numpy()
    assert np.isfinite(out[0]) and np.isnan(out[1])
    with pytest.raises(ga.ShapeError, match=r"softmax_cross_entropy.*\(2, 3\).*\(3,\)"):
        softmax_cross_entropy(ga.tensor(rng.standard_normal((2, 3))), [1, 2, 0])
    with pytest.raises(ga.ShapeError, match="labels must be integers"):
        softmax_cross_entropy(ga.tensor(rng.standard_normal((2, 3))), ga.tensor([0.0, 1.0]))


# ---- layer norm ---------------------------------------------------------------------------------------
AFFINE = [(False, False), (True, False), (True, True)]


@pytest.mark.parametrize("has_w,has_b", AFFINE)
def test_layer_norm_forward_matches_numpy(rng, has_w, has_b):
    x = rng.standard_normal((2, 3, 8)) * 2 + 1
    w = rng.standard_normal(8) if has_w else None
    b = rng.standard_normal(8) if has_b else None
    out = layer_norm(ga.tensor(x), None if w is None else ga.tensor(w), None if b is None else ga.tensor(b))
    np.testing.assert_allclose(out.numpy(), ln_ref(x, w, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("has_w,has_b", AFFINE)
def test_layer_norm_derivatives_all_orders(rng, has_w, has_b):
    x = ga.tensor(rng.standard_normal((3, 5)))
    params = [ga.tensor(rng.standard_normal(5)) for _ in range(has_w + has_b)]
    assert ga.gradcheck(lambda z, *p: layer_norm(z, *p, eps=1e-3), (x, *params), check_second_order=True)


def test_layer_norm_fused_first_order_equals_composed_path(rng):
    """Without create_graph one fused call gives dx, dw, db; with it the rules compose ops: same values."""
    arrays = [rng.standard_normal((4, 6)), rng.standard_normal(6), rng.standard_normal(6)]
    u = ga.tensor(rng.standard_normal((4, 6)))
    results = []
    for create_graph in (False, True):
        ts = [ga.tensor(a, requires_grad=True) for a in arrays]
        results.append(autograd_grad((layer_norm(*ts) * u).sum(), ts, create_graph=create_graph))
    for fused, composed in zip(*results):
        np.testing.assert_allclose(fused.numpy(), composed.numpy(), rtol=1e-10, atol=1e-12)


def test_layer_norm_normalized_shape_and_errors(rng):
    x = rng.standard_normal((2, 3, 4))
    w, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out = layer_norm(ga.tensor(x), ga.tensor(w), ga.tensor(b), normalized_shape=(3, 4))
    expected = ln_ref(x.reshape(2, 12), w.reshape(-1), b.reshape(-1)).reshape(2, 3, 4)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ga.ShapeError, match=r"layer_norm: weight/bias of shape \(5,\)"):
        layer_norm(ga.tensor(x), ga.tensor(np.ones(5)))


def test_layer_norm_half_precision(rng):
    x = (rng.standard_normal((5, 64)) * 3 + 2).astype(np.float16)
    w = rng.standard_normal(64).astype(np.float16)
    out = layer_norm(ga.tensor(x), ga.tensor(w))
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.numpy().astype(np.float64), ln_ref(x, w.astype(np.float64)), atol=1e-2)


# ---- multi-tensor optimizer updates --------------------------------------------------------------------
def adam_ref(p, g, m, v, lr, b1, b2, eps, wd, step, decoupled):
    """torch.optim.Adam / AdamW, one step, float64."""
    if decoupled:
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - b2 ** step) + eps
    return p - lr / (1 - b1 ** step) * m / denom, m, v


@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_matches_torch_formulas_over_steps(rng, decoupled):
    shapes = [(3, 4), (5,), ()]
    ps = [rng.standard_normal(s) for s in shapes]
    params = [ga.tensor(p.copy()) for p in ps]
    ms, vs = [ga.zeros_like(p) for p in params], [ga.zeros_like(p) for p in params]
    ref = [(p, np.zeros_like(p), np.zeros_like(p)) for p in ps]
    hyper = dict(lr=0.1, beta1=0.8, beta2=0.95, eps=1e-8, weight_decay=0.05)
    for step in (1, 2, 3):
        gs = [rng.standard_normal(s) for s in shapes]
        fused_adam_(params, [ga.tensor(g) for g in gs], ms, vs, step=step, decoupled=decoupled, **hyper)
        ref = [adam_ref(p, g, m, v, hyper["lr"], hyper["beta1"], hyper["beta2"], hyper["eps"],
                        hyper["weight_decay"], step, decoupled) for (p, m, v), g in zip(ref, gs)]
    for t, m, v, (p_ref, m_ref, v_ref) in zip(params, ms, vs, ref):
        np.testing.assert_allclose(t.numpy(), p_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(m.numpy(), m_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(v.numpy(), v_ref, rtol=1e-12, atol=1e-14)
        assert t._version[0] == 3 and m._version[0] == 3


def test_fused_adam_skips_missing_grads_and_keeps_half_params_with_float32_state(rng):
    p16 = ga.tensor(rng.standard_normal(10).astype(np.float16))
    frozen = ga.tensor(np.ones(3, np.float32))
    m, v = ga.zeros(10, dtype=ga.float32), ga.zeros(10, dtype=ga.float32)
    g = rng.standard_normal(10).astype(np.float16)
    before = p16.numpy().astype(np.float64)
    fused_adam_([p16, frozen], [ga.tensor(g), None], [m, ga.zeros(3)], [v, ga.zeros(3)], lr=1e-2, beta1=0.9,
                beta2=0.999, eps=1e-8, weight_decay=0.0, step=1, decoupled=False)
    expected, m_ref, _ = adam_ref(before, g.astype(np.float64), 0, 0, 1e-2, 0.9, 0.999, 1e-8, 0.0, 1, False)
    assert p16.dtype == np.float16 and m.dtype == np.float32
    np.testing.assert_allclose(p16.numpy().astype(np.float64), expected, atol=2e-3)
    np.testing.assert_allclose(m.numpy(), m_ref, rtol=1e-3)
    np.testing.assert_array_equal(frozen.numpy(), 1.0)
    assert frozen._version[0] == 0


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_fused_sgd_matches_torch_formulas_over_steps(rng, momentum, nesterov):
    ps = [rng.standard_normal((2, 3)), rng.standard_normal(4)]
    params = [ga.tensor(p.copy()) for p in ps]
    bufs = [ga.zeros_like(p) for p in params]
    ref_bufs = [None, None]
    for _ in range(3):
        gs = [rng.standard_normal(p.shape) for p in ps]
        fused_sgd_(params, [ga.tensor(g) for g in gs], bufs, lr=0.1, momentum=momentum, weight_decay=0.01,
                   nesterov=nesterov)
        for i, g in enumerate(gs):  # torch.optim.SGD, dampening 0
            d = g + 0.01 * ps[i]
            if momentum:
                ref_bufs[i] = d.copy() if ref_bufs[i] is None else momentum * ref_bufs[i] + d
                d = d + momentum * ref_bufs[i] if nesterov else ref_bufs[i]
            ps[i] = ps[i] - 0.1 * d
    for t, p in zip(params, ps):
        np.testing.assert_allclose(t.numpy(), p, rtol=1e-12, atol=1e-14)


def test_fused_update_rejects_mismatched_shapes(rng):
    p = ga.tensor(np.zeros(3))
    with pytest.raises(ga.ShapeError, match=r"fused_sgd_: parameter 0 has shape \(3,\)"):
        fused_sgd_([p], [ga.tensor(np.zeros(4))], [ga.zeros_like(p)], lr=0.1, momentum=0.9)
