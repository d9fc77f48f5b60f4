"""Code generation targets: the Numba kernel equals the NumPy reference (broadcasting, scalars,
non-contiguous inputs, float16/32/64, nan/inf), and the CUDA source of every built-in op compiles
with nvcc -arch=sm_90 (no GPU needed)."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import test_elementwise
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuad as ga
from gpuad.backends import cpu
from gpuad.elementwise import cache, host, numba_target, numpy_target, nvcc_check
from gpuad.ops.elementwise import PROGRAMS


@ga.elementwise
def kitchen_sink(x, y, s):
    a = ga.where(x > y, math.tanh(x) * s, math.exp(-abs(y)))
    b = max(x, y) - min(x, 0.5) + ga.sign(x) + ga.clip(x, -1.0, 1.0)
    c = math.log(abs(x) + 1e-3) + math.erf(y) + math.sqrt(abs(x)) + (abs(y) + 0.5) ** x
    d = min(x, math.inf) - max(y, -math.inf)  # infinite constants in generated code
    return a + b + c + d + math.log1p(x * x) / (1.0 + math.expm1(-abs(s * y)))


def _arrays(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 300)) * 3).astype(dtype).T  # not C-contiguous, 60000 elements
    x[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    y = rng.standard_normal(200).astype(dtype)  # broadcast along rows
    return x, y, np.asarray(0.75, dtype)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_numba_kernel_matches_numpy_forward_and_multi_output_vjp(dtype, rtol):
    x, y, s = _arrays(dtype)
    prog = kitchen_sink.program(("f", "f", "f"))
    with np.errstate(all="ignore"):
        want = numpy_target.evaluate(prog, cpu.xp, (x, y, s))
        got = numba_target.run(prog, (x, y, s))
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    vjp = prog.vjp((0, 1))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    inputs = tuple({"x0": x, "x1": y, "x2": s, "y": want, "g": g}[r] for r in vjp.roles)
    with np.errstate(all="ignore"):
        want_grads = numpy_target.evaluate(vjp, cpu.xp, inputs)
        got_grads = numba_target.run(vjp, inputs)
    for w, h in zip(want_grads, got_grads):
        np.testing.assert_allclose(h, w, rtol=10 * rtol, atol=10 * rtol)


def test_float16_computes_in_float32_and_kernels_are_cached_in_memory():
    x = np.linspace(-6, 6, 1 << 16).astype(np.float16)
    prog = ga.ops.elementwise.PROGRAMS["gelu_tanh"]
    got = numba_target.run(prog, (x,))
    before = dict(cache.stats)
    again = numba_target.run(prog, (x,))
    assert cache.stats["memory_hits"] == before["memory_hits"] + 1
    assert cache.stats["compiles"] == before["compiles"]
    assert got.dtype == np.float16
    want = numpy_target.evaluate(prog, cpu.xp, (x.astype(np.float32),)).astype(np.float16)
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(got, again)


def test_large_tensors_take_the_numba_path_and_gradients_agree():
    x = ga.tensor(np.linspace(-3, 3, 1 << 16), requires_grad=True)
    kitchen_sink(x, 0.25, 1.5).sum().backward()
    small = ga.tensor(x.numpy()[::1024].copy(), requires_grad=True)  # NumPy path (below the threshold)
    kitchen_sink(small, 0.25, 1.5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy()[::1024], small.grad.numpy(), rtol=1e-13)


def test_cuda_spec_is_cupy_elementwise_kernel_arguments():
    prog = ga.ops.elementwise.PROGRAMS["where"]
    spec = prog.cuda_spec((np.bool_, np.float16, np.float16))
    assert set(spec) == {"in_params", "out_params", "operation", "name", "preamble"}
    assert spec["in_params"] == "bool a0, float16 a1, float16 a2"
    assert spec["out_params"] == "float16 o0"
    assert "o0 = (float16)(" in spec["operation"] and spec["name"].startswith("gpuad_where_")
    assert hash(prog.key) == hash(ga.ops.elementwise.PROGRAMS["where"].key)


def test_every_builtin_has_cuda_source_with_one_global_kernel():
    for dtype in nvcc_check.DTYPES:
        units = nvcc_check.sources(dtype)
        assert len(units) == 3 * len(ga.ops.elementwise.PROGRAMS)
        assert all(u.count("__global__") == 1 for u in units.values())


nvcc = shutil.which("nvcc")


@pytest.mark.slow
@pytest.mark.skipif(nvcc is None, reason="nvcc is not installed (the CUDA toolkit's compiler)")
def test_cuda_source_of_every_builtin_compiles_with_nvcc_sm90():
    assert nvcc_check.compile_all(nvcc, "sm_90") == []


@pytest.mark.skipif(nvcc is None, reason="nvcc is not installed (the CUDA toolkit's compiler)")
def test_nvcc_check_reports_a_broken_kernel(tmp_path, monkeypatch):
    monkeypatch.setattr(nvcc_check, "DTYPES", (np.dtype(np.float32),))
    monkeypatch.setattr(nvcc_check, "sources", lambda dtype: {"broken": "__global__ void k() { undefined(); }"})
    failures = nvcc_check.compile_all(nvcc, "sm_90")
    assert len(failures) == 1 and "undefined" in failures[0]


def test_a_kernel_numba_cannot_compile_falls_back_to_numpy_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba_target, "kernel_source", lambda *a: "def kernel(n, a0, o0):\n    return undefined_name\n")
    f = ga.elementwise(lambda x: x * 3.0 - 1.0, name="uncompilable")
    x = np.linspace(-1, 1, 1 << 16)
    with pytest.warns(RuntimeWarning, match="could not compile the pointwise program uncompilable"):
        out = f(ga.tensor(x))
    np.testing.assert_allclose(out.numpy(), 3.0 * x - 1.0, rtol=1e-15)


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(tree=test_elementwise.expressions(smooth=False), dtype=st.sampled_from([np.float32, np.float64]))
def test_random_programs_numba_kernel_matches_numpy(tree, dtype):
    prog = test_elementwise.fused_function(tree).program(("f", "f"))
    rng = np.random.default_rng(2)
    x, y = rng.uniform(-2, 2, (200, 200)).astype(dtype), rng.uniform(-2, 2, 200).astype(dtype)
    with np.errstate(all="ignore"):
        want = numpy_target.evaluate(prog, cpu.xp, (x, y))
        got = numba_target.run(prog, (x, y))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_one_arithmetic_op_runs_as_its_numpy_ufunc_below_the_parallel_size():
    from gpuad.elementwise import host
    from gpuad.ops.elementwise import PROGRAMS

    assert PROGRAMS["mul"].single_arithmetic and PROGRAMS["neg"].single_arithmetic
    assert not PROGRAMS["relu"].single_arithmetic and not PROGRAMS["tanh"].single_arithmetic
    assert not PROGRAMS["mul"].vjp((0, 1)).single_arithmetic  # two outputs: fused
    big = np.arange(host.NUMBA_MIN_SIZE * 2, dtype=np.float32)
    mul, relu = PROGRAMS["mul"], PROGRAMS["relu"]
    mul.compiled.pop("numba_plans", None)  # plans another test may have made by calling the target itself
    np.testing.assert_array_equal(host.pointwise(mul, big, big), big * big)
    np.testing.assert_array_equal(host.pointwise(relu, big - 10.0), np.maximum(big - 10.0, 0))
    assert "numba_plans" not in mul.compiled and relu.compiled["numba_plans"]
    assert host.PARALLEL_MIN_SIZE == numba_target.PARALLEL_MIN_SIZE


def _first_input_vjp(name):
    program = PROGRAMS[name]
    if program.inputs[0].kind != "f" or program.outputs[0].kind != "f":
        return None
    vjp = program.vjp((0,))
    return vjp if 1 <= vjp.n_inputs <= 3 else None  # zero inputs: a constant gradient, no kernel runs


# every built-in and the VJP of its first input (VJPs hold constants: 1 - y*y, 0.5 * ...; float only)
KERNEL_CASES = {**PROGRAMS, **{f"{n} vjp": _first_input_vjp(n) for n in PROGRAMS if _first_input_vjp(n)}}


@pytest.mark.parametrize("name", sorted(KERNEL_CASES))
def test_a_programs_kernel_equals_pointwise_and_calls_it_outside_its_float32_case(name, monkeypatch):
    program = KERNEL_CASES[name]
    kernel = host.kernel(program)
    rng = np.random.default_rng(0)
    fell_back = []
    pointwise = host.pointwise

    def spy(program, *arrays):
        fell_back.append(tuple(a.dtype for a in arrays))
        return pointwise(program, *arrays)

    monkeypatch.setattr(host, "pointwise", spy)
    kinds = [v.kind for v in program.inputs]
    shapes = [(3, 1), (1, 4), (3, 4)][:len(kinds)] if len(kinds) > 1 else [(3, 4)]

    def inputs(dtype, shapes=shapes):
        return [rng.random(s) > 0.5 if k == "b" else (rng.standard_normal(s) + 0.5).astype(dtype)
                for k, s in zip(kinds, shapes)]

    for dtype in (np.float32, np.float64, np.float16) + (() if name.endswith(" vjp") else (np.int32,)):
        arrays = inputs(dtype)
        fell_back.clear()
        with np.errstate(all="ignore"):
            got, want = kernel(*arrays), pointwise(program, *arrays)
        assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        direct = dtype == np.float32 and "b" not in kinds and program.outputs[0].op not in ("var", "const")
        assert fell_back == ([] if direct else [tuple(a.dtype for a in arrays)])
    scalar = kernel(*inputs(np.float32, [()] * len(kinds)))
    assert type(scalar) is np.ndarray and scalar.shape == ()  # a 0-d result stays an array


def test_a_kernel_leaves_large_arrays_and_several_outputs_to_pointwise(monkeypatch):
    called = []
    pointwise = host.pointwise
    monkeypatch.setattr(host, "pointwise", lambda p, *a: called.append(p.name) or pointwise(p, *a))
    big = np.ones(host.NUMBA_MIN_SIZE, np.float32)
    host.kernel(PROGRAMS["tanh"])(big)  # a transcendental function: the Numba kernel from this size
    host.kernel(PROGRAMS["mul"])(big, big)  # one ufunc: NumPy's until PARALLEL_MIN_SIZE
    both = PROGRAMS["mul"].vjp((0, 1))
    host.kernel(both)(big[:4], big[:4], big[:4])
    assert called == ["tanh", both.name]


def test_kernel_for_binds_xp_pointwise_on_a_backend_without_pointwise_kernel():
    import types

    class Backend:  # a third party's: its namespace has pointwise only
        xp = types.SimpleNamespace(pointwise=lambda p, *arrays: calls.append(p) or host.pointwise(p, *arrays))

    program = PROGRAMS["mul"].vjp((0,))
    calls = []
    backend = Backend()
    a, b = np.arange(3.0), np.full(3, 2.0)
    run = program.kernel_for(backend)
    assert program.kernels[backend] is run and program.kernels.get(cpu) is not run
    np.testing.assert_array_equal(run(a, b), a * b)
    assert calls == [program]
