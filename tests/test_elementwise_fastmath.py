"""The vectorizable float32 approximations against NumPy over the whole float32 range: random bit
patterns (every exponent, subnormals), dense grids where the functions change fastest, and the
special values inf, -inf, nan, +-0, the overflow and underflow edges."""
from __future__ import annotations

import math

import numpy as np
import pytest

numba = pytest.importorskip("numba")
from gpuad.elementwise import fastmath  # noqa: E402

_erf = np.vectorize(math.erf, otypes=[np.float64])
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38,
                    -3.4028235e38, 88.72283, 88.72284, 89.0, -87.33654, -103.27893, -103.97208, -104.0,
                    -150.0, 0.0004, -0.0004, 0.625, 7.9053, -7.9053, 9.0, 1.0, -1.0, 3.92, 4.0, -4.0],
                   np.float32)


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 32, 1_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    grids = [np.linspace(-110, 110, 400_001, dtype=np.float32), np.linspace(-5, 5, 400_001, dtype=np.float32),
             np.geomspace(1e-38, 1e38, 200_001).astype(np.float32)]
    return np.concatenate([SPECIAL, bits, *grids])


def ulp_distance(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Units in the last place between float32 arrays; 0 where both are nan (or equal)."""
    def ordered(a):
        i = a.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    d = np.abs(ordered(got) - ordered(want))
    d[(np.isnan(got) & np.isnan(want)) | (got == want)] = 0
    d[np.isnan(got) != np.isnan(want)] = 1 << 40
    return d


@numba.njit
def _apply(fn, x, out):
    for i in range(x.size):
        out[i] = fn(x[i])


@pytest.mark.parametrize("name, reference, max_ulp", [
    ("exp_f32", np.exp, 1), ("log_f32", np.log, 1), ("tanh_f32", np.tanh, 8), ("erf_f32", _erf, 2)])
def test_approximation_is_within_a_few_ulp_everywhere(name, reference, max_ulp):
    x = _inputs()
    got = np.empty_like(x)
    _apply(getattr(fastmath, name), x, got)
    with np.errstate(all="ignore"):
        want = reference(x.astype(np.float64)).astype(np.float32)  # correctly rounded (nearly)
    d = ulp_distance(got, want)
    worst = int(np.argmax(d))
    assert d.max() <= max_ulp, f"{name}({x[worst]!r}) = {got[worst]!r}, NumPy {want[worst]!r}: {d.max()} ulp"
    special = ulp_distance(got[:SPECIAL.size], want[:SPECIAL.size])
    assert special.max() <= max_ulp  # inf, nan, zeros and range edges exactly as NumPy


def test_ulp_distance_detects_errors():
    a = np.array([1.0, np.nan, np.inf], np.float32)
    b = np.array([np.nextafter(np.float32(1), np.float32(2)), 0.0, np.inf], np.float32)
    assert list(ulp_distance(a, b)) == [1, 1 << 40, 0]
