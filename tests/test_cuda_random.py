"""The counter-based random numbers of the GPU (kernels/random.cu) through their NumPy twins in
gpuad/backends/cpu_kernels.py (test_cuda_emulated.py checks that the CUDA kernels give the same bits):
distributions, ranges, determinism per key and independence across keys."""
from __future__ import annotations

import numpy as np
import pytest

from gpuad.backends import cpu_kernels as k


def test_keys_differ_per_seed_and_draw_and_repeat():
    keys = {k.random_key(s, d) for s in range(20) for d in range(50)}
    assert len(keys) == 1000
    assert k.random_key(3, 4) == k.random_key(3, 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_is_uniform_on_the_unit_interval(dtype):
    u = k.uniform((200_000,), dtype, k.random_key(0, 0))
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    chi2 = ((counts - 10_000) ** 2 / 10_000).sum()
    assert chi2 < 45  # 19 degrees of freedom: p < 0.001 beyond 43.8
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # neighbours are not correlated


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_moments(dtype):
    z = k.normal((200_000,), dtype, k.random_key(1, 0)).astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((z ** 3).mean()) < 0.03 and abs((z ** 4).mean() - 3) < 0.1
    assert np.isfinite(z).all()


def test_integers_cover_the_range_evenly():
    x = k.integers(-3, 7, (50_000,), k.random_key(2, 0))
    assert x.dtype == np.int64 and x.min() == -3 and x.max() == 6
    counts = np.bincount(x + 3, minlength=10)
    assert ((counts - 5000) ** 2 / 5000).sum() < 28  # 9 degrees of freedom: p < 0.001 beyond 27.9


def test_draws_are_independent_across_keys():
    a = k.uniform((10_000,), "float64", k.random_key(0, 0))
    b = k.uniform((10_000,), "float64", k.random_key(0, 1))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05
    np.testing.assert_array_equal(a, k.uniform((10_000,), "float64", k.random_key(0, 0)))
