"""The vectorizable approximations against NumPy over the whole float32 / float64 range: random bit
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


SPECIAL64 = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
                      1.7976931348623157e308, 709.78, 709.79, 710.0, -708.4, -745.1, -745.2, -746.0,
                      1e-300, 0.625, -0.625, 20.0, -20.0, 1.0, -1.0])


def _inputs64() -> np.ndarray:
    rng = np.random.default_rng(1)
    bits = rng.integers(-2 ** 63, 2 ** 63 - 1, 1_000_000, dtype=np.int64).view(np.float64)
    grids = [np.linspace(-750, 750, 400_001), np.linspace(-3, 3, 400_001), np.geomspace(1e-300, 1e300, 200_001)]
    return np.concatenate([SPECIAL64, bits, *grids])


def ulp_distance(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Units in the last place between float32 or float64 arrays; 0 where both are nan (or equal)."""
    int_type, sign = (np.int32, 0x7FFFFFFF) if got.dtype == np.float32 else (np.int64, 0x7FFFFFFFFFFFFFFF)

    def ordered(a):
        i = a.view(int_type).astype(np.int64)
        return np.where(i < 0, -(i & sign), i)

    with np.errstate(over="ignore"):
        d = ordered(got) - ordered(want)
    d = np.where(d < 0, -d, d)
    d[d < 0] = 1 << 40  # wrapped around: far apart
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


@pytest.mark.parametrize("name, reference", [("exp_f64", np.exp), ("tanh_f64", np.tanh)])
def test_float64_approximation_is_within_two_ulp_of_numpy(name, reference):
    x = _inputs64()
    got = np.empty_like(x)
    _apply(getattr(fastmath, name), x, got)
    with np.errstate(all="ignore"):
        want = reference(x)
    d = ulp_distance(got, want)
    worst = int(np.argmax(d))
    assert d.max() <= 2, f"{name}({x[worst]!r}) = {got[worst]!r}, NumPy {want[worst]!r}: {d.max()} ulp"
    assert ulp_distance(got[:SPECIAL64.size], want[:SPECIAL64.size]).max() <= 2
