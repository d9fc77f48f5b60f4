"""Vectorizable float32 exp, log, tanh, erf and float64 exp, tanh for the Numba target.

A Numba loop that calls math.exp/tanh runs scalar libm (PyPI's Numba has no SVML), which loses to
multi-pass NumPy. These versions use only arithmetic, comparisons (selects) and bit casts, so LLVM
vectorizes the loop around them. Cephes-style range reduction and polynomials; special values
(inf, nan, subnormal results, -0) as NumPy gives them; accuracy against NumPy (tested over the whole
float32 range in tests/test_elementwise_fastmath.py): exp, log 1 ulp, erf 2 ulp, tanh 8 ulp (a
rational function with one division: 2.4x cheaper than the 1-ulp exp-based form); float64 exp and
tanh 2 ulp from NumPy's."""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

F = np.float32


@intrinsic
def f32_bits(typingctx, x):
    """The bits of a float32 as an int64 (0 .. 2**32 - 1)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(types.float32), codegen


@intrinsic
def f32_from_bits(typingctx, i):
    """The float32 whose bits are the low 32 bits of an integer."""
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32)) if i.bitwidth > 32 else args[0]
        return builder.bitcast(low, ir.FloatType())

    return types.float32(i), codegen


@intrinsic
def f64_bits(typingctx, x):
    """The bits of a float64 as an int64."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def f64_from_bits(typingctx, i):
    """The float64 whose bits are those of a 64-bit integer."""
    if not isinstance(i, types.Integer) or i.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(i), codegen


_LOG2E, _MAGIC = F(1.4426950408889634), F(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer
_C1, _C2 = F(0.693359375), F(-2.12194440e-4)  # ln 2 split in two (Cephes)
_EXP_LO, _EXP_HI = F(-104.0), F(89.0)
_P = tuple(F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                          1.6666665459e-1, 5.0000001201e-1))
_ZERO, _ONE, _HALF, _TWO = F(0.0), F(1.0), F(0.5), F(2.0)


@njit(inline="always", cache=True)
def exp_f32(x):
    """e**x: x = n ln2 + r, |r| <= ln2/2, a degree-7 polynomial for e**r, times 2**n in two steps
    (so results between the float32 subnormals and the overflow to inf come out right)."""
    xc = _EXP_LO if x < _EXP_LO else x
    xc = _EXP_HI if xc > _EXP_HI else xc
    xc = _ZERO if x != x else xc
    t = xc * _LOG2E + _MAGIC
    nf = t - _MAGIC
    n = f32_bits(t) - f32_bits(_MAGIC)
    r = (xc - nf * _C1) - nf * _C2
    p = ((((_P[0] * r + _P[1]) * r + _P[2]) * r + _P[3]) * r + _P[4]) * r + _P[5]
    p = (p * r) * r + r + _ONE
    n1 = n >> 1
    res = p * f32_from_bits((n1 + 127) << 23) * f32_from_bits((n - n1 + 127) << 23)
    return x if x != x else res


_SQRTHF = F(0.707106781186547524)
_L = tuple(F(c) for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                          1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                          3.3333331174e-1))
_TWO23 = F(8388608.0)
_TINY = F(1.1754943508222875e-38)  # smallest normal float32
_INF, _NAN = F(np.inf), F(np.nan)


@njit(inline="always", cache=True)
def log_f32(x):
    """ln x: x = m 2**e with m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial for ln m (Cephes)."""
    sub = x < _TINY
    xs = x * _TWO23 if sub else x
    bits = f32_bits(xs)
    e = ((bits >> 23) & 0xFF) - 126 - (23 if sub else 0)
    m = f32_from_bits((bits & 0x807FFFFF) | 0x3F000000)
    small = m < _SQRTHF
    e = e - 1 if small else e
    m = (m + m - _ONE) if small else (m - _ONE)
    fe = F(e)
    z = m * m
    y = _L[0] * m + _L[1]
    for c in _L[2:]:
        y = y * m + c
    y = y * m * z
    y = y + _C2 * fe
    y = y - _HALF * z
    res = (m + y) + _C1 * fe
    res = _INF if x == _INF else res
    res = -_INF if x == _ZERO else res
    res = _NAN if x < _ZERO else res
    return x if x != x else res


# tanh as an odd/even rational function on [-7.9053, 7.9053] (beyond, float32 tanh is +-1): Eigen's
# generic_fast_tanh_float coefficients, highest power first; one division, no exp
_TA = tuple(F(c) for c in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                           5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                           4.89352455891786e-03))
_TB = tuple(F(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                           4.89352518554385e-03))
_TCLAMP, _TTINY = F(7.90531110763549805), F(0.0004)


