"""@ga.elementwise: tracing, derivatives on the expression graph, the NumPy target, built-in ops written
in the language, and clear errors. Random expression programs come from hypothesis."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gpuad as ga
from gpuad.elementwise.trace import TraceError

_erf64 = np.vectorize(math.erf, otypes=[np.float64])


class NumpyLib:
    """The reference: the same spellings as gpuad's functions, in float64 NumPy."""

    sin, cos, tanh, exp, log1p, sqrt, abs = np.sin, np.cos, np.tanh, np.exp, np.log1p, np.sqrt, np.abs
    maximum, minimum, where = np.maximum, np.minimum, np.where
    erf = staticmethod(_erf64)

    @staticmethod
    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    @staticmethod
    def softplus(x):
        return np.logaddexp(0.0, x)


UNARY = {
    "sin": lambda L, a: L.sin(a), "cos": lambda L, a: L.cos(a), "tanh": lambda L, a: L.tanh(a),
    "sigmoid": lambda L, a: L.sigmoid(a), "exp_tanh": lambda L, a: L.exp(L.tanh(a)),
    "log1p_sq": lambda L, a: L.log1p(a * a), "sqrt1": lambda L, a: L.sqrt(a * a + 1.0),
    "erf": lambda L, a: L.erf(a), "softplus": lambda L, a: L.softplus(a), "neg": lambda L, a: -a,
    "affine": lambda L, a: 0.5 * a - 1.25,
}
BINARY = {
    "add": lambda L, a, b: a + b, "sub": lambda L, a, b: a - b, "mul": lambda L, a, b: a * b,
    "div": lambda L, a, b: a / (1.0 + b * b), "pow": lambda L, a, b: (1.5 + L.tanh(a)) ** b,
    "rsub": lambda L, a, b: 2.0 - a * b,
}
NONSMOOTH = {
    "abs": lambda L, a: L.abs(a), "relu_where": lambda L, a: L.where(a > 0.25, a, 0.0),
}
NONSMOOTH_BINARY = {"max": lambda L, a, b: L.maximum(a, b), "min": lambda L, a, b: L.minimum(a, b)}


def expressions(smooth: bool):
    """Expression trees over the leaves x, y and constants, as nested tuples."""
    leaves = st.sampled_from(["x", "y"]) | st.floats(-2, 2, allow_nan=False).map(lambda v: ("c", v))
    unary = sorted(UNARY) + ([] if smooth else sorted(NONSMOOTH))
    binary = sorted(BINARY) + ([] if smooth else sorted(NONSMOOTH_BINARY))
    return st.recursive(leaves, lambda kids: st.one_of(
        st.tuples(st.sampled_from(unary), kids), st.tuples(st.sampled_from(binary), kids, kids)), max_leaves=7)


def evaluate(tree, L, x, y):
    """The tree with library L (gpuad on traced values or tensors, or the NumPy reference)."""
    if tree == "x":
        return x
    if tree == "y":
        return y
    if tree[0] == "c":
        return tree[1]
    table = {**UNARY, **NONSMOOTH, **BINARY, **NONSMOOTH_BINARY}
    args = [evaluate(t, L, x, y) for t in tree[1:]]
    if all(isinstance(a, float) for a in args):  # a constant subtree folds to a Python float
        return float(table[tree[0]](NumpyLib, *args))
    if L is ga:  # float64 constants (gpuad makes Python floats float32 tensors)
        args = [ga.tensor(a, dtype=ga.float64) if isinstance(a, float) else a for a in args]
    return table[tree[0]](L, *args)


def fused_function(tree):
    return ga.elementwise(lambda x, y: evaluate(tree, ga, x, y) + 0.0 * x + 0.0 * y, name="random")


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_RNG = np.random.default_rng(7)
XY = (_RNG.uniform(-2, 2, (3, 4)), _RNG.uniform(-2, 2, (4,)))


