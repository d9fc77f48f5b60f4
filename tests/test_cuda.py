"""The CUDA backend on a real GPU (every test is marked `gpu` and skipped, with the reason, without one):
device moves, every op of the op table on cuda against NumPy and against the CPU's gradients, the
CUDA kernels against the NumPy reference kernels in each storage dtype, the fused ops' derivatives
in float64 on the GPU, fused pointwise kernels, and the random-number state."""
from __future__ import annotations

import numpy as np
import pytest
from opinfo import OPS, sample_inputs

import gpuad as ga
from gpuad.backends import cpu_kernels
from gpuad.ops.fused import fused_adam_, fused_sgd_, layer_norm, softmax_cross_entropy

pytestmark = pytest.mark.gpu

# op-table entries whose lambdas build CPU tensors themselves (constants), so they cannot take cuda inputs
CPU_CONSTANTS = {"clip_tensor_bounds", "getitem_tensor_index"}
CASES = [pytest.param(info, sample, id=f"{info.name}-{i}") for info in OPS if info.name not in CPU_CONSTANTS
         for i, sample in enumerate(info.samples)]
HALF = ["float16", "float32", "float64"]


def _xp():
    import cupy

    return cupy


@pytest.fixture
def rng(request) -> np.random.Generator:
    return np.random.default_rng(abs(hash(request.node.name)) % 2**32)


def test_backend_is_available_and_lazy():
    assert "cupy" in ga.backends.available()
    assert ga.cuda.is_available() and ga.cuda.device_count() >= 1
    x = ga.zeros(3, device="cuda")
    assert x.device == "cuda:0" and isinstance(x.data, _xp().ndarray)
    assert ga.tensor([1.0], device="cuda:0")._backend is x._backend  # one backend object per device


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64", "bool"])
def test_copies_round_trip_exactly(rng, dtype):
    a = (rng.standard_normal((3, 5)) * 10).astype(dtype)
    g = ga.tensor(a).to("cuda")
    assert g.device == "cuda:0" and g.dtype == a.dtype
    np.testing.assert_array_equal(g.numpy(), a)
    np.testing.assert_array_equal(g.cpu().numpy(), a)
    np.testing.assert_array_equal(ga.tensor(a, device="cuda").numpy()[::-1], a[::-1])


def test_gradient_flows_back_across_devices(rng):
    a = rng.standard_normal(4)
    x = ga.tensor(a, requires_grad=True)
    (x.cuda() * 3.0).cpu().sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), 3.0)


def test_mixing_devices_raises_naming_both():
    with pytest.raises(ga.DeviceError, match="cpu.*cuda:0|cuda:0.*cpu"):
        ga.zeros(2) + ga.zeros(2, device="cuda")


@pytest.mark.skipif("ga.cuda.device_count() < 2", reason="needs two GPUs")
def test_copy_between_gpus_and_ops_on_the_second(rng):
    a = rng.standard_normal(1000)
    y = ga.tensor(a, device="cuda:0").to("cuda:1")
    assert y.device == "cuda:1" and y.data.device.id == 1
    np.testing.assert_array_equal(y.numpy(), a)
    with ga.cuda.device(1):
        z = ga.exp(y) * 2.0
    assert z.data.device.id == 1
    np.testing.assert_allclose(z.numpy(), np.exp(a) * 2.0, rtol=1e-12)


@pytest.mark.parametrize("info,sample", CASES)
def test_op_table_on_cuda(info, sample, rng):
    """Forward against NumPy in float64; reverse- and forward-mode derivatives equal the CPU's."""
    arrays = sample_inputs(info, sample, rng)
    grad = info.grad
    cpu = [ga.tensor(a, requires_grad=grad) for a in arrays]
    gpu = [ga.tensor(a, device="cuda", requires_grad=grad) for a in arrays]
    out_c, out_g = info.op(*cpu, **sample.kwargs), info.op(*gpu, **sample.kwargs)
    assert out_g.device == "cuda:0" and out_g.dtype == out_c.dtype and out_g.shape == out_c.shape
    np.testing.assert_allclose(out_g.numpy(), info.ref(*arrays, **sample.kwargs), rtol=1e-10, atol=1e-12)
    if not grad:
        return
    u = rng.standard_normal(out_c.shape)
    (out_c * ga.tensor(u)).sum().backward()
    (out_g * ga.tensor(u, device="cuda")).sum().backward()
    for tc, tg in zip(cpu, gpu):
        if tc.grad is None:
            assert tg.grad is None
            continue
        assert tg.grad.device == "cuda:0"
        np.testing.assert_allclose(tg.grad.numpy(), tc.grad.numpy(), rtol=1e-10, atol=1e-12)
    tangents = [rng.standard_normal(a.shape) for a in arrays]
    _, tan_c = ga.jvp(lambda *xs: info.op(*xs, **sample.kwargs), [ga.tensor(a) for a in arrays],
                      [ga.tensor(t) for t in tangents])
    _, tan_g = ga.jvp(lambda *xs: info.op(*xs, **sample.kwargs), [ga.tensor(a, device="cuda") for a in arrays],
                      [ga.tensor(t, device="cuda") for t in tangents])
    np.testing.assert_allclose(tan_g.numpy(), tan_c.numpy(), rtol=1e-10, atol=1e-12)


