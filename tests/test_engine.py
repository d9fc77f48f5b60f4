"""The reverse-mode engine: ordering, accumulation, retain/create graph, retain_grad, modes, freeing."""
from __future__ import annotations

import threading

import numpy as np

import gpuad as ga
from gpuad.autograd import grad as autograd_grad


def test_closed_form_tanh_layer():
    rng = np.random.default_rng(0)
    W, x = rng.standard_normal((3, 4)), rng.standard_normal(4)
    w = ga.tensor(W, requires_grad=True)
    y = ga.tanh(w @ ga.tensor(x)).sum()
    y.backward()
    np.testing.assert_allclose(w.grad.numpy(), np.outer(1 - np.tanh(W @ x) ** 2, x), rtol=1e-12)


def test_long_chain_has_no_recursion_limit():
    x = ga.tensor(1.0, dtype=ga.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_diamond_gradients_accumulate():
    x = ga.tensor(2.0, dtype=ga.float64, requires_grad=True)
    a = x * 3.0
    y = a * a + a.exp() + x  # x reaches y along three paths
    y.backward()
    assert np.isclose(x.grad.item(), 18 * 2.0 + 3 * np.exp(6.0) + 1)


def test_grad_accumulates_across_backward_calls_and_zero_grad():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 7.0])
    x.zero_grad()
    assert x.grad is None
    x.grad = ga.zeros(2)
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_broadcast_gradient_is_summed_to_input_shape():
    b = ga.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = ga.tensor(np.ones((4, 1, 3)), requires_grad=True)
    (m * b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [4.0, 4.0, 4.0])
    assert m.grad.shape == (4, 1, 3) and m.grad.dtype == np.float64
    assert b.grad.dtype == np.float32  # gradient cast back from the promoted float64


def test_create_graph_gives_second_derivative():
    x = ga.tensor(0.7, dtype=ga.float64, requires_grad=True)
    y = ga.sin(x) * x
    (g,) = autograd_grad(y, x, create_graph=True)
    (h,) = autograd_grad(g, x)
    assert np.isclose(g.item(), np.cos(0.7) * 0.7 + np.sin(0.7))
    assert np.isclose(h.item(), -np.sin(0.7) * 0.7 + 2 * np.cos(0.7))


def test_backward_create_graph_then_backward_of_grad():
    x = ga.tensor([1.0, 2.0], dtype=ga.float64, requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    g = x.grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


def test_autograd_grad_does_not_touch_dot_grad_and_handles_nonleaf_inputs():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = (h * h).sum()
    gh, gx = autograd_grad(y, (h, x))
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    np.testing.assert_allclose(gx.numpy(), 8 * x.numpy())
    assert x.grad is None


def test_unused_input_gets_none():
    x = ga.tensor(1.0, requires_grad=True)
    z = ga.tensor(2.0, requires_grad=True)
    assert autograd_grad(x * 2, (x, z))[1] is None


def test_retain_grad_on_nonleaf():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 3).retain_grad()
    other = x * 4
    (h * h + other).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())
    assert other.grad is None


def test_no_grad_records_nothing_and_is_a_decorator():
    x = ga.tensor([1.0], requires_grad=True)
    with ga.no_grad():
        y = x * 2
        with ga.enable_grad():
            z = x * 2
        assert not ga.is_grad_enabled()
    assert ga.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None

    @ga.no_grad()
    def f(t):
        return t * 2

    @ga.no_grad
    def g(t):
        return t * 2

    assert f(x).grad_fn is None and g(x).grad_fn is None and g.__name__ == "g"
    with ga.set_grad_enabled(False):
        assert ga.set_grad_enabled(True)(lambda: ga.is_grad_enabled())()


def test_no_grad_is_thread_local():
    seen = {}

    def worker():
        seen["worker"] = ga.is_grad_enabled()

    with ga.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        seen["main"] = ga.is_grad_enabled()
    assert seen == {"worker": True, "main": False}


def test_saved_tensors_are_freed_after_backward():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    h = x.exp()
    y = (h * x).sum()
    nodes = [y.grad_fn, h.grad_fn]
    y.backward()
    assert all(n.saved is None and n.freed for n in nodes)


def test_retain_graph_keeps_saved_tensors():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    assert y.grad_fn.saved is not None


def test_ops_save_only_what_their_rules_need():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    c = ga.tensor([3.0, 4.0])
    assert set((x * c).grad_fn.saved) == {"b"}  # d/dx needs only c
    assert set(x.exp().grad_fn.saved) == {"y"}  # exp saves its output, not its input
    assert (x + c).grad_fn.saved == {}


def test_detach_shares_memory_and_version_but_not_graph():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert d.grad_fn is None and not d.requires_grad and d._version is x._version
    assert np.shares_memory(d.numpy(), x.numpy())


def test_repr_and_metadata():
    x = ga.tensor([[1.0, 2.0]], requires_grad=True)
    y = x * 2
    assert "grad_fn=<mulBackward>" in repr(y) and "requires_grad=True" in repr(x)
    assert (x.shape, x.ndim, x.size, x.dtype, x.device, x.is_leaf, y.is_leaf) == \
        ((1, 2), 2, 2, np.float32, "cpu", True, False)


