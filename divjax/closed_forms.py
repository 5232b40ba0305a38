r"""Closed forms in p's moments and over pairs of p's components, in any dimension.

The cross-entropy ``-E_p[log q]`` needs only p's mean and covariance, and
``log(1 + chi^2(p || q)) = log int p^2 / q`` is a sum over pairs of
components of Gaussian integrals ``int N_i N_j / q``, finite iff every
``Sigma - C_ij`` is positive definite. Both keep what can overflow as a
logarithm or behind a power-of-two scale.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import _linalg
from divjax._numerics import half_difference, log_max, log_norm, mul_exp, safe_log_abs, times_exp
from divjax.families import LOG_2PI

_LOG2 = math.log(2.0)


def cross_entropy_parts(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``(C, log B)`` with ``-E_p[log q] = C + B``, both finite for every finite ``q``.

    ``C = d log(2 pi) / 2 + log det L`` and ``B = tr(L^{-1} E_p[(x - mu)(x - mu)^T] L^{-T}) / 2``,
    the part that grows without bound as ``q`` narrows or moves away. ``log B``
    stays finite where ``B`` itself is beyond the float range.
    """
    loc, tril, log_diag = q.to_mvn()
    d = loc.shape[-1]
    mean = jnp.reshape(p.mean(), (d,))
    cov = jnp.reshape(p.covariance(), (d, d))
    diff = half_difference(mean, loc)  # (mean - loc) / 2: never overflows
    if d == 1:
        log_t1 = jnp.log(cov[0, 0]) - 2.0 * log_diag[0]
        log_t2 = 2.0 * (safe_log_abs(diff[0]) + _LOG2 - log_diag[0])
        return 0.5 * LOG_2PI + log_diag[0], jnp.logaddexp(log_t1, log_t2) - _LOG2
    c = jax.lax.stop_gradient(jnp.max(log_diag))
    inv = _linalg.solve_lower(tril * jnp.exp(-c), jnp.eye(d, dtype=tril.dtype)).T
    v = inv @ diff  # L~^{-1} (mean - loc) / 2, with L~ = L e^{-c}
    t1 = jnp.sum((inv @ cov) * inv)
    log_t2 = 2.0 * (log_norm(v) + _LOG2)
    log_b = jnp.logaddexp(jnp.log(t1), log_t2) - _LOG2 - 2.0 * c
    return 0.5 * d * LOG_2PI + jnp.sum(log_diag), log_b


