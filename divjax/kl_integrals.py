r"""The KL integrals without closed form: ``KL(q || p)`` and ``E_p[log p]``.

``KL(q || p) = -E_q[log(p / q)]`` is taken in q's standardized variable
``z`` (``x = mu + L z``), centred on the component that dominates ``q``'s
bulk: ``KL = -E_q[r_*] - E_q[log sum_k exp(r_k - r_*)]`` with
``r_k = log(pi_k N_k / q)``. ``E_q[r_*]`` is closed form, so a ``q`` 1e5
away costs no digits (and no digits of its gradient); in 1-D all terms are
divided by a scale ``S`` where they would overflow, so a value beyond the
float range comes out as ``inf`` with a finite logarithm. One component:
closed form (`divjax.line_algebra.gaussian_kl`).

``E_p[log p]`` (`neg_entropy`, for ``KL(p || q)``) is integrated in ``x``
around p's components.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import quadrature
from divjax._numerics import clamp_at_zero, log_max, mul_exp, safe_log_abs
from divjax.families import LOG_2PI
from divjax.line_algebra import gaussian_kl, line
from divjax.pair_rules import check_dim, log_p_at, log_std_normal, p_rule, q_rule
from divjax.q_frame import frame, log_ratios

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * LOG_2PI
# Terms are divided by S = exp(log A - _SCALE_AT) once their size A exceeds exp(_SCALE_AT).
_SCALE_AT = 40.0
stop = jax.lax.stop_gradient


def _dominant(expected_r):
    """The component with the largest ``E_q[r_k]`` (stop-gradient)."""
    return stop(jnp.argmax(jnp.where(jnp.isnan(expected_r), -jnp.inf, expected_r)))


def _kl_reverse_centred(p, q, rule=None) -> jax.Array:
    r"""``KL(q || p)`` in q's frame (``d <= 2``): ``-E_q[r_*] - E_q[log sum_k exp(r_k - r_*)]``."""
    check_dim(p)
    f = frame(p, q)
    z, w = q_rule(p, f) if rule is None else rule
    d = z.shape[-1]
    btb = jnp.swapaxes(f.b, -1, -2) @ f.b
    tr = d - jnp.trace(btb, axis1=-2, axis2=-1)
    expected_r = 0.5 * tr - 0.5 * jnp.sum(f.u**2, -1) + f.c  # E_q[r_k]
    k = _dominant(expected_r)
    r = log_ratios(f, z)
    sp = logsumexp(r - r[:, k][:, None], axis=-1)
    return -expected_r[k] - quadrature.weighted_sum(w * jnp.exp(log_std_normal(z)), sp)


def _kl_line_terms(p, q):
    r"""The pieces of ``KL(q || p)`` for a 1-D mixture, divided by ``S`` (`kl_reverse_scaled`)."""
    ln = line(p, q)
    dtype = ln.log_scale.dtype
    log_u = safe_log_abs(ln.half_delta) + _LOG2 - ln.log_s
    log_a = jnp.logaddexp(2.0 * log_u, 2.0 * ln.log_rho) - _LOG2  # (u^2 + rho^2) / 2
    c = ln.log_pi + ln.log_rho
    small = log_a < 60.0
    score = c + 0.5 - jnp.exp(jnp.minimum(log_a, 60.0))  # E_q[r_k]
    k = stop(
        jnp.where(jnp.any(small), jnp.argmax(jnp.where(small, score, -jnp.inf)), jnp.argmin(log_a))
    )
    log_s = stop(jnp.maximum(log_a[k] - _SCALE_AT, 0.0))
    inv_s = jnp.exp(-log_s)
    lam = jnp.maximum(log_u, ln.log_rho)
    # Components far larger than the scale are negligible spikes or far-away tails.
    keep = stop(2.0 * lam - log_s < log_max(dtype) - 20.0)
    us = jnp.where(
        keep, 2.0 * ln.half_delta * jnp.exp(jnp.where(keep, -ln.log_s - 0.5 * log_s, 0.0)), 0.0
    )
    rs = jnp.where(keep, jnp.exp(jnp.where(keep, ln.log_rho - 0.5 * log_s, 0.0)), 0.0)
    f = frame(p, q)
    z, w = q_rule(p, f)
    z = z[:, 0]
    mass = w * jnp.exp(-0.5 * z * z - _HALF_LOG_2PI)
    v = us + rs * z[:, None]  # (u_k + rho_k z) / sqrt(S)
    r = jnp.where(keep, (c + 0.5 * z[:, None] ** 2) * inv_s - 0.5 * v * v, -jnp.inf)
    gap = (r - r[:, k][:, None]) * jnp.exp(jnp.minimum(log_s, 60.0))
    gap = jnp.where(keep, gap, -jnp.inf)
    return ln, k, log_s, inv_s, us, rs, z, mass, v, gap, c


