"""The tensor surface of API.md: creation and dtype rules, metadata, conversions, operators, aliases."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gpuad as ga


@pytest.mark.parametrize("data,dtype", [
    (1.5, np.float32), ([1.0, 2.0], np.float32), (3, np.int64), ([1, 2], np.int64), (True, np.bool_),
    (np.ones(2), np.float64), (np.ones(2, np.float16), np.float16), (np.arange(3, dtype=np.int32), np.int32),
])
def test_tensor_dtype_rules(data, dtype):
    assert ga.tensor(data).dtype == dtype


def test_tensor_explicit_dtype_and_numpy_without_copy():
    a = np.ones(3)
    t = ga.tensor(a)
    assert np.shares_memory(t.numpy(), a)
    assert ga.tensor(a, dtype=ga.float32).dtype == np.float32
    assert ga.tensor([1, 2], dtype="float64").dtype == np.float64


def test_creation_functions():
    assert ga.zeros(2, 3).shape == (2, 3) and ga.zeros((2, 3)).dtype == np.float32
    assert ga.ones(4, dtype=ga.float64).numpy().sum() == 4
    assert ga.full((2,), 7).dtype == np.int64 and ga.full((2,), 0.5).numpy().tolist() == [0.5, 0.5]
    np.testing.assert_array_equal(ga.arange(5).numpy(), np.arange(5))
    assert ga.arange(0, 1, 0.25).dtype == np.float32
    np.testing.assert_array_equal(ga.eye(3).numpy(), np.eye(3))
    x = ga.randn(3, 2)
    assert ga.zeros_like(x).shape == (3, 2) and ga.ones_like(x, dtype=ga.float64).dtype == np.float64
    assert ga.rand(100).numpy().min() >= 0 and ga.rand(100).numpy().max() < 1


def test_manual_seed_is_deterministic():
    ga.manual_seed(123)
    a = ga.randn(5).numpy()
    ga.manual_seed(123)
    np.testing.assert_array_equal(a, ga.randn(5).numpy())
    assert not np.array_equal(a, ga.randn(5).numpy())


def test_dtypes_exported():
    assert (ga.float16, ga.float32, ga.float64, ga.int32, ga.int64, ga.bool_) == tuple(
        np.dtype(n) for n in ("float16", "float32", "float64", "int32", "int64", "bool"))


def test_conversions_and_protocols():
    x = ga.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.to(ga.float16).dtype == np.float16 and x.to("cpu") is x and x.cpu() is x
    assert x.double().dtype == np.float64
    assert x.sum().item() == 10.0 and float(x[0, 1]) == 2.0 and len(x) == 2
    assert [r.numpy().tolist() for r in x] == [[1.0, 2.0], [3.0, 4.0]]
    assert np.asarray(x).dtype == np.float32
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_numpy_arrays_and_scalars_on_either_side():
    x = ga.tensor([1.0, 2.0])
    a = np.array([10.0, 20.0], dtype=np.float32)
    for out, expected in [(x + a, [11, 22]), (a + x, [11, 22]), (a * x, [10, 40]), (2 - x, [1, 0]),
                          (x / 2, [0.5, 1]), (2 / x, [2, 1]), (x ** 2, [1, 4]), (2 ** x, [2, 4])]:
        assert isinstance(out, ga.Tensor)
        np.testing.assert_allclose(out.numpy(), expected)
    assert (x + 1).dtype == np.float32 and (x * 2.5).dtype == np.float32
    n = ga.tensor([1, 2])
    assert (n * 2).dtype == np.int64 and (n * 2.5).dtype == np.float32 and (2.5 * n).dtype == np.float32
    assert (x + ga.tensor([1.0, 2.0], dtype=ga.float64)).dtype == np.float64


def test_comparisons_return_bool_tensors():
    x = ga.tensor([1.0, 2.0, 3.0])
    assert (x > 1.5).dtype == np.bool_
    np.testing.assert_array_equal(((x > 1.5) & (x < 2.5)).numpy(), [False, True, False])
    np.testing.assert_array_equal((~(x == 2.0)).numpy(), [True, False, True])


def test_shape_aliases():
    x = ga.arange(24).reshape(2, 3, 4)
    assert x.transpose(2, 0, 1).shape == (4, 2, 3) and x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.T.shape == (4, 3, 2) and x.swapaxes(0, 2).shape == (4, 3, 2) and x.mT.shape == (2, 4, 3)
    assert x.view(6, 4).shape == (6, 4) and x.flatten().shape == (24,)
    assert x.sum(dim=1).shape == (2, 4) and x.unsqueeze(0).shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(x.repeat(2, axis=0).numpy(), np.repeat(np.arange(24).reshape(2, 3, 4), 2, 0))
    a, b = ga.split(ga.arange(6), 2)
    assert a.numpy().tolist() == [0, 1, 2] and b.numpy().tolist() == [3, 4, 5]


def test_requires_grad_flags():
    x = ga.tensor([1.0])
    assert not x.requires_grad and x.requires_grad_() is x and x.requires_grad
    y = x * 2
    assert not y.is_leaf and y.grad_fn is not None
    with pytest.raises(ga.GradError, match="non-leaf"):
        y.requires_grad = False


def _unbroadcast(full: np.ndarray, shape: tuple) -> np.ndarray:
    """NumPy reference for summing a broadcast gradient back to `shape`."""
    full = full.sum(axis=tuple(range(full.ndim - len(shape))))
    return full.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
       dtype=st.sampled_from([np.float32, np.float64]), op=st.sampled_from(["add", "mul", "sub", "maximum"]),
       seed=st.integers(0, 2**16))
def test_broadcasting_forward_and_gradients(shapes, dtype, op, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    ta, tb = ga.tensor(a, requires_grad=True), ga.tensor(b, requires_grad=True)
    fn = {"add": np.add, "mul": np.multiply, "sub": np.subtract, "maximum": np.maximum}[op]
    out = getattr(ga, op)(ta, tb)
    np.testing.assert_allclose(out.numpy(), fn(a, b), rtol=1e-6)
    assert out.shape == shapes.result_shape and out.dtype == dtype
    out.sum().backward()
    A, B = np.broadcast_arrays(a, b)
    da, db = {"add": (1, 1), "mul": (B, A), "sub": (1, -1), "maximum": (A > B, B > A)}[op]
    for t, d, shape in ((ta, da, sa), (tb, db, sb)):
        expected = _unbroadcast(np.broadcast_to(np.asarray(d, dtype=np.float64), shapes.result_shape), shape)
        assert t.grad.shape == shape and t.grad.dtype == dtype
        np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(data=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                       elements=st.floats(-3, 3)), keepdims=st.booleans(), data_axis=st.data())
def test_reductions_random_axes(data, keepdims, data_axis):
    axis = data_axis.draw(st.one_of(st.none(), st.integers(-data.ndim, data.ndim - 1)))
    x = ga.tensor(data, requires_grad=True)
    out = ga.sum(x, axis=axis, keepdims=keepdims) + ga.mean(x, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.numpy(), data.sum(axis=axis, keepdims=keepdims)
                               + data.mean(axis=axis, keepdims=keepdims))
    out.sum().backward()
    n = data.size if axis is None else data.shape[axis]
    np.testing.assert_allclose(x.grad.numpy(), np.full(data.shape, 1 + 1 / n))