@SETTINGS
@given(tree=expressions(smooth=False))
def test_random_programs_forward_matches_numpy_and_composed_path(tree):
    x, y = XY
    expected = evaluate(tree, NumpyLib, x, y) + 0.0 * x + 0.0 * y
    fused = fused_function(tree)(ga.tensor(x), ga.tensor(y))
    np.testing.assert_allclose(fused.numpy(), expected, rtol=1e-12, atol=1e-12)
    composed = evaluate(tree, ga, ga.tensor(x), ga.tensor(y)) + 0.0 * ga.tensor(x) + 0.0 * ga.tensor(y)
    np.testing.assert_allclose(fused.numpy(), composed.numpy(), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(tree=expressions(smooth=True))
def test_random_programs_vjp_and_jvp_match_finite_differences(tree):
    x, y = XY
    assert ga.gradcheck(fused_function(tree), (ga.tensor(x), ga.tensor(y)))


@settings(max_examples=10, deadline=None)
@given(tree=expressions(smooth=True))
def test_random_programs_second_order(tree):
    x, y = XY
    assert ga.gradcheck(fused_function(tree), (ga.tensor(x[:2, :2]), ga.tensor(y[:2])), check_second_order=True)


@SETTINGS
@given(tree=expressions(smooth=True))
def test_fused_gradients_equal_composed_gradients(tree):
    x, y = XY
    f = fused_function(tree)
    u = np.random.default_rng(1).standard_normal((3, 4))
    grads = []
    for fn in (f, lambda a, b: evaluate(tree, ga, a, b) + 0.0 * a + 0.0 * b):
        loss = lambda a, b, fn=fn: (fn(a, b) * u).sum()
        grads.append(ga.grad(loss, argnums=(0, 1))(ga.tensor(x), ga.tensor(y)))
    for fused, composed in zip(*grads):
        np.testing.assert_allclose(fused.numpy(), composed.numpy(), rtol=1e-10, atol=1e-12)


@ga.elementwise
def swish(x, beta):
    return x / (1.0 + math.exp(-beta * x))


def test_swish_closed_form_gradient_and_scalar_argument():
    x = np.linspace(-4, 4, 9)
    t = ga.tensor(x, requires_grad=True)
    y = swish(t, 1.5)
    s = 1.0 / (1.0 + np.exp(-1.5 * x))
    np.testing.assert_allclose(y.numpy(), x * s, rtol=1e-14)
    y.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), s + 1.5 * x * s * (1 - s), rtol=1e-13)
    np.testing.assert_allclose(swish(t, beta=0.5).numpy(), x / (1 + np.exp(-0.5 * x)), rtol=1e-14)


def test_gradient_for_tensor_extra_argument_and_broadcasting():
    rng = np.random.default_rng(3)
    x, beta = ga.tensor(rng.standard_normal((4, 3))), ga.tensor(rng.uniform(0.5, 2, (3,)))
    assert ga.gradcheck(swish, (x, beta), check_second_order=True)


def test_hvp_and_jvp_of_grad_through_fused_kernels():
    x = np.array([-1.0, 0.3, 2.0])
    v = np.array([0.5, -1.0, 2.0])
    f = lambda t: swish(t, 1.0).sum()
    g, hv = ga.hvp(f, (ga.tensor(x),), (ga.tensor(v),))
    s = 1 / (1 + np.exp(-x))
    second = s * (1 - s) * (2 + x * (1 - 2 * s))  # d2/dx2 of x * sigmoid(x)
    np.testing.assert_allclose(hv.numpy(), second * v, rtol=1e-10)
    np.testing.assert_allclose(g.numpy(), s + x * s * (1 - s), rtol=1e-12)


def test_vjp_saves_only_what_the_derivative_reads():
    x = ga.tensor([0.5, 1.0], requires_grad=True)
    c = ga.tensor([2.0, 3.0])
    assert set(ga.tanh(x).grad_fn.saved) == {"y"}
    assert set((x * c).grad_fn.saved) == {"b"}
    both = swish(x, c)
    assert set(both.grad_fn.saved) <= {"x0", "x1", "y"}


def test_one_kernel_forward_and_one_kernel_backward_for_all_inputs(monkeypatch):
    from gpuad.elementwise import host

    calls = []
    pointwise = host.pointwise

    def spy(program, *arrays):
        calls.append(program.name)
        return pointwise(program, *arrays)

    monkeypatch.setattr(ga.backends.cpu.xp, "pointwise", spy)  # an op with params (the linearized forward)
    monkeypatch.setattr(host, "pointwise", spy)  # a program's kernel (float64 is not its guarded fast case)
    a = ga.tensor(np.array([1.0, -2.0]), requires_grad=True)
    b = ga.tensor(np.array([0.5, 0.25]), requires_grad=True)
    y = swish(a, b)
    y.sum().backward(retain_graph=True)
    # the derivative would evaluate exp again: the forward pass writes y and both partials at once
    assert calls == ["swish_lin"]  # and the backward multiplies the partials by g in place
    assert y.grad_fn.params["partials"] == {}  # used once, then released
    first = a.grad.numpy().copy(), b.grad.numpy().copy()
    calls.clear()
    y.sum().backward()  # a retained graph's second backward: the derived VJP program, one pass
    assert calls.count("swish_vjp") == 1 and "swish" not in calls
    np.testing.assert_allclose(a.grad.numpy(), 2 * first[0], rtol=1e-14)
    np.testing.assert_allclose(b.grad.numpy(), 2 * first[1], rtol=1e-14)
    x, beta = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    s = 1 / (1 + np.exp(-beta * x))
    np.testing.assert_allclose(first[0], s + beta * x * s * (1 - s), rtol=1e-13)
    np.testing.assert_allclose(first[1], x * x * s * (1 - s), rtol=1e-13)