def kl_reverse_scaled(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``(K, log S)`` with ``KL(q || p) = K S`` (``log S`` a constant, ``0`` unless huge).

    1-D mixtures: the centred form of the module docstring with every term
    divided by ``S = exp(max(0, log A_* - 40))``, ``A_* = (u_*^2 + rho_*^2) / 2``
    the dominant component's size. One component: closed form. 2-D: the
    centred form in q's frame (``S = 1``).
    """
    if p.dim == 1 and p.num_components == 1:
        ln = line(p, q)
        w = 2.0 * ln.half_delta[0] * jnp.exp(-ln.log_s[0])
        value, _ = gaussian_kl(2.0 * ln.log_rho[0], w)
        return value, jnp.zeros_like(value)
    if p.dim != 1:
        value = _kl_reverse_centred(p, q)
        value = clamp_at_zero(value)
        return value, jnp.zeros_like(value)
    ln, k, log_s, inv_s, us, rs, z, mass, v, gap, c = _kl_line_terms(p, q)
    expected = (c[k] + 0.5) * inv_s - 0.5 * (us[k] ** 2 + rs[k] ** 2)
    sp = logsumexp(gap, axis=-1)  # >= 0: the k-th gap is 0
    scaled = -expected - inv_s * jnp.sum(mass * sp)
    scaled = clamp_at_zero(scaled)  # no rounding-level negative
    return scaled, log_s


def kl_reverse_values(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``(KL(q || p), log KL(q || p))``; the logarithm is finite where the value overflows."""
    if p.dim == 1 and p.num_components == 1:
        ln = line(p, q)
        w = 2.0 * ln.half_delta[0] * jnp.exp(-ln.log_s[0])
        return gaussian_kl(2.0 * ln.log_rho[0], w)
    scaled, log_s = kl_reverse_scaled(p, q)
    return mul_exp(scaled, log_s), jnp.log(scaled) + log_s


def kl_reverse_line_grad(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``d KL(q || p) / d(mu, log sigma)`` for a 1-D mixture, from the centred form.

    ``d(-E_q[r_*]) = (u_* / s_*, rho_*^2 - 1)`` in closed form, and
    ``d E_q[log sum_k exp(r_k - r_*)] = E_q[sum_k resp_k (dr_k - dr_*)]`` with
    ``dr_k / dmu = -(u_k + rho_k z) / s_k``,
    ``dr_k / dlog sigma = 1 - (u_k + rho_k z) rho_k z``; far from ``p`` every
    ``resp_k``, ``k != *``, vanishes and the gradient is the closed form alone.
    """
    ln, k, log_s, inv_s, us, rs, z, mass, v, gap, c = _kl_line_terms(p, q)
    resp = jax.nn.softmax(gap, axis=-1)
    inv_sk = jnp.exp(-ln.log_s - 0.5 * log_s)  # 1 / (s_k sqrt(S))
    d_loc = -v * inv_sk  # (dr_k / dmu) / S
    d_ls = inv_s - v * rs * z[:, None]  # (dr_k / dlog sigma) / S
    g_loc = us[k] * inv_sk[k] - jnp.sum(mass * jnp.sum(resp * (d_loc - d_loc[:, k][:, None]), -1))
    g_ls = rs[k] ** 2 - inv_s - jnp.sum(mass * jnp.sum(resp * (d_ls - d_ls[:, k][:, None]), -1))
    return mul_exp(g_loc, log_s), mul_exp(g_ls, log_s)


def kl_reverse(p, q, rule=None) -> jax.Array:
    r"""``KL(q || p) = -E_q[log(p / q)]``, in q's frame (``rule``: a fixed ``(z, w)`` instead)."""
    if rule is None:
        return kl_reverse_values(p, q)[0]
    return _kl_reverse_centred(p, q, rule)


def neg_entropy(p) -> jax.Array:
    r"""``E_p[log p]`` of the normalized mixture, by quadrature around its components."""
    x, w = p_rule(jax.lax.stop_gradient(p))
    log_p = log_p_at(p, x)
    return quadrature.weighted_sum(w * jnp.exp(log_p), log_p)


__all__ = [
    "kl_reverse",
    "kl_reverse_line_grad",
    "kl_reverse_scaled",
    "kl_reverse_values",
    "neg_entropy",
]
