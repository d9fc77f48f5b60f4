"""ga.nn.functional against NumPy references (direct loops, closed forms) and float64 gradcheck
(reverse, forward and, for the primitives in ops/nn.py, second order)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gpuad as ga
from gpuad.nn import functional as F

RNG = np.random.default_rng(0)


def t64(*shape, requires_grad=False):
    return ga.tensor(RNG.standard_normal(shape), requires_grad=requires_grad)


# ---- NumPy references -----------------------------------------------------------------------------
def conv2d_ref(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * stride[0]:i * stride[0] + dilation[0] * (kh - 1) + 1:dilation[0],
                           j * stride[1]:j * stride[1] + dilation[1] * (kw - 1) + 1:dilation[1]]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3)) + (b[oc] if b is not None else 0)
    return out


def pool_ref(x, k, s, p, reduce, pad_value):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = reduce(xp[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return out


def log_softmax_ref(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# ---- convolution ----------------------------------------------------------------------------------
CONV_CASES = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2), groups=1),
    dict(stride=1, padding=1, dilation=2, groups=2),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_direct_loops(case):
    x, w, b = RNG.standard_normal((2, 4, 7, 6)), RNG.standard_normal((6, 4 // case["groups"], 3, 3)), \
        RNG.standard_normal(6)
    out = F.conv2d(ga.tensor(x), ga.tensor(w), ga.tensor(b), **case)
    pair = {k: (v, v) if isinstance(v, int) else v for k, v in case.items() if k != "groups"}
    ref = conv2d_ref(x, w, b, pair["stride"], pair["padding"], pair["dilation"], case["groups"])
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [CONV_CASES[2], CONV_CASES[4]])
def test_conv2d_gradcheck_both_modes_and_second_order(case):
    x, w, b = t64(1, 2, 5, 4), t64(2, 2 // case["groups"], 3, 3), t64(2)
    assert ga.gradcheck(lambda x, w, b: F.conv2d(x, w, b, **case), (x, w, b), check_second_order=True)


def test_conv2d_padding_same_and_valid():
    x, w = RNG.standard_normal((1, 1, 6, 5)), RNG.standard_normal((2, 1, 2, 3))
    same = F.conv2d(ga.tensor(x), ga.tensor(w), padding="same")
    assert same.shape == (1, 2, 6, 5)
    # torch pads the extra row of an even kernel at the bottom/right
    ref = conv2d_ref(np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 1))), w, None, (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(same.numpy(), ref, atol=1e-12)
    assert F.conv2d(ga.tensor(x), ga.tensor(w), padding="valid").shape == (1, 2, 5, 3)


def test_conv2d_errors_name_the_op_and_shapes():
    with pytest.raises(ga.ShapeError, match=r"conv2d: input with 3 channels"):
        F.conv2d(ga.randn(1, 3, 5, 5), ga.randn(4, 2, 3, 3))
    with pytest.raises(ga.ShapeError, match=r"conv2d: expected input of shape \(N, C, H, W\)"):
        F.conv2d(ga.randn(3, 5, 5), ga.randn(4, 3, 3, 3))
    with pytest.raises(ga.ShapeError, match="larger than the padded input"):
        F.conv2d(ga.randn(1, 1, 2, 2), ga.randn(1, 1, 3, 3))


# ---- pooling --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_max_pool2d_forward_and_gradient_to_first_max(k, s, p):
    x = RNG.standard_normal((2, 3, 7, 6))
    xt = ga.tensor(x, requires_grad=True)
    out = F.max_pool2d(xt, k, s, p)
    np.testing.assert_array_equal(out.numpy(), pool_ref(x, k, s or k, p, np.max, -np.inf))
    g = RNG.standard_normal(out.shape)
    out.backward(ga.tensor(g))
    # reference gradient: each window's output gradient lands on its argmax (first in row-major order)
    ref = np.zeros((2, 3, 7 + 2 * p, 6 + 2 * p))
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    st = s or k
    for n in range(2):
        for c in range(3):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    win = xp[n, c, i * st:i * st + k, j * st:j * st + k]
                    a, b = np.unravel_index(np.argmax(win), win.shape)
                    ref[n, c, i * st + a, j * st + b] += g[n, c, i, j]
    np.testing.assert_allclose(xt.grad.numpy(), ref[:, :, p:p + 7, p:p + 6], atol=1e-12)


def test_max_pool2d_ties_send_the_gradient_to_one_element():
    x = ga.zeros(1, 1, 2, 2, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[[1.0, 0.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1)])
def test_max_pool2d_gradcheck_second_order(k, s, p):
    # distinct values, so that finite differences do not cross a tie
    x = ga.tensor(RNG.permutation(2 * 6 * 5).reshape(1, 2, 6, 5) * 0.1)
    assert ga.gradcheck(lambda x: F.max_pool2d(x, k, s, p), x, eps=1e-4, check_second_order=True)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1)])
def test_avg_pool2d(k, s, p, count_include_pad):
    x = RNG.standard_normal((2, 3, 7, 6))
    out = F.avg_pool2d(ga.tensor(x), k, s, p, count_include_pad=count_include_pad)
    if count_include_pad:
        ref = pool_ref(x, k, s or k, p, np.mean, 0.0)
    else:
        ones = pool_ref(np.ones_like(x), k, s or k, p, np.sum, 0.0)
        ref = pool_ref(x, k, s or k, p, np.sum, 0.0) / ones
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    assert ga.gradcheck(lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=count_include_pad),
                        t64(1, 2, 5, 5))


def test_pooling_accepts_unbatched_input():
    x = RNG.standard_normal((3, 4, 4))
    np.testing.assert_array_equal(F.max_pool2d(ga.tensor(x), 2).numpy(),
                                  pool_ref(x[None], 2, 2, 0, np.max, -np.inf)[0])


# ---- softmax and losses ---------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(axis):
    x = RNG.standard_normal((3, 4, 5)) * 10
    np.testing.assert_allclose(F.log_softmax(ga.tensor(x), axis=axis).numpy(), log_softmax_ref(x, axis),
                               atol=1e-12)
    np.testing.assert_allclose(F.softmax(ga.tensor(x), dim=axis).numpy(), np.exp(log_softmax_ref(x, axis)),
                               atol=1e-12)
    assert ga.gradcheck(lambda x: F.softmax(x, axis), t64(2, 3, 4), check_second_order=True)
    assert ga.gradcheck(lambda x: F.log_softmax(x, axis), t64(2, 3, 4), check_second_order=True)


def test_softmax_is_stable_for_large_inputs():
    out = F.softmax(ga.tensor([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(out.numpy(), [0.5, 0.5, 0.0])


def ce_ref(logits, labels, weight=None, ignore_index=-100, smoothing=0.0, reduction="mean"):
    logp = log_softmax_ref(logits, 1)
    n, c = logits.shape
    w = np.ones(c) if weight is None else weight
    losses, denom = [], 0.0
    for i in range(n):
        if labels[i] == ignore_index:
            losses.append(0.0)
            continue
        nll = -w[labels[i]] * logp[i, labels[i]]
        smooth = -(w * logp[i]).sum() / c
        losses.append((1 - smoothing) * nll + smoothing * smooth)
        denom += w[labels[i]]
    losses = np.array(losses)
    return {"mean": losses.sum() / denom, "sum": losses.sum(), "none": losses}[reduction]


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.1}, {"weight": True}, {"ignore_index": 2},
                                    {"weight": True, "label_smoothing": 0.2, "ignore_index": 2},
                                    {"reduction": "sum"}, {"reduction": "none", "label_smoothing": 0.3}])
def test_cross_entropy_matches_reference(kwargs):
    logits, labels = RNG.standard_normal((6, 5)), np.array([0, 4, 2, 1, 2, 3])
    weight = RNG.random(5) + 0.5 if kwargs.get("weight") else None
    kw = {**kwargs, "weight": None if weight is None else ga.tensor(weight)}
    out = F.cross_entropy(ga.tensor(logits), labels, **kw)
    ref = ce_ref(logits, labels, weight, kwargs.get("ignore_index", -100), kwargs.get("label_smoothing", 0.0),
                 kwargs.get("reduction", "mean"))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)
    f = lambda x: F.cross_entropy(x, labels, **kw)
    assert ga.gradcheck(f, ga.tensor(logits), check_second_order=True)


def test_cross_entropy_spatial_and_probability_targets():
    logits, labels = RNG.standard_normal((2, 4, 3, 2)), RNG.integers(0, 4, (2, 3, 2))
    flat = logits.transpose(0, 2, 3, 1).reshape(-1, 4)
    np.testing.assert_allclose(F.cross_entropy(ga.tensor(logits), ga.tensor(labels)).numpy(),
                               ce_ref(flat, labels.reshape(-1)), rtol=1e-12)
    probs = np.exp(log_softmax_ref(RNG.standard_normal((3, 5)), 1))
    x = RNG.standard_normal((3, 5))
    ref = -(((1 - 0.1) * probs + 0.1 / 5) * log_softmax_ref(x, 1)).sum(1).mean()
    np.testing.assert_allclose(F.cross_entropy(ga.tensor(x), ga.tensor(probs), label_smoothing=0.1).numpy(),
                               ref, rtol=1e-12)


def test_cross_entropy_errors():
    with pytest.raises(ga.ShapeError, match="cross_entropy: target 7 is out of range for 5 classes"):
        F.cross_entropy(ga.randn(2, 5), [1, 7])
    with pytest.raises(ga.ShapeError, match=r"needs a target of shape \(2,\)"):
        F.cross_entropy(ga.randn(2, 5), [1, 2, 3])
    with pytest.raises(ga.ShapeError, match=r"probability targets must match the input's shape \(2, 5\)"):
        F.cross_entropy(ga.randn(2, 5), ga.tensor([0.5, 0.5]))
    with pytest.raises(ga.DtypeError, match="class-index targets must be integers"):
        F.nll_loss(ga.randn(2, 5), np.array([True, False]))


def test_nll_and_mse_loss():
    logp, labels = log_softmax_ref(RNG.standard_normal((4, 3)), 1), np.array([2, 0, 1, 1])
    np.testing.assert_allclose(F.nll_loss(ga.tensor(logp), labels).numpy(),
                               -logp[np.arange(4), labels].mean(), rtol=1e-12)
    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    np.testing.assert_allclose(F.mse_loss(ga.tensor(a), ga.tensor(b)).numpy(), ((a - b) ** 2).mean())
    np.testing.assert_allclose(F.mse_loss(ga.tensor(a), ga.tensor(b), reduction="sum").numpy(),
                               ((a - b) ** 2).sum())
    assert ga.gradcheck(lambda a, b: F.mse_loss(a, b), (ga.tensor(a), ga.tensor(b)))


# ---- normalization, dropout, embedding, linear ------------------------------------------------------
def test_layer_norm():
    x, w, b = RNG.standard_normal((2, 3, 4)), RNG.standard_normal(4), RNG.standard_normal(4)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * w + b
    np.testing.assert_allclose(F.layer_norm(ga.tensor(x), (4,), ga.tensor(w), ga.tensor(b)).numpy(), ref,
                               atol=1e-12)
    assert ga.gradcheck(lambda x, w, b: F.layer_norm(x, (3, 4), w, b), (t64(2, 3, 4), t64(3, 4), t64(3, 4)),
                        check_second_order=True)


def test_batch_norm_training_updates_running_stats_and_eval_uses_them():
    x = RNG.standard_normal((5, 3, 2, 2)) * 2 + 1
    rm, rv = ga.zeros(3, dtype=ga.float64), ga.ones(3, dtype=ga.float64)
    out = F.batch_norm(ga.tensor(x), rm, rv, training=True, momentum=0.1)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    ref = (x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    n = 5 * 2 * 2
    np.testing.assert_allclose(rm.numpy(), 0.1 * mean)
    np.testing.assert_allclose(rv.numpy(), 0.9 + 0.1 * var * n / (n - 1))
    ev = F.batch_norm(ga.tensor(x), rm, rv, training=False)
    np.testing.assert_allclose(ev.numpy(), (x - rm.numpy().reshape(1, 3, 1, 1)) /
                               np.sqrt(rv.numpy().reshape(1, 3, 1, 1) + 1e-5), atol=1e-12)
    assert ga.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                        (t64(4, 3), t64(3), t64(3)), check_second_order=True)


def test_dropout_scales_kept_elements_and_is_identity_in_eval():
    ga.manual_seed(0)
    x = ga.ones(1000, 100)
    y = F.dropout(x, 0.3).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((y == 0).mean() - 0.3) < 0.01
    assert F.dropout(x, 0.3, training=False) is x
    assert (F.dropout(x, 1.0).numpy() == 0).all()
    with pytest.raises(ValueError, match="dropout: probability"):
        F.dropout(x, 1.5)


def test_embedding_and_padding_idx_gets_no_gradient():
    w = ga.tensor(RNG.standard_normal((5, 3)), requires_grad=True)
    idx = np.array([[0, 2], [2, 4]])
    out = F.embedding(idx, w, padding_idx=2)
    np.testing.assert_array_equal(out.numpy(), w.numpy()[idx])
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy()[:, 0], [1, 0, 0, 0, 1])
    with pytest.raises(ga.ShapeError, match="embedding: index out of range for 5"):
        F.embedding([7], w)


def test_linear_and_its_errors():
    x, w, b = RNG.standard_normal((3, 4)), RNG.standard_normal((2, 4)), RNG.standard_normal(2)
    np.testing.assert_allclose(F.linear(ga.tensor(x), ga.tensor(w), ga.tensor(b)).numpy(), x @ w.T + b)
    assert ga.gradcheck(F.linear, (t64(2, 3, 4), t64(2, 4), t64(2)), check_second_order=True)
    assert ga.gradcheck(F.linear, (t64(3, 4), t64(2, 4)), check_second_order=True)
    with pytest.raises(ga.ShapeError, match=r"linear: input of shape \(3, 4\) does not match weight"):
        F.linear(ga.tensor(x), ga.tensor(w.T))


# ---- attention ------------------------------------------------------------------------------------
def sdpa_ref(q, k, v, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    return np.exp(log_softmax_ref(s, -1)) @ v


@pytest.mark.parametrize("causal", [False, True])
def test_scaled_dot_product_attention(causal):
    q, k, v = RNG.standard_normal((2, 3, 4, 5)), RNG.standard_normal((2, 3, 4, 5)), RNG.standard_normal((2, 3, 4, 6))
    out = F.scaled_dot_product_attention(ga.tensor(q), ga.tensor(k), ga.tensor(v), is_causal=causal)
    mask = np.tril(np.ones((4, 4), bool)) if causal else None
    np.testing.assert_allclose(out.numpy(), sdpa_ref(q, k, v, mask), atol=1e-12)
    if causal:  # the first query sees only the first key
        np.testing.assert_allclose(out.numpy()[..., 0, :], v[..., 0, :], atol=1e-12)
    f = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert ga.gradcheck(f, (t64(1, 2, 3, 2), t64(1, 2, 3, 2), t64(1, 2, 3, 2)))


def test_sdpa_boolean_and_float_masks():
    q, k, v = RNG.standard_normal((3, 4)), RNG.standard_normal((5, 4)), RNG.standard_normal((5, 2))
    mask = RNG.random((3, 5)) > 0.3
    mask[:, 0] = True
    out = F.scaled_dot_product_attention(ga.tensor(q), ga.tensor(k), ga.tensor(v), attn_mask=mask)
    np.testing.assert_allclose(out.numpy(), sdpa_ref(q, k, v, mask), atol=1e-12)
    add = np.where(mask, 0.0, -np.inf)
    out2 = F.scaled_dot_product_attention(ga.tensor(q), ga.tensor(k), ga.tensor(v), attn_mask=ga.tensor(add))
    np.testing.assert_allclose(out2.numpy(), out.numpy(), atol=1e-12)


def test_large_cross_entropy_takes_the_fused_kernel_and_agrees(monkeypatch):
    calls = []
    fused = F._fused.softmax_cross_entropy
    monkeypatch.setattr(F._fused, "softmax_cross_entropy", lambda *a: calls.append(1) or fused(*a))
    logits, labels = RNG.standard_normal((160, 120)), RNG.integers(0, 120, 160)
    labels[:7] = -100
    x = ga.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, labels)
    assert calls, "the plain case of a large input should use ops/fused.py"
    np.testing.assert_allclose(loss.numpy(), ce_ref(logits, labels), rtol=1e-12)
    loss.backward()
    valid = labels != -100
    ref = np.exp(log_softmax_ref(logits, 1))
    ref[np.arange(160)[valid], labels[valid]] -= 1
    ref[~valid] = 0
    np.testing.assert_allclose(x.grad.numpy(), ref / valid.sum(), atol=1e-12)