def test_linear_ops_pass_the_gradient_on_and_sub_negates_it_in_one_kernel(monkeypatch):
    from gpuad.elementwise import host

    calls = []
    pointwise = host.pointwise
    monkeypatch.setattr(host, "pointwise", lambda p, *arrays: calls.append(p.name) or pointwise(p, *arrays))
    a = ga.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)  # float64: kernels call host.pointwise
    b = ga.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    g = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    added, subtracted = a + b, a - b
    calls.clear()
    added.backward(ga.tensor(g))
    assert calls == []  # add's gradients are g itself (b's summed over the broadcast axis)
    np.testing.assert_array_equal(a.grad.numpy(), g)
    np.testing.assert_array_equal(b.grad.numpy(), g.sum(0))
    a.grad = b.grad = None
    subtracted.backward(ga.tensor(g))
    assert calls == ["sub_vjp_part"]  # g passed on for a, one kernel for -g
    np.testing.assert_array_equal(a.grad.numpy(), g)
    np.testing.assert_array_equal(b.grad.numpy(), -g.sum(0))


def test_inputs_with_one_shared_partial_get_their_own_gradient():
    @ga.elementwise
    def f(a, b):
        return math.cos(a + b)  # d/da and d/db are one node: the forward returns one array for both

    x, y = np.array([0.3, -1.2]), np.array([0.7, 2.0])
    a, b = ga.tensor(x, requires_grad=True), ga.tensor(y, requires_grad=True)
    (f(a, b) * ga.tensor(np.array([2.0, 3.0]))).sum().backward()
    expected = -np.sin(x + y) * [2.0, 3.0]
    np.testing.assert_allclose(a.grad.numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(b.grad.numpy(), expected, rtol=1e-14)


def test_derivative_graph_shares_subexpressions():
    @ga.elementwise
    def f(x):
        return math.tanh(x) * math.tanh(x) + math.exp(math.tanh(x))

    prog = f.program(("f",))
    ops = [n.op for n in prog.nodes]
    assert ops.count("tanh") == 1 and ops.count("exp") == 1
    vjp_ops = [n.op for n in prog.vjp((0,)).nodes]
    assert vjp_ops.count("tanh") == 1 and vjp_ops.count("exp") == 1


def test_math_imported_inside_the_function_and_helpers():
    def helper(v):
        return math.sin(v) * 2.0

    @ga.elementwise
    def f(x):
        import math as m
        from math import cos

        return m.exp(x) + cos(x) + helper(x) + abs(x) + max(x, 0.5) + min(x, -0.5, 0.0)

    x = np.array([-1.0, 0.2, 1.5])
    expected = np.exp(x) + np.cos(x) + 2 * np.sin(x) + np.abs(x) + np.maximum(x, 0.5) + np.minimum(x, -0.5)
    np.testing.assert_allclose(f(ga.tensor(x)).numpy(), expected, rtol=1e-14)


def test_where_comparisons_and_nested_elementwise_functions():
    @ga.elementwise
    def leaky(x, slope):
        return ga.where(x > 0, x, slope * x)

    @ga.elementwise
    def f(x):
        return leaky(x, 0.1) * ga.sigmoid(x) + ((x > 1.0) & (x < 2.0)) * 3.0

    x = np.array([-2.0, 0.5, 1.5, 3.0])
    expected = np.where(x > 0, x, 0.1 * x) / (1 + np.exp(-x)) + ((x > 1) & (x < 2)) * 3.0
    np.testing.assert_allclose(f(ga.tensor(x)).numpy(), expected, rtol=1e-14)
    assert ga.gradcheck(f, ga.tensor(np.array([-2.0, 0.5, 1.5, 3.0])))


def test_dtypes_float32_float16_and_broadcasting_follow_numpy():
    x32 = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    beta = np.float32(1.5)
    out = swish(ga.tensor(x32), ga.tensor(np.array([1.0, 2.0, 0.5, 1.5], np.float32)))
    assert out.dtype == np.float32 and out.shape == (3, 4)
    h = swish(ga.tensor(x32.astype(np.float16)), 1.5)
    assert h.dtype == np.float16
    ref = (x32 / (1 + np.exp(-beta * x32))).astype(np.float16)
    np.testing.assert_allclose(h.numpy().astype(np.float32), ref.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert swish(ga.tensor(x32), 1.5).dtype == np.float32  # a Python scalar does not promote
    with pytest.raises(ga.ShapeError, match="swish"):
        swish(ga.tensor(np.ones(3)), ga.tensor(np.ones(4)))


def test_builtin_semantics_kept():
    x = ga.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    ga.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])  # relu'(0) = 0
    a, b = ga.tensor([1.0, 2.0], requires_grad=True), ga.tensor([1.0, 3.0], requires_grad=True)
    ga.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0.0])  # ties split the gradient
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 1.0])
    c = ga.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    ga.clip(c, 0.0, 1.0).sum().backward()
    np.testing.assert_array_equal(c.grad.numpy(), [0, 1, 1, 1, 0])  # passes at the bounds
    assert ga.relu(ga.tensor([np.nan])).numpy()[0] != 0  # nan propagates as in maximum(x, 0)
    assert ga.add(ga.tensor([1, 2]), 3).dtype == np.int64