# ---- the CUDA kernels against the NumPy reference kernels -------------------------------------------------
def _tol(dtype: str) -> float:
    return {"float16": 2e-3, "bfloat16": 2e-2, "float32": 2e-5, "float64": 1e-12}[dtype]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 33), (64, 1000), (3, 5000)])
def test_softmax_xent_kernels_match_reference(rng, dtype, rows, cols):
    cp, kernels = _xp(), ga.backends.for_device("cuda").xp.kernels
    x = (rng.standard_normal((rows, cols)) * 3).astype(dtype)
    labels = rng.integers(0, cols, rows)
    labels[0] = -100
    if rows > 2:
        labels[1] = cols  # out of range: NaN, no crash
    loss = kernels.softmax_xent_forward(cp.asarray(x), cp.asarray(labels), -100)
    ref = cpu_kernels.softmax_xent_forward(x, labels, -100)
    assert loss.dtype == ref.dtype
    np.testing.assert_allclose(loss.get(), ref, rtol=_tol(dtype), atol=_tol(dtype))
    g = rng.standard_normal(rows).astype(ref.dtype)
    dx = kernels.softmax_xent_backward(cp.asarray(x), cp.asarray(labels), loss, cp.asarray(g), -100)
    dref = cpu_kernels.softmax_xent_backward(x, labels, ref, g, -100)
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(dx.get().astype(np.float64), dref.astype(np.float64), rtol=_tol(dtype),
                               atol=_tol(dtype))


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("rows,cols", [(1, 3), (9, 100), (33, 1024), (2, 6000)])
def test_layer_norm_kernels_match_reference(rng, dtype, affine, rows, cols):
    cp, kernels = _xp(), ga.backends.for_device("cuda").xp.kernels
    x = (rng.standard_normal((rows, cols)) * 2 + 1).astype(dtype)
    w = rng.standard_normal(cols).astype(dtype) if affine else None
    b = rng.standard_normal(cols).astype(dtype) if affine else None
    dev = [None if a is None else cp.asarray(a) for a in (x, w, b)]
    y = kernels.layer_norm_forward(*dev, 1e-5)
    np.testing.assert_allclose(y.get().astype(np.float64), cpu_kernels.layer_norm_forward(x, w, b, 1e-5)
                               .astype(np.float64), rtol=_tol(dtype), atol=_tol(dtype))
    g = rng.standard_normal((rows, cols)).astype(dtype)
    got = kernels.layer_norm_backward(dev[0], dev[1], cp.asarray(g), 1e-5, affine)
    ref = cpu_kernels.layer_norm_backward(x, w, g, 1e-5, affine)
    for a, r in zip(got, ref):
        if r is None:
            assert a is None
            continue
        assert a.dtype == r.dtype
        np.testing.assert_allclose(a.get().astype(np.float64), r.astype(np.float64),
                                   rtol=_tol(dtype) * 10, atol=_tol(dtype) * 10 * np.sqrt(rows))


def _assert_lists_close(device: list, host: list, tol: float) -> None:
    """Every device array of each list equals the host array at the same place."""
    for got, ref in zip(device, host):
        for a, r in zip(got, ref):
            np.testing.assert_allclose(a.get().astype(np.float64), r.astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,state", [("float32", "float32"), ("float64", "float64"), ("float16", "float16"),
                                         ("float16", "float32")])
