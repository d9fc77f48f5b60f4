"""The paths the MLP training step takes (benchmarks/overhead.py): Numba kernels reading broadcast inputs
in place (rows, columns, one value), serial and parallel; logsumexp as one primitive; sum_to and matmul
rules that take one op each; one gpuad step equal to the hand-written NumPy step."""
from __future__ import annotations

import numpy as np
import pytest

import gpuad as ga
from gpuad.backends import cpu
from gpuad.elementwise import cache, numba_target, numpy_target
from gpuad.ops import linalg

RNG = np.random.default_rng(0)


@ga.elementwise
def _mix(x, y, z):
    return ga.where(x > y, x * z - y, y / (1.0 + z * z))


def _reference(prog, arrays):
    return numpy_target.evaluate(prog, cpu.xp, arrays)


# (x, y, z shapes, kernel modes): bias rows, keepdims columns, both at once, one broadcast value, and
# patterns read after expanding (a middle axis, row and column splits that disagree)
BROADCASTS = [
    ((64, 48), (48,), (64, 48), "frf"),
    ((64, 48), (64, 1), (1, 48), "fcr"),
    ((4, 16, 48), (16, 48), (4, 1, 1), "frc"),
    ((64, 48), (), (1, 1), "fss"),
    ((8, 16, 24), (8, 1, 24), (24,), "ffr"),
    ((8, 16, 24), (24,), (8, 16, 1), "frf"),
]


@pytest.mark.parametrize("shapes", BROADCASTS, ids=lambda s: "-".join(map(str, s[:3])))
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_kernel_reads_rows_and_columns_in_place_and_matches_numpy(shapes, parallel, monkeypatch):
    if parallel:
        monkeypatch.setattr(numba_target, "PARALLEL_MIN_SIZE", 1)
        monkeypatch.setattr(numba_target, "CHUNK_ROWS_MIN", 1)
    x, y, z = (RNG.standard_normal(s).astype(np.float32) for s in shapes[:3])
    prog = _mix.program(("f", "f", "f"))
    got = numba_target.run(prog, (x, y, z))
    np.testing.assert_allclose(got, _reference(prog, (x, y, z)), rtol=1e-6, atol=1e-6)
    plan = numba_target.plan(prog, (x, y, z))
    source = numba_target.kernel_source(prog, np.dtype(np.float32), tuple(shapes[3]), parallel)
    assert plan is not False and ("def kernel(n0, n1" in source) == ("r" in shapes[3] or "c" in shapes[3])
    assert ("numba.prange" in source) == parallel and (plan[4] > 0) == parallel  # chunk size: 0 when serial


def test_a_broadcast_value_with_zero_strides_and_non_contiguous_inputs():
    x = RNG.standard_normal((48, 64)).astype(np.float64).T  # (64, 48), not C-contiguous
    y = np.broadcast_to(np.float64(0.5), (64, 48))  # one value, every stride 0
    z = RNG.standard_normal(48)[::-1]  # a row with a negative stride
    prog = _mix.program(("f", "f", "f"))
    assert [m for m, _ in numba_target.plan(prog, (x, y, z))[1]] == ["f", "b", "f"]
    np.testing.assert_allclose(numba_target.run(prog, (x, y, z)), _reference(prog, (x, y, z)), rtol=1e-13)


def test_plans_tell_byte_orders_apart():
    """A contiguous native input is passed as a view; a byte-swapped one of the same shape is converted."""
    x = RNG.standard_normal((64, 48)).astype(np.float32)
    prog = ga.ops.elementwise.PROGRAMS["relu"]
    np.testing.assert_array_equal(numba_target.run(prog, (x,)), np.maximum(x, 0))
    np.testing.assert_array_equal(numba_target.run(prog, (x.astype(">f4"),)), np.maximum(x, 0))


def test_float16_and_bool_inputs_in_the_row_kernel():
    x = RNG.standard_normal((64, 40)).astype(np.float16)
    keep = RNG.random(40) > 0.5
    prog = ga.ops.elementwise.PROGRAMS["where"]
    got = numba_target.run(prog, (keep, x, np.float16(0.0)))
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, np.where(keep, x, np.float16(0.0)))


def test_call_plans_are_cached_per_shapes_and_bounded(monkeypatch):
    prog = _mix.program(("f", "f", "f"))
    x, y = RNG.standard_normal((32, 8)), RNG.standard_normal(8)
    numba_target.run(prog, (x, y, y))
    before = dict(cache.stats)
    numba_target.run(prog, (x, y, y))
    assert cache.stats["memory_hits"] == before["memory_hits"] + 1 and cache.stats["compiles"] == before["compiles"]
    monkeypatch.setattr(numba_target, "MAX_PLANS", 2)
    for n in (3, 4, 5):
        numba_target.run(prog, (x[:n], y, y))
    assert len(prog.compiled["numba_plans"]) <= 2


