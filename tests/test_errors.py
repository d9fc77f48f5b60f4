"""Bad input raises a clear error that names the op and the shapes/dtypes/devices involved."""
from __future__ import annotations

import numpy as np
import pytest

import gpuad as ga
from gpuad.backends import CPUBackend


def test_broadcast_mismatch_names_op_and_shapes():
    with pytest.raises(ga.ShapeError, match=r"add: .*\(2, 3\) float32.*\(4,\) float32"):
        ga.ones(2, 3) + ga.ones(4)


def test_matmul_mismatch_names_dims():
    with pytest.raises(ga.ShapeError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) are not aligned"):
        ga.ones(2, 3) @ ga.ones(4, 5)


def test_reshape_mismatch():
    with pytest.raises(ValueError, match="reshape: cannot reshape a tensor of 6 elements into shape"):
        ga.ones(2, 3).reshape(4, 2)


def test_backward_through_freed_graph_names_op():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(ga.GraphFreedError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward_and_accumulates():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.numpy())


def test_nonscalar_backward_needs_grad():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ga.GradError, match=r"scalar outputs.*shape \(2,\)"):
        (x * 2).backward()
    (x * 2).backward(ga.tensor([1.0, 3.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 6.0])


def test_backward_grad_shape_mismatch():
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ga.GradError, match=r"grad has shape \(3,\)"):
        (x * 2).backward(ga.ones(3))


def test_backward_without_requires_grad():
    with pytest.raises(ga.GradError, match="does not require grad"):
        ga.ones(3).sum().backward()


@pytest.mark.parametrize("inplace", ["+=", "-=", "*=", "/=", "setitem", "zero_", "copy_"])
def test_inplace_change_of_saved_tensor_raises(inplace):
    x = ga.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * 1.0
    y = (h.exp()).sum() + (h * h).sum()  # mul saves h
    if inplace == "setitem":
        h[0] = 5.0
    elif inplace == "zero_":
        h.zero_()
    elif inplace == "copy_":
        h.copy_(ga.ones(3))
    else:
        exec(f"h {inplace} 2.0")
    with pytest.raises(ga.InplaceModifiedError, match=r"mul: .*modified by an in-place operation"):
        y.backward()


def test_inplace_ops_on_tensors_are_differentiable():
    x = ga.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * 1.0
    h += 1.0
    h *= 3.0
    h -= x
    h /= 2.0
    h[1] = 0.0
    h.sum().backward()
    # h = ((x + 1) * 3 - x) / 2 = x + 1.5 except h[1] = 0
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(h.numpy(), [2.5, 0.0, 4.5])


@pytest.mark.parametrize("overwrite", [lambda h: h.zero_(), lambda h: h.fill_(2.0), lambda h: h.copy_(ga.ones(2))])
def test_overwriting_a_nonleaf_with_a_constant_cuts_its_gradient(overwrite):
    x = ga.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    overwrite(h)
    (h * 3 + x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])  # nothing flows through the old h = 2x


def test_inplace_on_leaf_requires_no_grad():
    w = ga.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ga.GradError, match="leaf tensor that requires grad.*no_grad"):
        w -= 0.1
    with pytest.raises(ga.GradError, match="leaf tensor that requires grad"):
        w[0] = 3.0
    version = w._version[0]
    with ga.no_grad():
        w -= 0.5
        w *= 2.0
        w /= 4.0
        w += 1.0
        w[1] = 7.0
    np.testing.assert_allclose(w.numpy(), [1.25, 7.0])
    assert w._version[0] == version + 5 and w.is_leaf and w.requires_grad
    buffer = w.numpy()
    with ga.no_grad():
        w -= ga.tensor([0.25, 1.0])  # the optimizer step: written into the same buffer
    assert w.numpy() is buffer and buffer.tolist() == [1.0, 6.0]
    with pytest.raises(ValueError, match=r"sub_ \(-=\): in-place result .* cannot change a tensor's shape"):
        with ga.no_grad():
            w -= ga.ones(3, 2)


def test_inplace_writes_through_views_and_bumps_shared_version():
    base = ga.zeros(2, 3)
    row = base[0]
    row += 1.0
    np.testing.assert_allclose(base.numpy(), [[1, 1, 1], [0, 0, 0]])
    assert base._version is row._version and base._version[0] == 1


