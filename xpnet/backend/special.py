"""The error function erf and its complement erfc, elementwise, on any array module.

NumPy has no erf (SciPy is not a dependency), so the plain path evaluates the rational
approximations of Sun's fdlibm `s_erf.c` (the ones most C libraries use, under 1 ulp in
float64) with array-API operations; CuPy uses `cupyx.scipy.special`, which calls CUDA's own
erf/erfc. erfc is computed directly rather than as 1 − erf, so its tails (GELU of negative
inputs) keep their relative accuracy.
"""

from __future__ import annotations

from typing import Any

Array = Any

# fdlibm's coefficients. |x| < 0.84375: erf(x) = x + x·P(x²)/Q(x²)
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)  # fmt: skip
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)  # fmt: skip
# 0.84375 ≤ |x| < 1.25, s = |x| − 1: erf(|x|) = erx + P(s)/Q(s)
_ERX = 8.45062911510467529297e-01
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)  # fmt: skip
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)  # fmt: skip
# 1.25 ≤ |x| < 1/0.35, s = 1/x²: erfc(|x|) = exp(−x² − 0.5625 + R(s)/S(s)) / |x|
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e01,
       -6.23753324503260060396e01, -1.62396669462573470355e02, -1.84605092906711035994e02,
       -8.12874355063065934246e01, -9.81432934416914548592e00)  # fmt: skip
_SA = (1.0, 1.96512716674392571292e01, 1.37657754143519042600e02, 4.34565877475229228821e02,
       6.45387271733267880336e02, 4.29008140027567833386e02, 1.08635005541779435134e02,
       6.57024977031928170135e00, -6.04244152148580987438e-02)  # fmt: skip
# |x| ≥ 1/0.35: the same form with other coefficients
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e01,
       -1.60636384855821916062e02, -6.37566443368389627722e02, -1.02509513161107724954e03,
       -4.83519191608651397019e02)  # fmt: skip
_SB = (1.0, 3.03380607434824582924e01, 3.25792512996573918826e02, 1.53672958608443695994e03,
       3.19985821950859553908e03, 2.55305040643316442583e03, 4.74528541206955367215e02,
       -2.24409524465858183362e01)  # fmt: skip


def _poly(coef: tuple[float, ...], s: Array) -> Array:
    """Horner: coef[0] + coef[1]·s + … (Python-float coefficients keep s's dtype)."""
    acc = s * coef[-1] + coef[-2]
    for c in reversed(coef[:-2]):
        acc = acc * s + c
    return acc


def _pick(xp: Any, take_a: Array, a: Array, b: Array) -> Array:
    """a where take_a, else b, by arithmetic: m·a + (1 − m)·b is exact for m ∈ {0, 1} and finite a, b.

    NumPy's `where` costs ~10 ns an element on a random mask (a branch per element), many times
    a multiply; both sides here are finite (a NaN input is NaN on both and comes out NaN).
    """
    m = xp.astype(take_a, a.dtype)
    return m * a + (1.0 - m) * b


def _tail(xp: Any, a: Array, r: tuple[float, ...], s_: tuple[float, ...]) -> Array:
    """erfc(a) = exp(−a² − 0.5625 + R(1/a²)/S(1/a²)) / a for a ≥ 1.25, with one region's R, S."""
    a = xp.clip(a, 1.25, 28.0)  # beyond 28, erfc underflows to 0 anyway; NaN stays NaN
    s = 1.0 / (a * a)
    # exp(−a²) as exp(−z²)·exp((z − a)(z + a)) with z = a rounded to float32: z² is exact in
    # float64, so the rounding of a² (up to 28² · 1e-16 in the exponent) never reaches the result
    z = xp.astype(xp.astype(a, xp.float32), a.dtype)
    return xp.exp(-z * z - 0.5625) * xp.exp((z - a) * (z + a) + _poly(r, s) / _poly(s_, s)) / a


def _small(x: Array) -> Array:
    """x·P(x²)/Q(x²), the correction to erf(x) ≈ x for |x| < 0.84375."""
    z = x * x
    return x * (_poly(_PP, z) / _poly(_QQ, z))


def _near_one(a: Array) -> Array:
    """P(s)/Q(s) with s = |x| − 1, for 0.84375 ≤ |x| < 1.25."""
    s = a - 1.0
    return _poly(_PA, s) / _poly(_QA, s)


def _piecewise(xp: Any, x: Array, pieces: list[tuple[Array, Any]]) -> Array:
    """out[mask] = fn(x[mask]) for each (mask, fn): each element pays for its own region only.

    The masks cover every element once (NaN goes with the last region and stays NaN).
    """
    out = xp.empty_like(x)
    for mask, fn in pieces:
        part = x[mask]
        if part.shape[0]:
            out[mask] = fn(part)
    return out


def _regions(xp: Any, x: Array) -> tuple[Array, Array, Array, Array]:
    """Masks of fdlibm's four regions of |x|: [0, 0.84375), [0.84375, 1.25), [1.25, 1/0.35), the rest (and NaN)."""
    a = xp.abs(x)
    small, mid, near = a < 0.84375, a < 1.25, a < 1.0 / 0.35
    return small, mid & ~small, near & ~mid, ~near


def erf(xp: Any, x: Array) -> Array:
    """erf(x) elementwise, same shape and float dtype as x; NaN stays NaN, erf(±inf) = ±1."""
    if getattr(xp, "__name__", "") == "cupy":  # pragma: no cover
        from cupyx.scipy.special import erf as native

        return native(x)
    small, mid, tail_a, tail_b = _regions(xp, x)
    return _piecewise(
        xp,
        x,
        [
            (small, lambda v: v + _small(v)),
            (mid, lambda v: xp.sign(v) * (_ERX + _near_one(xp.abs(v)))),
            (tail_a, lambda v: xp.sign(v) * (1.0 - _tail(xp, xp.abs(v), _RA, _SA))),
            (tail_b, lambda v: xp.sign(v) * (1.0 - _tail(xp, xp.abs(v), _RB, _SB))),
        ],
    )


def erfc(xp: Any, x: Array) -> Array:
    """erfc(x) = 1 − erf(x) elementwise, accurate relative to its value in the right tail too."""
    if getattr(xp, "__name__", "") == "cupy":  # pragma: no cover
        from cupyx.scipy.special import erfc as native

        return native(x)

    def near_zero(v: Array) -> Array:
        r = _small(v)  # fdlibm: below 1/4, 1 − erf loses nothing; above it, regroup around 1/2
        return _pick(xp, v < 0.25, 1.0 - (v + r), 0.5 - (v - 0.5 + r))

    def near_one(v: Array) -> Array:
        pq = _near_one(xp.abs(v))
        return _pick(xp, v > 0.0, (1.0 - _ERX) - pq, 1.0 + (_ERX + pq))

    def tail(r: tuple[float, ...], s_: tuple[float, ...]) -> Any:
        def f(v: Array) -> Array:
            t = _tail(xp, xp.abs(v), r, s_)
            return _pick(xp, v > 0.0, t, 2.0 - t)

        return f

    small, mid, tail_a, tail_b = _regions(xp, x)
    return _piecewise(xp, x, [(small, near_zero), (mid, near_one), (tail_a, tail(_RA, _SA)), (tail_b, tail(_RB, _SB))])