def test_second_process_reads_the_numba_kernel_from_disk(tmp_path):
    script = (
        "import numpy as np, gpuad as ga, math\n"
        "from gpuad.elementwise import cache\n"
        "f = ga.elementwise(lambda x: math.tanh(x) * x + 1.0, name='cached_probe')\n"
        "f(ga.tensor(np.ones(1 << 16, np.float32)))\n"
        "print(cache.stats['compiles'], cache.stats['disk_hits'])\n")
    root = str(Path(ga.__file__).resolve().parents[1])
    env = {**os.environ, "GPUAD_CACHE_DIR": str(tmp_path), "PYTHONPATH": root}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
            for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["1", "0"], ["0", "1"]]


# ---- errors ------------------------------------------------------------------------------------------
def test_data_dependent_if_names_the_construct_and_line():
    @ga.elementwise
    def bad(x):
        if x > 0:  # the line the error names
            return x
        return -x

    with pytest.raises(TraceError, match=r"`if`.*test_elementwise.py:\d+.*`if x > 0:  # the line"):
        bad(ga.tensor([1.0]))


@pytest.mark.parametrize("body, construct", [
    ("    for v in x:\n        pass\n    return x\n", "loop over a traced value"),
    ("    return sum(1.0 for _ in range(x))\n", "as an integer"),
    ("    return math.gamma(x)\n", "math.gamma"),
    ("    return float(x)\n", "float()"),
    ("    return np.frexp(x)[0]\n", "numpy.frexp"),
    ("    return x // 2\n", "floor division"),
    ("    return (x, x)\n", "not a tuple"),
])
def test_unsupported_constructs_raise_clear_errors(body, construct):
    scope = {"math": math, "np": np}
    exec("def f(x):\n" + body, scope)
    with pytest.raises(TraceError, match=construct.replace("(", r"\(").replace(")", r"\)")):
        ga.elementwise(scope["f"])(ga.tensor([1.0]))


@ga.elementwise
def _soft_clip(x, y):
    return ga.where(x > y, math.tanh(x - y) + y, x) * ga.sigmoid(y) + x ** 2 / (1.0 + y * y)


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_shapes_and_dtypes_follow_numpy_broadcasting_and_promotion(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    x, y = (rng.uniform(-3, 3, s).astype(dtype) for s in shapes.input_shapes)
    out = _soft_clip(ga.tensor(x), ga.tensor(y))
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    want = np.where(x64 > y64, np.tanh(x64 - y64) + y64, x64) / (1 + np.exp(-y64)) + x64 ** 2 / (1 + y64 * y64)
    assert out.shape == shapes.result_shape and out.dtype == dtype
    tol = {np.float16: 4e-3, np.float32: 2e-6, np.float64: 1e-13}[dtype]
    np.testing.assert_allclose(out.numpy().astype(np.float64), want, rtol=tol, atol=tol)
    a = ga.tensor(x.astype(np.float64), requires_grad=True)
    b = ga.tensor(y.astype(np.float64), requires_grad=True)
    _soft_clip(a, b).sum().backward()
    assert a.grad.shape == x.shape and b.grad.shape == y.shape  # broadcasting undone


def test_grad_of_one_input_from_a_linearized_forward_of_two():
    """The forward wrote partials for both inputs; ga.grad asks for b only: the joint VJP picks b's."""
    x, beta = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    a = ga.tensor(x, requires_grad=True)
    b = ga.tensor(beta, requires_grad=True)
    (gb,) = ga.autograd.grad(swish(a, b).sum(), [b])
    s = 1 / (1 + np.exp(-beta * x))
    np.testing.assert_allclose(gb.numpy(), x * x * s * (1 - s), rtol=1e-13)
    assert a.grad is None