def test_inplace_dtype_that_cannot_hold_result():
    x = ga.tensor([1, 2, 3])
    with pytest.raises(ga.DtypeError, match=r"add_ \(\+=\): cannot write a float32 result into a int64"):
        x += 0.5


def test_index_out_of_range_names_op():
    with pytest.raises(ga.IndexOutOfRange, match=r"getitem: .*out of bounds.*\(3, 2\)"):
        ga.ones(3, 2)[5]
    with pytest.raises(ga.IndexOutOfRange, match="getitem"):
        ga.ones(3, 2)[[0, 7]]
    with pytest.raises(ga.IndexOutOfRange, match="setitem"):
        ga.ones(3)[4] = 1.0


def test_index_with_float_array_is_rejected():
    with pytest.raises(ga.DtypeError, match="integer or bool"):
        ga.ones(3)[np.array([0.5])]


def test_int_tensor_cannot_require_grad():
    with pytest.raises(ga.GradError, match=r"only floating-point tensors.*int64"):
        ga.tensor([1, 2], requires_grad=True)
    x = ga.tensor([1, 2])
    with pytest.raises(ga.GradError, match="int64"):
        x.requires_grad_()


def test_int_inputs_get_no_gradient():
    w = ga.tensor([0.5, 1.5], requires_grad=True)
    n = ga.tensor([2, 3])
    (w * n).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 3.0])
    assert n.grad is None


def test_mixing_devices_names_both():
    other = CPUBackend()
    other.device = "fake:1"
    a = ga.ones(2)
    b = ga.tensor(np.ones(2, np.float32), device=other)
    with pytest.raises(ga.DeviceError, match=r"mul: expected all tensors on the same device.*on cpu.*on fake:1"):
        a * b


def test_unknown_device():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        ga.zeros(2, device="tpu")


def test_item_of_many_elements():
    with pytest.raises(ValueError, match=r"item: only one-element tensors.*\(2,\)"):
        ga.ones(2).item()


def test_error_is_not_a_bare_numpy_traceback():
    with pytest.raises(ga.ShapeError) as info:
        ga.ones(2, 3) * ga.ones(3, 2)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.skipif(ga.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_says_what_is_available():
    with pytest.raises(ga.DeviceError, match=r"device 'cuda:0' is not available.*available backends: \['numpy'"):
        ga.ones(2).to("cuda")


_IN_PLACE = {
    "add_ (+=)": lambda t: t.__iadd__(1.0), "sub_ (-=)": lambda t: t.__isub__(1.0),
    "mul_ (*=)": lambda t: t.__imul__(2.0), "div_ (/=)": lambda t: t.__itruediv__(2.0),
    "setitem (x[idx] = v)": lambda t: t.__setitem__(0, 5.0), "fill_": lambda t: t.fill_(3.0),
    "copy_": lambda t: t.copy_(ga.zeros(t.shape)),
}


@pytest.mark.parametrize("opname", sorted(_IN_PLACE))
def test_in_place_write_into_a_broadcast_view_or_read_only_array_names_the_op(opname):
    from numpy.lib.stride_tricks import as_strided

    write = _IN_PLACE[opname]
    shared = as_strided(np.zeros(1, np.float32), shape=(2, 3), strides=(0, 0), writeable=True)  # CuPy's kind
    frozen = np.ones((2, 3), np.float32)
    frozen.flags.writeable = False
    for t, why in [(ga.ones(3).broadcast_to((2, 3)), "broadcast view"), (ga.tensor(shared), "broadcast view"),
                   (ga.tensor(frozen), "read-only")]:
        with ga.no_grad(), pytest.raises(ga.ReadOnlyError, match=rf"{opname[:4]}.*\(2, 3\) float32.*{why}"):
            write(t)
    assert not shared.any() and (frozen == 1).all()  # nothing was written
    ok = ga.tensor(as_strided(np.zeros(3, np.float32), shape=(1, 3), strides=(0, 4), writeable=True))
    with ga.no_grad():
        write(ok)  # stride 0 along a dimension of one: one element per location, writable
    assert ok._version[0] == 1


def test_in_place_result_of_another_shape_is_a_shape_error():
    y = ga.ones(3)
    with pytest.raises(ga.ShapeError, match=r"add_ \(\+=\).*\(2, 3\)"):
        y += ga.ones((2, 3))