def cross_entropy_terms(p, q) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``(C, Q, log_f)`` with ``-E_p[log q] = C + Q exp(log_f)``; ``log_f`` is a constant.

    In 1-D ``Q = (Var_p + (E_p x - mu)^2) / (2 sigma^2 F)``, with ``F = 1``
    unless that nears the float range: autodiff never forms ``0 * inf`` nor
    overflows on the way. In ``d`` dimensions ``L`` is first divided by its largest diagonal entry
    ``exp(c)`` and ``log_f = -2 c`` (stop-gradient), so ``Q`` stays in range.
    """
    loc, tril, log_diag = q.to_mvn()
    d = loc.shape[-1]
    mean = jnp.reshape(p.mean(), (d,))
    cov = jnp.reshape(p.covariance(), (d, d))
    if d == 1:
        # Scale by F = exp(log_f) once B nears the range, so that Q and every
        # intermediate of its derivative stay finite.
        _, log_b = cross_entropy_parts(p, q)
        log_f = jax.lax.stop_gradient(jnp.maximum(0.0, log_b - 0.5 * log_max(log_b.dtype)))
        diff = times_exp(half_difference(mean[0], loc[0]), _LOG2 - log_diag[0] - 0.5 * log_f)
        var = jnp.exp(jnp.log(cov[0, 0]) - 2.0 * log_diag[0] - log_f)
        return 0.5 * LOG_2PI + log_diag[0], 0.5 * (var + diff * diff), log_f
    c = jax.lax.stop_gradient(jnp.max(log_diag))
    inv = _linalg.solve_lower(tril * jnp.exp(-c), jnp.eye(d, dtype=tril.dtype)).T
    v = inv @ (2.0 * half_difference(mean, loc))
    quad = 0.5 * (jnp.sum((inv @ cov) * inv) + jnp.sum(v * v))
    return 0.5 * d * LOG_2PI + jnp.sum(log_diag), quad, -2.0 * c


def cross_entropy(p, q) -> jax.Array:
    r"""``-E_p[log q]``, closed form in p's mean and covariance, any ``d``.

    ``+inf`` where it is beyond the float range (see `cross_entropy_terms`).
    """
    c, quad, log_f = cross_entropy_terms(p, q)
    return c + mul_exp(quad, log_f)


class PairTerms(NamedTuple):
    """``log pi_i pi_j int N_i N_j / q`` and its pieces, over pairs ``(M, M)``."""

    log_terms: jax.Array  # (M, M)
    diff: jax.Array  # (M, M, d) c_ij - mu
    dmat: jax.Array  # (M, M, d, d) Sigma - C_ij (identity where not pd; unused in 1-D)
    pd: jax.Array  # (M, M)
    cmat: jax.Array  # (M, M, d, d) C_ij


def chi2_forward_pairs(p, q) -> PairTerms:
    r"""The pairs of ``p^2 / q``: ``N_i N_j = N(m_i; m_j, A_i + A_j) N(x; c_ij, C_ij)``.

    ``int N(x; c, C) / N(x; mu, Sigma) = (2 pi)^{d/2} det Sigma det(D)^{-1/2}
    exp((c - mu)^T D^{-1} (c - mu) / 2)`` with ``D = Sigma - C``, finite iff
    ``D`` is positive definite. In 1-D ``D = sigma^2 (1 - C / sigma^2)`` is
    kept in that form (``sigma^2`` may overflow where the value does not).
    """
    locs, trils = p.mvn()
    loc, tril, log_diag = q.to_mvn()
    d = loc.shape[-1]
    a = trils @ jnp.swapaxes(trils, -1, -2)
    ai, aj = a[:, None], a[None, :]
    mi, mj = locs[:, None], locs[None, :]
    s_sum = ai + aj
    s_inv = _linalg.inv_spd(s_sum)
    cmat = ai @ s_inv @ aj
    cmat = 0.5 * (cmat + jnp.swapaxes(cmat, -1, -2))
    centre = jnp.einsum("...ij,...j->...i", aj @ s_inv, mi) + jnp.einsum(
        "...ij,...j->...i", ai @ s_inv, mj
    )
    dm = mi - mj
    log_n = -0.5 * (_linalg.logdet_spd(s_sum) + d * LOG_2PI) - 0.5 * jnp.einsum(
        "...i,...ij,...j->...", dm, s_inv, dm
    )
    log_pi = p.log_probs
    if d == 1:
        ratio = cmat[..., 0, 0] * jnp.exp(-2.0 * log_diag[0])  # C / sigma^2
        pd = jax.lax.stop_gradient(ratio < 1.0)
        one_minus = jnp.where(pd, 1.0 - ratio, 1.0)
        diff = 2.0 * half_difference(centre, loc)
        scaled = times_exp(diff[..., 0], -log_diag[0])  # (c - mu) / sigma
        quad = scaled * scaled / one_minus
        log_int = log_n + 0.5 * LOG_2PI + log_diag[0] - 0.5 * jnp.log(one_minus)
        log_terms = log_pi[:, None] + log_pi[None, :] + log_int + 0.5 * quad
        dmat = jnp.ones_like(cmat)
        return PairTerms(log_terms, diff, dmat, pd, cmat)
    dmat = tril @ tril.T - cmat
    pd = jax.lax.stop_gradient(_linalg.is_positive_definite(dmat))
    dmat = jnp.where(pd[..., None, None], dmat, jnp.eye(d, dtype=dmat.dtype))
    diff = centre - loc
    quad = jnp.sum(diff * _linalg.solve_spd(dmat, diff), -1)
    log_int = log_n + 0.5 * d * LOG_2PI + 2.0 * jnp.sum(log_diag) - 0.5 * _linalg.logdet_spd(dmat)
    log_terms = log_pi[:, None] + log_pi[None, :] + log_int + 0.5 * quad
    return PairTerms(log_terms, diff, dmat, pd, cmat)


def chi2_forward_log1p(p, q) -> jax.Array:
    r"""``log(1 + chi^2(p || q)) = log I(-1)``, closed form, ``+inf`` where infinite."""
    t = chi2_forward_pairs(p, q)
    return jnp.where(jnp.all(t.pd), logsumexp(t.log_terms), jnp.inf)


__all__ = [
    "PairTerms",
    "chi2_forward_log1p",
    "chi2_forward_pairs",
    "cross_entropy",
    "cross_entropy_parts",
    "cross_entropy_terms",
]
