"""Function transforms against closed forms, against each other, and nested (no perturbation confusion)."""
from __future__ import annotations

import numpy as np
import pytest

import gpuad as ga
from gpuad.autograd import grad as torch_style_grad

RNG = np.random.default_rng(0)


def t64(*shape, requires_grad=False):
    return ga.tensor(RNG.standard_normal(shape), requires_grad=requires_grad)


def host(a):
    return np.asarray(a.numpy() if isinstance(a, ga.Tensor) else a)


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(host(a), host(b), rtol=tol, atol=tol)


def softmax(z):
    e = ga.exp(z - z.max().detach())
    return e / e.sum()


# ---- closed forms ------------------------------------------------------------------------------------
def test_grad_of_quadratic_form_with_int_and_tuple_argnums():
    a, x = t64(4, 4), t64(4)
    f = lambda x, a: x @ a @ x
    close(ga.grad(f)(x, a), (a.numpy() + a.numpy().T) @ x.numpy())
    gx, ga_ = ga.grad(f, argnums=(0, 1))(x, a)
    close(gx, (a.numpy() + a.numpy().T) @ x.numpy())
    close(ga_, np.outer(x.numpy(), x.numpy()))
    value, g = ga.value_and_grad(f, argnums=1)(x, a)
    close(value, x.numpy() @ a.numpy() @ x.numpy())
    close(g, np.outer(x.numpy(), x.numpy()))


def test_grad_of_tanh_layer_and_tuple_argument():
    w, b, x = t64(3, 5), t64(3), t64(5)
    f = lambda params, x: ga.tanh(params[0] @ x + params[1]).sum()
    gw, gb = ga.grad(f)((w, b), x)
    d = 1 - np.tanh(w.numpy() @ x.numpy() + b.numpy()) ** 2
    close(gw, np.outer(d, x.numpy()))
    close(gb, d)


def test_jacobians_of_softmax_and_hessian_of_quadratic():
    z = t64(5)
    s = np.exp(z.numpy()) / np.exp(z.numpy()).sum()
    expected = np.diag(s) - np.outer(s, s)
    close(ga.jacrev(softmax)(z), expected)
    close(ga.jacfwd(softmax)(z), expected)
    a, x = t64(4, 4), t64(4)
    h = ga.hessian(lambda x: x @ a @ x)(x)
    assert h.shape == (4, 4)
    close(h, a.numpy() + a.numpy().T)


def test_hessian_of_tanh_energy_closed_form():
    a, x = t64(3, 4), t64(4)
    f = lambda x: (ga.tanh(a @ x) ** 2).sum()
    t = np.tanh(a.numpy() @ x.numpy())
    weight = 2 * (1 - t ** 2) * (1 - 3 * t ** 2)  # d^2/du^2 tanh(u)^2
    close(ga.hessian(f)(x), a.numpy().T @ np.diag(weight) @ a.numpy())


def test_vjp_reusable_for_several_cotangents_and_tuples():
    a, x, y = t64(3, 4), t64(4), t64(3)
    out, vjp_fn = ga.vjp(lambda x, y: (a @ x, x.sum() * y), x, y)
    close(out[0], a.numpy() @ x.numpy())
    u1, u2 = t64(3), t64(3)
    for u in (u1, u2, u1):
        gx, gy = vjp_fn((u, ga.zeros(3, dtype=ga.float64)))
        close(gx, a.numpy().T @ u.numpy())
        close(gy, np.zeros(3))
    gx, gy = vjp_fn((ga.zeros(3, dtype=ga.float64), u2))
    close(gx, np.full(4, u2.numpy() @ y.numpy()))
    close(gy, x.numpy().sum() * u2.numpy())
    with pytest.raises(ga.GradError, match="cotangent"):
        vjp_fn(u1)


def test_grad_needs_a_scalar_output():
    with pytest.raises(ga.GradError, match="scalar"):
        ga.grad(lambda x: x * 2)(t64(3))


