r"""Overflow-free scalar numerics shared by every exact divergence.

Logarithms of quantities that may overflow (`log_max`, `safe_log_abs`,
`log1p_from`), products with an exponential that never form ``0 * inf``
(`mul_exp`, `times_exp`), differences that never overflow
(`half_difference`), and the short series that keep ``e^x - 1 - x`` and
``y - log1p(y)`` accurate near zero.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG2 = math.log(2.0)


def log_max(dtype) -> float:
    """``log`` of the largest finite value of a float type."""
    return math.log(float(jnp.finfo(dtype).max))


def half_difference(a, b):
    """``(a - b) / 2``: never overflows for finite ``a`` and ``b``."""
    return 0.5 * a - 0.5 * b


def safe_log_abs(x):
    """``log|x|`` (``-inf`` at 0) with a zero, not NaN, gradient at 0."""
    nz = x != 0
    return jnp.where(nz, jnp.log(jnp.abs(jnp.where(nz, x, 1.0))), -jnp.inf)


def log_norm(v):
    """``log ||v||`` over the last axis without overflow (``-inf`` for ``v = 0``)."""
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(v), -1))
    nz = m > 0
    safe = jnp.where(nz, m, 1.0)
    s = jnp.sum((v / safe[..., None]) ** 2, -1)
    return jnp.where(nz, jnp.log(safe) + 0.5 * jnp.log(jnp.where(nz, s, 1.0)), -jnp.inf)


def mul_exp(x, log_s):
    r"""``x * exp(log_s)``: ``+-inf`` where that overflows, ``0`` for ``x = 0`` (never ``0 * inf``).

    Meant for rescaling results (values, gradients) computed at a scale; its
    own derivative is only finite where ``exp(log_s)`` is.
    """
    x = jnp.asarray(x)
    big = log_s > log_max(x.dtype) - 1.0
    plain = x * jnp.exp(jnp.where(big, 0.0, log_s))
    nz = x != 0
    log_x = jnp.log(jnp.abs(jnp.where(nz, x, 1.0)))
    far = jnp.sign(x) * jnp.exp(log_x + jnp.where(big, log_s, 0.0))
    # exp(-inf) * inf: a factor below every float times one above them is taken as 0.
    return jnp.where(big, jnp.where(nz, far, 0.0), jnp.where(log_s == -jnp.inf, 0.0, plain))


def times_exp(x, log_f):
    r"""``x exp(log_f)`` as one exponential, ``sign(x) exp(log|x| + log_f)``.

    Autodiff of a plain product forms the cotangent of ``exp(log_f)`` as
    (cotangent) ``* x``, which overflows (and then meets a zero: NaN) where
    ``x`` is huge even though the result is not; here it is (cotangent) ``*``
    result. At ``x = 0`` it is the plain product (its factor capped at the
    float range), so the derivative in ``x`` is ``exp(log_f)`` there too.
    """
    nz = x != 0
    far = jnp.sign(x) * jnp.exp(safe_log_abs(x) + log_f)
    cap = log_max(jnp.result_type(x)) - 1.0
    at_zero = jnp.where(nz, 0.0, x) * jnp.exp(jnp.minimum(log_f, cap))
    return jnp.where(nz, far, at_zero)


def clamp_at_zero(x, sign: float = 1.0):
    r"""``x`` with a rounding-level value of the wrong sign replaced by ``0``.

    ``sign = 1``: ``max(x, 0)``; ``sign = -1``: ``min(x, 0)``. The gradient is
    that of ``x`` (straight through), so hand-derived and automatic gradients
    agree, and ``+-inf`` passes unchanged.
    """
    wrong = x * sign < 0
    return jnp.where(wrong, x - jax.lax.stop_gradient(jnp.where(wrong, x, 0.0)), x)


def _poly(x, coeffs):
    acc = jnp.zeros_like(x) + coeffs[-1]
    for c in coeffs[-2::-1]:
        acc = acc * x + c
    return acc


# Short series below 1e-2, where the direct forms lose 2 eps / |x| relative (float32: 2.4e-5).
_G = tuple(1.0 / math.factorial(n) for n in range(2, 10))  # e^x - 1 - x = x^2 sum x^(n-2) / n!
_H = tuple((-1.0) ** n / n for n in range(2, 11))  # y - log1p(y) = y^2 sum (-y)^(n-2) / n
SERIES_BELOW = 1e-2


def expm1mx(x):
    """``e^x - 1 - x``, accurate near 0 (a series for ``|x| < 1e-2``); ``+inf`` on overflow."""
    small = jnp.abs(x) < SERIES_BELOW
    xs = jnp.where(small, x, 0.0)
    xb = jnp.where(small, 1.0, x)
    return jnp.where(small, xs * xs * _poly(xs, _G), jnp.expm1(xb) - xb)


def log_expm1mx(x):
    """``log(e^x - 1 - x)``, finite for every finite ``x != 0``."""
    big = x > 1.0
    xb = jnp.where(big, x, 2.0)
    xs = jnp.where(big, 1.0, x)
    return jnp.where(big, xb + jnp.log1p(-(1.0 + xb) * jnp.exp(-xb)), jnp.log(expm1mx(xs)))


def ymlog1p(y):
    """``y - log1p(y)`` for ``y > -1``, accurate near 0 (a series for ``|y| < 1e-2``)."""
    small = jnp.abs(y) < SERIES_BELOW
    ys = jnp.where(small, y, 0.0)
    yb = jnp.where(small, 1.0, y)
    return jnp.where(small, ys * ys * _poly(ys, _H), yb - jnp.log1p(yb))


def log1p_from(value, log_value):
    r"""``log(1 + v)`` from ``v`` and ``log v`` (used where ``v`` is large or beyond the range)."""
    big = log_value > 20.0
    lv = jnp.where(big, log_value, 20.0)
    return jnp.where(big, lv + jnp.log1p(jnp.exp(-lv)), jnp.log1p(jnp.where(big, 0.0, value)))


__all__ = [
    "SERIES_BELOW",
    "clamp_at_zero",
    "expm1mx",
    "half_difference",
    "log1p_from",
    "log_expm1mx",
    "log_max",
    "log_norm",
    "mul_exp",
    "safe_log_abs",
    "times_exp",
    "ymlog1p",
]