def test_joint_vjp_computes_only_the_inputs_asked_for():
    """Joint VJPs (concatenate, einsum, pointwise) get `wrt`: grad of one operand of several."""
    a, b, c = (ga.tensor(np.arange(k, k + 3, dtype=np.float64), requires_grad=True) for k in (0, 3, 6))
    w = ga.tensor(np.arange(9, dtype=np.float64))
    (gb,) = ga.autograd.grad((ga.concatenate([a, b, c]) * w).sum(), [b])
    np.testing.assert_array_equal(gb.numpy(), [3.0, 4.0, 5.0])
    (gc,) = ga.autograd.grad(ga.einsum("i,i->", a * b, c), [c])
    np.testing.assert_array_equal(gc.numpy(), (a * b).numpy())
    (ga_,) = ga.autograd.grad((a * b).sum(), [a])
    np.testing.assert_array_equal(ga_.numpy(), b.numpy())


def test_fast_pointwise_vjp_equals_the_rule_path_and_defers_to_it():
    """Op.fast_vjp (the engine's path for pointwise nodes when nothing is recorded) gives the rules'
    gradients bit for bit, and returns None where the rules must run (tangents, a changed saved tensor,
    a freed node), so that their errors and recording still apply."""
    from gpuad.ops.elementwise import OPS

    rng = np.random.default_rng(0)
    x = ga.tensor(rng.uniform(0.5, 2.0, (3, 4)), requires_grad=True)
    y = ga.tensor(rng.uniform(0.5, 2.0, (4,)), requires_grad=True)
    g = ga.tensor(rng.standard_normal((3, 4)))
    for name in ("mul", "div", "pow", "maximum", "add", "sub", "tanh", "sin", "exp", "log", "sigmoid", "gelu"):
        op = OPS[name]
        inputs = (x, y) if len(op.args) == 2 else (x,)
        node = ga.autograd.function.apply(op, inputs, ga.autograd.function.NO_PARAMS).grad_fn
        for wrt in ([(0,), (1,), (0, 1)] if len(inputs) == 2 else [(0,)]):
            fast = op.fast_vjp(node, g, wrt)
            rule = op.vjp(node.context(False), g, wrt)
            assert fast is not None, name
            for f, r in zip(fast, rule):
                np.testing.assert_array_equal(f.numpy(), r.numpy(), err_msg=f"{name} {wrt}")
    node = (x - y).grad_fn  # sub passes g on as x's gradient and computes only -g
    assert node.op.fast_vjp(node, g, (0, 1))[0] is g and node.op.vjp(node.context(False), g, (0, 1))[0] is g
    node = ga.tanh(x).grad_fn
    op = node.op
    dual_g = g.detach()
    dual_g._fw = {0: ga.ones_like(g)}  # a forward-mode tangent on g (as inside ga.jvp of a backward)
    assert op.fast_vjp(node, dual_g, (0,)) is None  # the rules propagate it
    z = x * 1.0
    node = (z * y).grad_fn
    with ga.no_grad():
        z += 1.0  # the saved tensor changed: the rules raise the in-place error
    assert node.op.fast_vjp(node, g, (1,)) is None
    node.saved = None
    assert node.op.fast_vjp(node, g, (0,)) is None  # freed: the rules raise the freed-graph error


def test_each_leaf_grad_is_its_own_writable_array():
    # add passes one gradient to both inputs and sum's gradient is a read-only broadcast view: every
    # .grad must still be a writable array no other tensor shares (PyTorch copies a shared gradient)
    a = ga.tensor([1.0, 2.0], requires_grad=True)
    b = ga.tensor([3.0, 4.0], requires_grad=True)
    h = a + b
    h.retain_grad()
    h.sum().backward()
    grads = [a.grad._data, b.grad._data, h.grad._data]
    assert all(g.flags.writeable and g.base is None for g in grads)
    assert len({id(g) for g in grads}) == 3 and not np.shares_memory(grads[0], grads[1])
    with ga.no_grad():
        a.grad *= 3.0
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(h.grad.numpy(), [1.0, 1.0])


def test_clip_grad_norm_scales_gradients_that_came_from_one_broadcast():
    p1 = ga.tensor([1.0, 2.0], dtype=ga.float64, requires_grad=True)
    p2 = ga.tensor([3.0, 4.0], dtype=ga.float64, requires_grad=True)
    (p1 * p1 + p2).sum().backward()
    norm = ga.nn.utils.clip_grad_norm_([p1, p2], 1.0)
    assert norm == np.sqrt(2.0 ** 2 + 4.0 ** 2 + 1 + 1)
    np.testing.assert_allclose(p1.grad.numpy(), np.array([2.0, 4.0]) / norm, rtol=1e-6)
    np.testing.assert_allclose(p2.grad.numpy(), np.array([1.0, 1.0]) / norm, rtol=1e-6)


def test_the_callers_grad_is_not_taken_as_a_leaf_grad():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    seed = ga.tensor([5.0, 6.0])
    (x + 0.0).backward(seed)  # add's VJP hands the seed itself on
    assert not np.shares_memory(x.grad._data, seed._data)
    with ga.no_grad():
        seed *= 0.0
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 6.0])


def test_an_unshared_gradient_becomes_the_leaf_grad_without_a_copy(monkeypatch):
    from gpuad.autograd import engine

    copies = []
    monkeypatch.setattr(engine, "_owned", lambda g, given, owned=engine._owned: copies.append(
        owned(g, given) is not g) or g)
    w = ga.tensor(np.ones((3, 2)), requires_grad=True)
    b = ga.tensor(np.zeros(2), requires_grad=True)
    (ga.tensor(np.ones((4, 3))) @ w + b).tanh().sum().backward()  # matmul's VJP and the bias's sum: fresh
    assert copies == [False, False]