@njit(inline="always", cache=True)
def tanh_f32(x):
    """tanh x = x P(x^2) / Q(x^2) with x clamped to +-7.9053; x itself below |x| = 0.0004."""
    xc = _TCLAMP if x > _TCLAMP else x
    xc = -_TCLAMP if xc < -_TCLAMP else xc
    z = xc * xc
    p = ((((((_TA[0] * z + _TA[1]) * z + _TA[2]) * z + _TA[3]) * z + _TA[4]) * z + _TA[5]) * z + _TA[6]) * xc
    q = ((_TB[0] * z + _TB[1]) * z + _TB[2]) * z + _TB[3]
    r = p / q
    return x if (abs(x) < _TTINY) | (x != x) else r


_E = tuple(F(c) for c in (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3,
                          -2.685381193529856e-2, 1.128358514861418e-1, -3.761262582423300e-1,
                          1.128379165726710e0))
# erfc(x) e^(x^2) on [1, 4] as a polynomial in u = (x - 2.5) / 1.5, highest power first: a degree-11
# Chebyshev least-squares fit in float64 (relative error 2e-7 when evaluated in float32)
_R = tuple(F(c) for c in (
    -3.692937455660958e-05, 9.640629657529918e-05, -0.00014394697043633987, 0.00036786466441810384,
    -0.001017119239011315, 0.002425888218587113, -0.005567332339922215, 0.012484034711568134,
    -0.027005725378740776, 0.056110958516009536, -0.11152100469156753, 0.21080635752659943))
_U0, _U1 = F(2.5), F(1.0 / 1.5)


@njit(inline="always", cache=True)
def erf_f32(x):
    """erf x: x P(x^2) below |x| = 1 (Cephes), 1 - e**(-x^2) R(|x|) up to 4, +-1 beyond."""
    z = x * x
    p = _E[0] * z + _E[1]
    for c in _E[2:]:
        p = p * z + c
    small = x * p
    ax = abs(x)
    axc = F(4.0) if ax > F(4.0) else ax
    u = (axc - _U0) * _U1
    r = _R[0]
    for c in _R[1:]:
        r = r * u + c
    big = _ONE - exp_f32(-(axc * axc)) * r
    big = big if x >= _ZERO else -big
    return small if ax < _ONE else (x if x != x else big)



# ---- float64: exp (Cephes exp.c, a Pade form) and tanh (Cephes tanh.c) ------------------------------
_DMAGIC = 6755399441055744.0  # 1.5 * 2**52
_DC1, _DC2 = 6.93145751953125e-1, 1.42860682030941723212e-6
_DP = (1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1)
_DQ = (3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1,
       2.00000000000000000009e0)
_DLO, _DHI, _DLOG2E = -746.0, 710.0, 1.4426950408889634


@njit(inline="always", cache=True)
def exp_f64(x):
    """e**x: n = round(x / ln2), e**r = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)), times 2**n in two steps."""
    xc = _DLO if x < _DLO else x
    xc = _DHI if xc > _DHI else xc
    xc = 0.0 if x != x else xc
    t = xc * _DLOG2E + _DMAGIC
    nf = t - _DMAGIC
    n = f64_bits(t) - f64_bits(_DMAGIC)
    r = (xc - nf * _DC1) - nf * _DC2
    rr = r * r
    p = r * ((_DP[0] * rr + _DP[1]) * rr + _DP[2])
    q = ((_DQ[0] * rr + _DQ[1]) * rr + _DQ[2]) * rr + _DQ[3]
    e = 1.0 + 2.0 * (p / (q - p))
    n1 = n >> 1
    res = e * f64_from_bits((n1 + 1023) << 52) * f64_from_bits((n - n1 + 1023) << 52)
    return x if x != x else res


_DTP = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_DTQ = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)


@njit(inline="always", cache=True)
def tanh_f64(x):
    """tanh x: x + x^3 P(x^2) / Q(x^2) below |x| = 0.625, 1 - 2 / (e**(2|x|) + 1) above."""
    ax = abs(x)
    z = x * x
    p = (_DTP[0] * z + _DTP[1]) * z + _DTP[2]
    q = ((z + _DTQ[0]) * z + _DTQ[1]) * z + _DTQ[2]
    small = x + x * (z * p / q)
    big = 1.0 - 2.0 / (exp_f64(ax + ax) + 1.0)
    big = big if x >= 0.0 else -big
    return small if ax < 0.625 else (x if x != x else big)