def test_numba_path_of_an_op_on_a_bias_sized_broadcast_gives_numpy_gradients():
    """x @ w + b and relu at the benchmark's sizes (Numba path) against the same ops below the threshold."""
    x, w, b = RNG.standard_normal((128, 300)), RNG.standard_normal((300, 256)) / 17, RNG.standard_normal(256)
    ts = [ga.tensor(a, requires_grad=True) for a in (x, w, b)]
    (ts[0] @ ts[1] + ts[2]).relu().sum().backward()
    z = x @ w + b
    np.testing.assert_allclose(ts[2].grad.numpy(), (z > 0).sum(0), rtol=1e-12)
    np.testing.assert_allclose(ts[1].grad.numpy(), x.T @ (z > 0), rtol=1e-12)


# ---- logsumexp -------------------------------------------------------------------------------------
def _lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


@pytest.mark.parametrize("axis, keepdims", [(None, False), (1, True), (1, False), ((0, 2), False), (-1, True)])
def test_logsumexp_is_one_primitive_with_softmax_gradient(axis, keepdims):
    x = RNG.standard_normal((3, 4, 5)) * 4
    t = ga.tensor(x, requires_grad=True)
    y = ga.logsumexp(t, axis=axis, keepdims=keepdims)
    assert y.grad_fn.name == "logsumexpBackward"
    np.testing.assert_allclose(y.numpy(), _lse(x, axis, keepdims), rtol=1e-14)
    y.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), np.exp(x - _lse(x, axis, keepdims=True)), rtol=1e-13)
    assert ga.gradcheck(lambda v: ga.logsumexp(v, axis=axis, keepdims=keepdims), ga.tensor(x[:2, :3, :2]),
                        check_second_order=True)


def test_logsumexp_infinite_slices_and_integer_input():
    x = np.array([[-np.inf, -np.inf], [1.0, -np.inf], [0.0, 0.0]])
    with np.errstate(divide="ignore"):
        got = ga.logsumexp(ga.tensor(x), axis=1).numpy()
    np.testing.assert_allclose(got, [-np.inf, 1.0, np.log(2.0)])
    out = ga.logsumexp(ga.tensor(np.arange(6).reshape(2, 3)), axis=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), _lse(np.arange(6.0).reshape(2, 3), 0), rtol=1e-6)


def test_logsumexp_gradient_on_the_numba_path_reads_the_column_in_place():
    x = RNG.standard_normal((4096, 10)).astype(np.float32)  # 40960 elements: the Numba kernel
    t = ga.tensor(x, requires_grad=True)
    ga.logsumexp(t, axis=1, keepdims=True).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), np.exp(x - _lse(x, 1, True)), rtol=2e-6, atol=1e-7)
    modes = [key[2] for key in ga.ops.reduce._SCALED_SOFTMAX.compiled if key[0] == "numba"]
    assert ("f", "c", "s") in modes  # x, the (4096, 1) logsumexp read per row, g one broadcast value


# ---- sum_to and matmul rules -------------------------------------------------------------------------
def test_sum_to_leading_axes_is_one_op_and_kept_axes_keep_their_ones():
    g = ga.tensor(RNG.standard_normal((2, 6, 5)))
    bias = ga.sum_to(g, (5,))
    assert bias.shape == (5,) and bias.grad_fn is None
    np.testing.assert_allclose(bias.numpy(), g.numpy().sum((0, 1)), rtol=1e-14)
    np.testing.assert_allclose(ga.sum_to(g, (6, 1)).numpy(), g.numpy().sum(0).sum(1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(ga.sum_to(g, (1, 5)).numpy(), g.numpy().sum((0, 1))[None], rtol=1e-14)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_with_transposed_operands_forward_and_every_rule(ta, tb):
    a = RNG.standard_normal((2, 4, 3) if ta else (2, 3, 4))
    b = RNG.standard_normal((5, 4) if tb else (4, 5))
    want = (np.swapaxes(a, -1, -2) if ta else a) @ (b.T if tb else b)
    got = linalg._matmul(ga.tensor(a), ga.tensor(b), ta, tb)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)
    assert ga.gradcheck(lambda x, y: linalg._matmul(x, y, ta, tb), (ga.tensor(a), ga.tensor(b)),
                        check_second_order=True)


def test_matmul_backward_runs_no_transpose_op(monkeypatch):
    a, b = (ga.tensor(RNG.standard_normal(s), requires_grad=True) for s in ((3, 4), (4, 5)))
    ran = []
    transpose = ga.ops.shape.TRANSPOSE.forward
    monkeypatch.setattr(ga.ops.shape.TRANSPOSE, "forward", lambda *args, **kw: ran.append(1) or transpose(*args, **kw))
    (a @ b).sum().backward()
    assert not ran
    np.testing.assert_allclose(a.grad.numpy(), np.ones((3, 5)) @ b.numpy().T, rtol=1e-14)


def test_one_gpuad_mlp_step_equals_the_hand_written_numpy_step():
    from gpuad.bench.cases import Env
    from gpuad.bench.overhead import gpuad_mlp, numpy_mlp

    env = Env(device="cpu", sizes=[8], samples=1, min_sample_s=0.0, compare=())
    ga_step, np_step = gpuad_mlp(env), numpy_mlp(env)
    for _ in range(2):
        (ga_loss, ga_w1), (np_loss, np_w1) = ga_step(), np_step()
        np.testing.assert_allclose(ga_loss.item(), np_loss, rtol=1e-5)
        np.testing.assert_allclose(ga_w1.numpy(), np_w1, rtol=1e-5, atol=1e-6)