def test_unused_argument_gets_zeros():
    x, y = t64(3), t64(2)
    gx, gy = ga.grad(lambda x, y: (x ** 2).sum(), argnums=(0, 1))(x, y)
    close(gx, 2 * x.numpy())
    close(gy, np.zeros(2))


# ---- jacfwd == jacrev, shapes as JAX -----------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_jacfwd_equals_jacrev_on_random_functions(seed):
    rng = np.random.default_rng(seed)
    w = ga.tensor(rng.standard_normal((3, 2, 4)))
    x, y = ga.tensor(rng.standard_normal((2, 4))), ga.tensor(rng.standard_normal(3))

    def f(x, y):
        h = ga.tanh((w * x).sum(axis=(1, 2)) + y)
        return h * ga.sin(y) + ga.exp(x.mean()) * h.prod(), ga.sigmoid(x) * y.sum()

    fwd, rev = ga.jacfwd(f, argnums=(0, 1))(x, y), ga.jacrev(f, argnums=(0, 1))(x, y)
    shapes = [[(3, 2, 4), (3, 3)], [(2, 4, 2, 4), (2, 4, 3)]]
    for i in range(2):
        for j in range(2):
            assert fwd[i][j].shape == rev[i][j].shape == shapes[i][j]
            close(fwd[i][j], rev[i][j])


def test_jacobian_matches_finite_differences():
    x = t64(2, 3)
    f = lambda x: ga.softplus(x) @ ga.cos(x).T
    jac = ga.jacrev(f)(x).numpy()
    eps = 1e-6
    for k in range(x.size):
        d = np.zeros(x.size)
        d[k] = eps
        d = d.reshape(x.shape)
        num = (f(ga.tensor(x.numpy() + d)).numpy() - f(ga.tensor(x.numpy() - d)).numpy()) / (2 * eps)
        close(jac.reshape(2, 2, -1)[..., k], num, tol=1e-7)


# ---- hvp ---------------------------------------------------------------------------------------------
def test_hvp_equals_hessian_times_v():
    a, x, v = t64(5, 4), t64(4), t64(4)
    f = lambda x: (ga.tanh(a @ x) ** 2).sum() + (x ** 4).sum()
    g, hv = ga.hvp(f, (x,), (v,))
    close(g, ga.grad(f)(x))
    close(hv, ga.hessian(f)(x).numpy() @ v.numpy())
    rev_rev = ga.grad(lambda x: (ga.grad(f)(x) * v).sum())(x)
    close(hv, rev_rev)


def test_hvp_of_two_arguments():
    x, y, u, v = t64(3), t64(3), t64(3), t64(3)
    (gx, gy), (hx, hy) = ga.hvp(lambda x, y: (x * x * y).sum(), (x, y), (u, v))
    close(gx, 2 * x.numpy() * y.numpy())
    close(gy, x.numpy() ** 2)
    close(hx, 2 * y.numpy() * u.numpy() + 2 * x.numpy() * v.numpy())
    close(hy, 2 * x.numpy() * u.numpy())


# ---- nesting ----------------------------------------------------------------------------------------
def test_grad_of_grad_and_jacobian_compositions():
    x = t64(4)
    f = lambda x: (x ** 3).sum()
    close(ga.grad(lambda x: ga.grad(f)(x).sum())(x), 6 * x.numpy())
    close(ga.jacfwd(ga.jacrev(f))(x), np.diag(6 * x.numpy()))
    close(ga.jacrev(ga.jacrev(f))(x), np.diag(6 * x.numpy()))
    close(ga.jacrev(ga.jacfwd(f))(x), np.diag(6 * x.numpy()))
    third = ga.grad(lambda x: ga.grad(lambda x: ga.grad(f)(x).sum())(x).sum())(x)
    close(third, np.full(4, 6.0))
    _, t = ga.jvp(ga.grad(f), (x,), (ga.ones_like(x),))
    close(t, 6 * x.numpy())


def _one(x):
    return ga.ones_like(x)


