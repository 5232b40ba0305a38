r"""A 1-D pair ``(p, q)`` in closed form, with everything that can overflow kept as a logarithm.

With ``b = 1 - a``, ``t_k = log(sigma / s_k)`` and ``V_k = a s_k^2 + b sigma^2``,
one component's power integral is
``log int q^a (pi_k N_k)^b = b log pi_k + b t_k - log(V_k / s_k^2) / 2 - a b w_k^2 / 2``,
``w_k = (mu - m_k) / sqrt(V_k)`` (`power_singles`). Far from ``p`` the
mixture's ``log I(a)`` is the largest (``a < 1``) or smallest (``a > 1``) of
these to rounding (`asymptotic_log_power`), with a closed-form gradient
(`single_log_power_grad`); `peaks` gives the centres, widths and heights of
the Gaussian-shaped bounds ``q^a (pi_k N_k)^b`` that the quadrature anchors
on, and `gaussian_kl` a KL between two Gaussians accurate however small.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from divjax._numerics import (
    expm1mx,
    half_difference,
    log_expm1mx,
    log_max,
    safe_log_abs,
    times_exp,
    ymlog1p,
)
from divjax.families import LOG_2PI

_LOG2 = math.log(2.0)


class Line(NamedTuple):
    r"""A 1-D pair ``(p, q)`` with everything that can overflow kept as a logarithm."""

    loc: jax.Array  # () mu
    log_scale: jax.Array  # () log sigma
    locs: jax.Array  # (M,) m_k
    log_s: jax.Array  # (M,) log s_k
    log_pi: jax.Array  # (M,) log pi_k (normalized)
    half_delta: jax.Array  # (M,) (mu - m_k) / 2, never overflows
    log_rho: jax.Array  # (M,) log(sigma / s_k)


def line(p, q) -> Line:
    """The `Line` of a 1-D mixture and a 1-D Gaussian of any family."""
    locs = jnp.reshape(p.locs, (-1,))
    log_s = jnp.log(jnp.abs(jnp.reshape(p.scale_trils, (-1,))))
    loc, log_scale = jnp.asarray(q.loc), jnp.asarray(q.log_marginal_scales())
    return Line(
        loc, log_scale, locs, log_s, p.log_probs, half_difference(loc, locs), log_scale - log_s
    )


def gaussian_kl(two_t, w) -> tuple[jax.Array, jax.Array]:
    r"""``(v, log v)`` for ``v = (e^{2t} - 1 - 2t + w^2) / 2``.

    ``KL(N(m1, s1^2) || N(m0, s0^2))`` with ``2t = 2 log(s1 / s0)`` and
    ``w = (m1 - m0) / s0``: both pieces are non-negative and accurate near 0 (a
    series), so a divergence of 1e-30 keeps its relative accuracy; ``log v``
    stays finite where ``v`` overflows.
    """
    value = 0.5 * (expm1mx(two_t) + w * w)
    log_value = jnp.logaddexp(log_expm1mx(two_t), 2.0 * safe_log_abs(w)) - _LOG2
    return value, log_value


def log_lambda(a: float, log_rho):
    r"""``(log(a + (1 - a) rho^2), positive)``: the precision of ``q^a N^(1 - a)`` in q's units.

    Accurate near ``rho = 1`` (``log1p((1 - a) expm1(2 log rho))``) and free of
    overflow for any ``log rho``; ``0`` where it is not positive.
    """
    b = 1.0 - a
    two = 2.0 * log_rho
    near = jnp.abs(two) < 1.0
    up = ~near & (two > 0)
    tn = jnp.where(near, two, 0.0)
    tp = jnp.where(up, two, 1.0)
    tm = jnp.where(near | up, -1.0, two)
    y_near = b * jnp.expm1(tn)  # a + b rho^2 = 1 + y
    y_up = b + a * jnp.exp(-tp)  # a + b rho^2 = rho^2 (b + a / rho^2)
    y_down = a + b * jnp.exp(tm)
    pos = jnp.where(near, y_near > -1.0, jnp.where(up, y_up > 0, y_down > 0))
    lv = jnp.where(
        near,
        jnp.log1p(jnp.where(pos, y_near, 0.0)),
        jnp.where(
            up, tp + jnp.log(jnp.where(pos, y_up, 1.0)), jnp.log(jnp.where(pos, y_down, 1.0))
        ),
    )
    return jnp.where(pos, lv, 0.0), pos


class PowerSingles(NamedTuple):
    r"""``log int q^a (pi_k N_k)^(1 - a) dx = rest_k - a b w_k^2 / 2`` for each component."""

    pd: jax.Array  # (M,) the integral is finite
    rest: jax.Array  # (M,) b log pi_k + b t_k - log(lambda_k) / 2 (accurate near t_k = 0)
    log_abs_w: jax.Array  # (M,) log |w_k|, always finite (or -inf at w = 0)


def power_singles(ln: Line, a: float) -> PowerSingles:
    r"""The single-component integrals of ``q^a p^(1 - a)``, in closed form.

    With ``b = 1 - a``, ``t = log(sigma / s)``, ``V = a s^2 + b sigma^2`` and
    ``w = (mu - m) / sqrt(V)``: ``log int N(mu, sigma^2)^a N(m, s^2)^b = b t
    - log(V / s^2) / 2 - a b w^2 / 2``; near ``t = 0`` the first two terms are
    ``(h(b E) - b g(2t)) / 2`` with ``E = expm1(2t)``, ``h(y) = y - log1p(y)``,
    ``g(x) = e^x - 1 - x``, so that ``q`` close to ``p`` keeps full relative accuracy.
    """
    b = 1.0 - a
    lv, pd = log_lambda(a, ln.log_rho)
    two = 2.0 * ln.log_rho
    near = jnp.abs(two) < 1.0
    tn = jnp.where(near, two, 0.0)
    var_near = 0.5 * (ymlog1p(b * jnp.expm1(tn)) - b * expm1mx(tn))
    var = jnp.where(near, var_near, b * ln.log_rho - 0.5 * lv)
    log_abs_w = safe_log_abs(ln.half_delta) + _LOG2 - ln.log_s - 0.5 * lv
    return PowerSingles(pd, b * ln.log_pi + var, log_abs_w)


def asymptotic_log_power(ps: PowerSingles, a: float):
    r"""``(onehot_k, log I_k)``: the single-component integral that ``log I`` tends to, and which.

    ``I`` lies within a factor ``M^|1 - a|`` of the largest (``a < 1``) or the
    smallest (``a > 1``) ``I_k = int q^a (pi_k N_k)^(1 - a)``, so once
    ``|log I|`` is beyond ``100 / eps`` this is exact to rounding (and for one
    component it is exact). ``log I_k = rest_k - a b w_k^2 / 2`` is ``+-inf``
    where it overflows, with ``log|log I| = log(|a b| / 2) + 2 log|w_k|`` still finite.
    """
    b = 1.0 - a
    sq = jnp.exp(jnp.minimum(2.0 * ps.log_abs_w, log_max(ps.rest.dtype) - 1.0))
    singles = jax.lax.stop_gradient(ps.rest - 0.5 * a * b * sq)
    if a > 1:
        k = jnp.argmin(jnp.where(ps.pd, singles, jnp.inf))
    else:
        k = jnp.argmax(singles)
    onehot = jnp.arange(singles.shape[-1]) == k
    rest = jnp.sum(jnp.where(onehot, ps.rest, 0.0))
    log_w = jnp.sum(jnp.where(onehot, ps.log_abs_w, 0.0))
    return onehot, rest - 0.5 * a * b * jnp.exp(2.0 * log_w)


def pick(x, onehot):
    """``x[k]`` for a one-hot ``k`` (no gather)."""
    return jnp.sum(jnp.where(onehot, x, 0.0), -1)


def scaled_w2(ln: Line, a: float, k):
    r"""``(w_k^2 4^-j, 2 j log 2)``, ``w_k = (mu - m_k) / sqrt(V_k)``, at a power-of-two scale.

    ``j >= 0`` (a constant) is the smallest that keeps the scaled value finite.
    """
    lv, _ = log_lambda(a, pick(ln.log_rho, k))
    log_w = safe_log_abs(pick(ln.half_delta, k)) + _LOG2 - pick(ln.log_s, k) - 0.5 * lv
    j = jax.lax.stop_gradient(
        jnp.maximum(0.0, jnp.ceil((log_w - 0.5 * log_max(lv.dtype) + 4.0) / _LOG2))
    )
    # One exponential (`times_exp`): a product of a huge difference and a small factor would
    # overflow in the reverse pass even where w^2 does not; squared after, so that the second
    # derivative at mu = m_k is right.
    w = times_exp(pick(ln.half_delta, k), (1.0 - j) * _LOG2 - pick(ln.log_s, k) - 0.5 * lv)
    return w * w, 2.0 * j * _LOG2


def single_log_power_grad(ln: Line, a: float, k):
    r"""``d log int q^a (pi_k N_k)^(1 - a) / d(mu, log sigma)``, closed form in log space.

    With ``u = (mu - m) / s``, ``rho = sigma / s``, ``lambda = a + b rho^2``:
    ``(-a b u / (s lambda), -a b expm1(2 log rho) / lambda + a b^2 (u rho / lambda)^2)``;
    ``u rho`` is formed as one logarithm, so neither ``u^2`` overflowing nor
    ``rho^2`` underflowing loses it.
    """
    b = 1.0 - a
    lv, _ = log_lambda(a, pick(ln.log_rho, k))
    log_u = safe_log_abs(pick(ln.half_delta, k)) + _LOG2 - pick(ln.log_s, k)
    sign = jnp.sign(pick(ln.half_delta, k))
    g_loc = -a * b * sign * jnp.exp(log_u - pick(ln.log_s, k) - lv)
    cross = jnp.exp(2.0 * (log_u + pick(ln.log_rho, k) - lv))
    g_ls = -a * b * jnp.expm1(2.0 * pick(ln.log_rho, k)) * jnp.exp(-lv) + a * b * b * cross
    return g_loc, g_ls


class Peaks(NamedTuple):
    r"""The Gaussian-shaped bounds ``q^a (pi_k N_k)^(1 - a)`` of a 1-D pair, in ``x``."""

    pd: jax.Array  # (M,) the bound decays (Lambda_k > 0)
    log_width: jax.Array  # (M,) log Lambda_k^{-1/2}
    base_q: jax.Array  # (M,) x*_k is measured from mu (else from m_k)
    offset: jax.Array  # (M,) x*_k - base, computed in closed form
    log_peak: jax.Array  # (M,) E_k(x*_k), the log of the bound's peak per unit x


def peaks(ln: Line, a: float) -> Peaks:
    r"""Centres, widths and heights of the bounds ``E_k`` (completed squares in ``x``).

    ``E_k(x) = -Lambda_k (x - x*_k)^2 / 2 + E_k(x*_k)``,
    ``Lambda_k = a / sigma^2 + b / s_k^2``,
    ``x*_k - m_k = a (mu - m_k) s_k^2 / V_k`` and ``x*_k - mu = -b (mu - m_k) sigma^2 / V_k``
    (the nearer of the two is kept, so a peak sitting on ``q`` or on a
    component is placed to that density's precision), with ``V_k = a s_k^2 + b sigma^2``.
    """
    b = 1.0 - a
    lv, pd = log_lambda(a, ln.log_rho)
    w = times_exp(ln.half_delta, _LOG2 - ln.log_s - 0.5 * lv)
    w2 = w * w
    log_peak = -0.5 * a * b * w2 - a * ln.log_scale - b * ln.log_s - 0.5 * LOG_2PI + b * ln.log_pi
    log_width = ln.log_scale - 0.5 * lv
    base_q = 2.0 * ln.log_rho + math.log(abs(b)) < math.log(abs(a))
    big = 0.25 * float(jnp.finfo(lv.dtype).max)
    delta = jnp.clip(2.0 * ln.half_delta, -big, big)
    off_m = a * delta * jnp.exp(-lv)
    off_q = -b * delta * jnp.exp(2.0 * ln.log_rho - lv)
    offset = jnp.clip(jnp.where(base_q, off_q, off_m), -big, big)
    return Peaks(pd, log_width, base_q, offset, log_peak)


__all__ = [
    "Line",
    "Peaks",
    "PowerSingles",
    "asymptotic_log_power",
    "gaussian_kl",
    "line",
    "log_lambda",
    "peaks",
    "pick",
    "power_singles",
    "scaled_w2",
    "single_log_power_grad",
]
