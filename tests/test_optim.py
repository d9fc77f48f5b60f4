"""ga.optim against hand-computed update steps, state_dict round trips, schedulers' closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gpuad as ga
from gpuad import nn, optim

W0 = np.array([[1.0, -2.0], [0.5, 3.0]])
GRADS = [np.array([[0.1, -0.2], [0.3, 0.4]]), np.array([[-0.5, 0.2], [0.1, 0.0]]),
         np.array([[0.3, 0.3], [-0.2, 0.1]])]


def run(make, grads=GRADS):
    p = nn.Parameter(ga.tensor(W0))
    opt = make([p])
    for g in grads:
        p.grad = ga.tensor(g)
        opt.step()
    return p.numpy(), opt


def test_sgd_plain_step():
    p, _ = run(lambda ps: optim.SGD(ps, lr=0.1), GRADS[:1])
    np.testing.assert_allclose(p, W0 - 0.1 * GRADS[0])


def test_sgd_momentum_weight_decay_and_nesterov_by_hand():
    lr, mu, wd = 0.1, 0.9, 0.01
    w, buf = W0.copy(), None
    wn, bufn = W0.copy(), None
    for g in GRADS:
        d = g + wd * w
        buf = d if buf is None else mu * buf + d
        w = w - lr * buf
        dn = g
        bufn = dn if bufn is None else mu * bufn + dn
        wn = wn - lr * (dn + mu * bufn)
    np.testing.assert_allclose(run(lambda ps: optim.SGD(ps, lr=lr, momentum=mu, weight_decay=wd))[0], w)
    np.testing.assert_allclose(run(lambda ps: optim.SGD(ps, lr=lr, momentum=mu, nesterov=True))[0], wn)


def adam_ref(decoupled, wd, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    w, m, v = W0.copy(), 0.0, 0.0
    for t, g in enumerate(GRADS, 1):
        if decoupled:
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return w


def test_adam_first_step_is_lr_times_sign():
    p, _ = run(lambda ps: optim.Adam(ps, lr=0.01), GRADS[:1])
    np.testing.assert_allclose(p, W0 - 0.01 * np.sign(GRADS[0]), rtol=1e-6)


@pytest.mark.parametrize("cls,decoupled,wd", [(optim.Adam, False, 0.0), (optim.Adam, False, 0.1),
                                              (optim.AdamW, True, 0.1)])
def test_adam_and_adamw_by_hand(cls, decoupled, wd):
    p, _ = run(lambda ps: cls(ps, lr=0.01, weight_decay=wd))
    np.testing.assert_allclose(p, adam_ref(decoupled, wd), rtol=1e-12)


def test_adamw_default_weight_decay_is_torchs():
    assert optim.AdamW([nn.Parameter(ga.zeros(1))]).param_groups[0]["weight_decay"] == 0.01


def test_state_dict_round_trip_continues_identically():
    full, _ = run(lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1))
    p = nn.Parameter(ga.tensor(W0))
    opt = optim.Adam([p], lr=0.01, weight_decay=0.1)
    for g in GRADS[:2]:
        p.grad = ga.tensor(g)
        opt.step()
    saved = opt.state_dict()
    assert saved["state"][0]["step"] == 2 and saved["param_groups"][0]["params"] == [0]
    q = nn.Parameter(ga.tensor(p.numpy()))
    opt2 = optim.Adam([q], lr=0.5)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == 0.01
    q.grad = ga.tensor(GRADS[2])
    opt2.step()
    np.testing.assert_allclose(q.numpy(), full, rtol=1e-12)


def test_load_state_dict_rejects_mismatched_groups():
    opt = optim.SGD([nn.Parameter(ga.zeros(1))], lr=0.1)
    other = optim.SGD([nn.Parameter(ga.zeros(1)), nn.Parameter(ga.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="saved groups have sizes"):
        opt.load_state_dict(other.state_dict())


def test_zero_grad_param_groups_and_skips_params_without_grad():
    a, b = nn.Parameter(ga.ones(2)), nn.Parameter(ga.ones(2))
    opt = optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b]}], lr=0.1)
    a.grad, b.grad = ga.ones(2), ga.ones(2)
    opt.step()
    np.testing.assert_allclose(a.numpy(), [0, 0])
    np.testing.assert_allclose(b.numpy(), [0.9, 0.9])
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    opt.step()  # no gradients: nothing moves
    np.testing.assert_allclose(b.numpy(), [0.9, 0.9], rtol=1e-6)


def test_step_bumps_version_so_stale_graphs_raise():
    p = nn.Parameter(ga.ones(2))
    y = (p * p).sum()
    p.grad = ga.ones(2)
    optim.SGD([p], lr=0.1).step()
    with pytest.raises(ga.InplaceModifiedError):
        y.backward()


def test_optimizer_rejects_non_leaf_and_bad_hyperparameters():
    with pytest.raises(ValueError, match="leaf tensors that require grad"):
        optim.SGD([ga.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([nn.Parameter(ga.ones(1))], lr=0.1, nesterov=True)


def test_step_lr_and_cosine_closed_forms():
    opt = optim.SGD([nn.Parameter(ga.ones(1))], lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    opt = optim.SGD([nn.Parameter(ga.ones(1))], lr=0.2)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.0)
    lrs = []
    for _ in range(5):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    np.testing.assert_allclose(lrs, [0.2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)])
    state = sched.state_dict()
    sched2 = optim.CosineAnnealingLR(optim.SGD([nn.Parameter(ga.ones(1))], lr=0.2), T_max=4)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_training_reduces_loss():
    ga.manual_seed(0)
    x = ga.tensor(np.random.default_rng(0).standard_normal((64, 3)), dtype=ga.float32)
    y = x @ ga.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    model = nn.Linear(3, 1)
    opt = optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-4
    np.testing.assert_allclose(model.weight.numpy(), [[1.0, -2.0, 0.5]], atol=1e-2)


@pytest.mark.parametrize("cls,kwargs", [
    (ga.optim.Adam, dict(lr=0.01, weight_decay=0.1)), (ga.optim.AdamW, dict(lr=0.01)),
    (ga.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)), (ga.optim.SGD, dict(lr=0.1)),
])
def test_fused_multi_tensor_step_matches_per_parameter_step(cls, kwargs):
    """fused=True (the GPU default) runs one multi-tensor kernel per group; same trajectory as fused=False."""
    runs = []
    for use_fused in (False, True):
        ga.manual_seed(0)
        params = [ga.randn(3, 4, dtype=ga.float64, requires_grad=True), ga.randn(5, dtype=ga.float64,
                                                                               requires_grad=True)]
        opt = cls(params, fused=use_fused, **kwargs)
        for _ in range(4):
            opt.zero_grad()
            sum(((p * p * p).sum() for p in params), ga.tensor(0.0, dtype=ga.float64)).backward()
            opt.step()
        runs.append([p.numpy().copy() for p in params])
    for plain, fused_run in zip(*runs):
        np.testing.assert_allclose(fused_run, plain, rtol=1e-12, atol=1e-12)