@pytest.mark.parametrize("outer,inner", [("fwd", "fwd"), ("fwd", "rev"), ("rev", "fwd"), ("rev", "rev")])
def test_no_perturbation_confusion(outer, inner):
    """d/dx [x * d/dy (x + y)] = 1 (confusing the two perturbations gives 2); with x * y inside, x's
    own derivative comes back: d/dx [x * d/dy (x * y)] = 2x."""
    x0, y0 = ga.tensor(1.5, dtype=ga.float64), ga.tensor(2.0, dtype=ga.float64)

    def d(f, at, mode):
        return ga.jvp(f, (at,), (_one(at),))[1] if mode == "fwd" else ga.grad(f)(at)

    close(d(lambda x: x * d(lambda y: x + y, y0, inner), x0, outer), 1.0)
    close(d(lambda x: x * d(lambda y: x * y, y0, inner), x0, outer), 2 * 1.5)


def test_grad_of_jvp_reaches_leaves_and_saved_outputs():
    """The tangent of tanh reads the op's output y; it must stay differentiable w.r.t. x."""
    x, v = t64(3, requires_grad=True), t64(3)
    _, t = ga.jvp(ga.tanh, (x,), (v,))
    (g,) = torch_style_grad(t.sum(), x)
    th = np.tanh(x.numpy())
    close(g, v.numpy() * -2 * th * (1 - th ** 2))


# ---- interaction with the tape and the user's tensors ------------------------------------------------
def test_transforms_leave_grad_fields_alone_and_work_under_no_grad():
    w, x = t64(3, requires_grad=True), t64(3, requires_grad=True)
    f = lambda x: (x * w).sum() ** 2
    g = ga.grad(f)(x)
    assert x.grad is None and w.grad is None
    with ga.no_grad():
        close(ga.grad(f)(x), g)
        close(ga.hessian(f)(x), 2 * np.outer(w.numpy(), w.numpy()))
    assert x.grad is None and w.grad is None


def test_outer_backward_differentiates_through_transform():
    """ga.grad inside a recorded computation is itself differentiable (create_graph on demand)."""
    x, w = t64(3, requires_grad=True), t64(3, requires_grad=True)
    g = ga.grad(lambda x: (w * x ** 3).sum())(x)  # 3 w x^2, depends on x and on the closed-over w
    g.sum().backward()
    close(x.grad, 6 * w.numpy() * x.numpy())
    close(w.grad, 3 * x.numpy() ** 2)


def test_inner_result_without_outer_recording_is_cut_from_the_graph():
    x = t64(3)
    value, g = ga.value_and_grad(lambda x: (x ** 2).sum())(x)
    assert value.grad_fn is None and g.grad_fn is None and not g.requires_grad


def test_jvp_of_jvp_gives_second_derivatives():
    """The inner tanh rule reads the output y; its outer-level tangent must be there (levels in order)."""
    x = t64(4)
    inner = lambda x: ga.jvp(ga.tanh, (x,), (ga.ones_like(x),))[1]
    _, second = ga.jvp(inner, (x,), (ga.ones_like(x),))
    th = np.tanh(x.numpy())
    close(second, -2 * th * (1 - th ** 2))


def test_hessian_blocks_for_two_arguments():
    x, y = t64(3), t64(3)
    h = ga.hessian(lambda x, y: (x * x * y).sum(), argnums=(0, 1))(x, y)
    close(h[0][0], np.diag(2 * y.numpy()))
    close(h[0][1], np.diag(2 * x.numpy()))
    close(h[1][0], np.diag(2 * x.numpy()))
    close(h[1][1], np.zeros((3, 3)))


def test_jvp_of_nested_outputs():
    x, v = t64(3), t64(3)
    (a, (b, c)), (ta, (tb, tc)) = ga.jvp(lambda x: (x * 2, (ga.sin(x), x.sum())), (x,), (v,))
    close(b, np.sin(x.numpy()))
    close(ta, 2 * v.numpy())
    close(tb, np.cos(x.numpy()) * v.numpy())
    close(tc, v.numpy().sum())
