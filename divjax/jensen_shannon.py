r"""The Jensen-Shannon divergence as one non-negative integral.

``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``, is
``int max(p, q) F(-|log(p / q)|) / 2`` with ``F >= 0`` (`_js_generator`):
no cancellation between the halves, so a tiny JS keeps its relative accuracy.
In 1-D the line is shared among the claims of ``q`` and of p's components
(`divjax.quadrature.claims_rule`); in 2-D it is integrated in q's frame.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import quadrature
from divjax._numerics import half_difference, safe_log_abs, times_exp
from divjax.families import LOG_2PI
from divjax.line_algebra import line
from divjax.pair_rules import check_dim, claim_crossings, claim_u, log_std_normal, q_rule, ucap
from divjax.q_frame import frame, log_ratios

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * LOG_2PI


_JS = tuple(1.0 / (n * (2 * n - 1)) for n in range(1, 6))


def _js_generator(y):
    r"""``F(-y)``, ``y = |log(p / q)|``: the Jensen-Shannon integrand is ``max(p, q) F(-y) / 2``.

    ``F(L) = e^L log(2 e^L / (1 + e^L)) + log(2 / (1 + e^L)) >= 0``; for small
    ``y`` it is ``N(tau) / (1 - tau)``, ``tau = -tanh(y / 2)``, from a series,
    so that ``q`` close to ``p`` keeps relative accuracy (the direct form
    loses ``2 eps / y`` relative, so it takes over from ``y = 0.02``).
    """
    near = y < 0.02
    yn = jnp.where(near, y, 0.0)
    tau = -jnp.tanh(0.5 * yn)
    t2 = tau * tau
    acc = jnp.zeros_like(t2) + _JS[-1]
    for c in _JS[-2::-1]:
        acc = acc * t2 + c
    series = t2 * acc / (1.0 - tau)
    yf = jnp.where(near, 1.0, y)
    e = jnp.exp(-yf)
    l1 = jnp.log1p(e)
    direct = e * (_LOG2 - yf - l1) + _LOG2 - l1
    return jnp.where(near, series, direct)


def _js_line(p, q) -> jax.Array:
    r"""Jensen-Shannon for a 1-D mixture: claims ``q`` and the components, one integral."""
    ln = line(p, q)
    centres = jnp.concatenate([ln.loc[None], ln.locs])
    lw = jnp.concatenate([ln.log_scale[None], ln.log_s])
    half_diff = half_difference(centres[:, None], centres[None, :])
    cross = claim_crossings(p, ln, centres, jnp.zeros_like(centres), lw)
    t, w = quadrature.claims_rule(half_diff, lw, cross)
    u = claim_u(half_diff, lw, t, ucap(lw.dtype))  # (J, N, 1 + M)
    log_n = -0.5 * u * u - lw - _HALF_LOG_2PI + lw[:, None, None]  # per unit t of frame o
    log_q = log_n[..., 0]
    log_p = logsumexp(log_n[..., 1:] + ln.log_pi, axis=-1)
    # Where q is close to a component, log(p / q) from the differences themselves:
    # log(N_k / q) = log(sigma / s_k) + (u_q - u_k)(u_q + u_k) / 2 with
    # u_q - u_k = -u_q expm1(log(sigma / s_k)) - (mu - m_k) / s_k (no cancellation).
    uq, uk = u[..., :1], u[..., 1:]
    log_u0 = safe_log_abs(ln.half_delta) + _LOG2 - ln.log_s
    close = (log_u0 < 8.0) & (jnp.abs(ln.log_rho) < 1.0)  # (M,)
    moderate = close & (jnp.abs(uq) < 1e3) & (jnp.abs(uk) < 1e3)
    u0 = times_exp(jnp.where(close, ln.half_delta, 0.0), _LOG2 - ln.log_s)  # (mu - m_k) / s_k
    d = -uq * jnp.expm1(jnp.where(close, ln.log_rho, 0.0)) - u0
    r_near = ln.log_pi + ln.log_rho + 0.5 * d * (uq + uk)
    ell_near = logsumexp(jnp.where(moderate, r_near, -jnp.inf), axis=-1)
    use_near = jnp.all(moderate, axis=-1)
    ell = jnp.where(use_near, jnp.where(use_near, ell_near, 0.0), log_p - log_q)
    terms = jnp.exp(jnp.maximum(log_p, log_q)) * _js_generator(jnp.abs(ell))
    return 0.5 * jnp.sum(w * terms)


def _js_q_frame(p, q, rule=None) -> jax.Array:
    r"""Jensen-Shannon in q's frame (any ``d <= 2``): the window's integral plus ``log 2 / 2`` times
    p's mass outside it (where ``q`` is below ``exp(-800)``)."""
    check_dim(p)
    f = frame(p, q)
    z, w = q_rule(p, f) if rule is None else rule
    ell = logsumexp(log_ratios(f, z), axis=-1)
    log_q = log_std_normal(z)
    log_p = log_q + ell
    inside = jnp.sum(w * jnp.exp(jnp.maximum(log_p, log_q)) * _js_generator(jnp.abs(ell)))
    outside = jnp.maximum(1.0 - jnp.sum(w * jnp.exp(log_p)), 0.0)
    return 0.5 * inside + 0.5 * _LOG2 * outside


def jensen_shannon(p, q, rule=None) -> jax.Array:
    r"""``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``, as one non-negative integral.

    ``JS = int max(p, q) F(-|log(p / q)|) / 2`` (`_js_generator`): no
    cancellation between the halves, so a tiny JS keeps its relative accuracy.
    """
    if p.dim == 1 and rule is None:
        return _js_line(p, q)
    return _js_q_frame(p, q, rule)


__all__ = ["jensen_shannon"]