@pytest.mark.parametrize("decoupled", [False, True])
def test_multi_tensor_adam_matches_reference(rng, dtype, state, decoupled):
    cp, kernels = _xp(), ga.backends.for_device("cuda").xp.kernels
    shapes = [(3,), (0,), (4097,), (70, 130), ()]  # a chunk edge, an empty tensor, a scalar
    host = [[rng.standard_normal(s).astype(dt) for s in shapes] for dt in (dtype, dtype, state, state)]
    host[3] = [np.asarray(np.abs(v)) for v in host[3]]
    dev = [[cp.asarray(a) for a in arrays] for arrays in host]
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1, step=3, decoupled=decoupled)
    kernels.adam_update(*dev, **hyper)
    cpu_kernels.adam_update(*host, **hyper)
    _assert_lists_close(dev, host, _tol(dtype))


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_multi_tensor_sgd_matches_reference(rng, dtype, momentum, nesterov):
    cp, kernels = _xp(), ga.backends.for_device("cuda").xp.kernels
    shapes = [(5,), (8193,), (2, 3)]
    host = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    dev = [[cp.asarray(a) for a in arrays] for arrays in host]
    hyper = dict(lr=0.1, momentum=momentum, weight_decay=0.01, nesterov=nesterov)
    kernels.sgd_update(*dev, **hyper)
    cpu_kernels.sgd_update(*host, **hyper)
    _assert_lists_close(dev, host, _tol(dtype))


# ---- the fused ops end to end on the GPU ------------------------------------------------------------------
def test_fused_op_derivatives_on_cuda_all_orders(rng):
    labels = ga.tensor(np.array([1, 0, -100, 3]), device="cuda")
    x = ga.tensor(rng.standard_normal((4, 5)), device="cuda")
    assert ga.gradcheck(lambda z, y: softmax_cross_entropy(z, y), (x, labels), check_second_order=True)
    w, b = (ga.tensor(rng.standard_normal(5), device="cuda") for _ in range(2))
    assert ga.gradcheck(lambda z, *p: layer_norm(z, *p, eps=1e-3), (x, w, b), check_second_order=True)


def test_fused_optimizer_updates_on_cuda_match_cpu(rng):
    ps = [rng.standard_normal(s) for s in [(3, 4), (5000,)]]
    gs = [rng.standard_normal(p.shape) for p in ps]
    results = []
    for device in ("cpu", "cuda"):
        params = [ga.tensor(p, device=device) for p in ps]
        ms, vs = [ga.zeros_like(p) for p in params], [ga.zeros_like(p) for p in params]
        fused_adam_(params, [ga.tensor(g, device=device) for g in gs], ms, vs, lr=0.1, beta1=0.9, beta2=0.999,
                    eps=1e-8, weight_decay=0.01, step=1, decoupled=True)
        bufs = [ga.zeros_like(p) for p in params]
        fused_sgd_(params, [ga.tensor(g, device=device) for g in gs], bufs, lr=0.1, momentum=0.9, nesterov=True)
        results.append([p.numpy() for p in params])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_elementwise_function_runs_one_cupy_kernel_and_matches_cpu(rng):
    import math

    @ga.elementwise
    def swish(x, beta):
        return x / (1.0 + math.exp(-beta * x))

    a = rng.standard_normal(1000).astype(np.float32)
    xc, xg = ga.tensor(a, requires_grad=True), ga.tensor(a, device="cuda", requires_grad=True)
    yc, yg = swish(xc, 1.5), swish(xg, 1.5)
    np.testing.assert_allclose(yg.numpy(), yc.numpy(), rtol=1e-5, atol=1e-6)
    yc.sum().backward()
    yg.sum().backward()
    np.testing.assert_allclose(xg.grad.numpy(), xc.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_random_state_replays_and_seeds(rng):
    ga.manual_seed(3)
    a = ga.randn(1000, device="cuda").numpy()
    backend = ga.backends.for_device("cuda")
    state = backend.rng_state()
    b = ga.rand(10, device="cuda").numpy()
    backend.set_rng_state(state)
    np.testing.assert_array_equal(ga.rand(10, device="cuda").numpy(), b)
    ga.manual_seed(3)
    np.testing.assert_array_equal(ga.randn(1000, device="cuda").numpy(), a)
    assert abs(a.mean()) < 0.15 and 0.85 < a.std() < 1.15
    assert ((b >= 0) & (b < 1)).all()
