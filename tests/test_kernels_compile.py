"""The GPU code checked without a GPU: kernels/*.cu compile for sm_90 with nvcc (warnings as errors)
and with NVRTC exactly as cupy.RawModule gets them; every Numba CUDA kernel compiles to PTX for
compute capability 9.0 (accepted by ptxas) and computes the NumPy result under the CUDA simulator."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpuad.backends.cuda_kernels import KERNEL_DIR, NUMBA_KERNELS, kernel_source

SOURCES = sorted(p.stem for p in KERNEL_DIR.glob("*.cu"))
ROOT = Path(__file__).resolve().parent.parent
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) not on PATH")
needs_numba_cuda = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None,
    reason="numba-cuda not installed (pip install -e '.[test]' brings it with nvidia-cuda-nvrtc 13.0)")


def test_kernel_sources_present_and_shipped():
    assert SOURCES == ["layer_norm", "optim", "random", "softmax_xent"]
    assert (ROOT / "gpuad" / "kernels").resolve() == (ROOT / "kernels").resolve()  # package data path


@needs_nvcc
@pytest.mark.parametrize("name", SOURCES)
def test_nvcc_compiles_kernel_for_sm90_without_warnings(name, tmp_path):
    cmd = ["nvcc", "-arch=sm_90", "-cubin", "-std=c++14", "-Werror", "all-warnings", "-Xptxas", "-Werror",
           "-o", str(tmp_path / f"{name}.cubin"), str(KERNEL_DIR / f"{name}.cu")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"{name}.cubin").stat().st_size > 0


@pytest.mark.parametrize("name", SOURCES)
def test_nvrtc_compiles_the_rawmodule_source(name):
    """NVRTC sees no CUDA headers: the inlined source must be self-contained, as CuPy compiles it."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings (from numba-cuda) not installed")
    err, prog = nvrtc.nvrtcCreateProgram(kernel_source(name).encode(), f"{name}.cu".encode(), 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    opts = [b"--std=c++14", b"-arch=sm_90"]
    (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    log = log.rstrip(b"\x00").decode().strip()
    assert status == nvrtc.nvrtcResult.NVRTC_SUCCESS, log
    assert log == "", f"NVRTC warnings: {log}"


def _signatures(name):
    from numba import float32, float64, int64
    from numba.core import types

    assert name == "layer_norm_param_grad"  # one entry per Numba kernel in NUMBA_KERNELS
    for storage, acc in ((float32, float32), (types.float16, float32), (float64, float64)):
        yield (storage[:, :], storage[:, :], acc[:], acc[:], acc, acc[:], acc[:], int64)


@needs_numba_cuda
@pytest.mark.parametrize("name", sorted(NUMBA_KERNELS))
def test_numba_kernel_compiles_to_ptx_for_cc90(name, tmp_path):
    from numba import cuda

    for sig in _signatures(name):
        ptx, _ = cuda.compile_ptx(NUMBA_KERNELS[name], sig, cc=(9, 0))
        assert ".target sm_90" in ptx and ".entry" in ptx
        if shutil.which("ptxas"):
            (tmp_path / "k.ptx").write_text(ptx)
            result = subprocess.run(["ptxas", "-arch=sm_90", str(tmp_path / "k.ptx"), "-o",
                                     str(tmp_path / "k.cubin")], capture_output=True, text=True)
            assert result.returncode == 0, f"ptxas rejected the PTX for {sig}: {result.stderr}"


SIMULATED = textwrap.dedent("""
    import os
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported
    import numpy as np
    from gpuad.backends.cuda_kernels import numba_kernel, param_grad_launch

    rng = np.random.default_rng(0)
    rows, cols, per_block = 70, 130, 32  # several blocks in both grid dimensions, ragged edges
    for dt, acc in [(np.float32, np.float32), (np.float16, np.float32), (np.float64, np.float64)]:
        x = rng.standard_normal((rows, cols)).astype(dt)
        g = rng.standard_normal((rows, cols)).astype(dt)
        mean = x.astype(acc).mean(1)
        rstd = (1 / np.sqrt(x.astype(acc).var(1) + 1e-5)).astype(acc)
        dw, db = np.zeros(cols, acc), np.zeros(cols, acc)
        grid, block = param_grad_launch(rows, cols, per_block)
        numba_kernel("layer_norm_param_grad")[grid, block](x, g, mean, rstd, acc(0), dw, db, per_block)
        xhat = (x.astype(np.float64) - mean[:, None]) * rstd[:, None]
        tol = 1e-12 if dt == np.float64 else 2e-5
        np.testing.assert_allclose(dw, (g * xhat).sum(0), rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(db, g.astype(np.float64).sum(0), rtol=tol, atol=tol * 10)
        assert dw.dtype == acc
    print("simulated ok")
""")


def test_numba_kernels_match_numpy_under_the_cuda_simulator():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", SIMULATED], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "simulated ok" in result.stdout

