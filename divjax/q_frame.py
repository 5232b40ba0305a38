r"""Gaussian algebra in q's standardized variable, in any dimension.

Notation: ``p = sum_k pi_k N(m_k, A_k)`` with ``A_k = T_k T_k^T``, and
``q = N(mu, Sigma)`` with ``Sigma = L L^T``, seen in its standardized variable
``z`` (``x = mu + L z``). Per component, with ``delta_k = mu - m_k``,
``u_k = T_k^{-1} delta_k`` and ``B_k = T_k^{-1} L``:

- the log-ratio ``r_k(z) = log(pi_k N_k(x) / q(x)) = z^T (I - B_k^T B_k) z / 2
  - (B_k^T u_k)^T z - |u_k|^2 / 2 + c_k``, ``c_k = log pi_k + log det L - log det T_k``,
  so ``log(p / q) = logsumexp_k r_k`` (`log_ratios`). In 1-D ``I - B^T B =
  -expm1(2 log(sigma / s_k))`` keeps ``q`` close to a component accurate.
- the power integrand ``q^a (pi_k N_k)^(1 - a)`` in ``z`` is
  ``(2 pi)^{-d/2} exp(E_k(z))`` with ``E_k = -(z - z_k^*)^T Lambda_k (z - z_k^*) / 2 + G_k``,
  ``Lambda_k = a I + (1 - a) B_k^T B_k`` and
  ``G_k = -a (1 - a) delta_k^T (a A_k + (1 - a) Sigma)^{-1} delta_k / 2 + (1 - a) c_k``
  (`power_terms`). Completing the square this way avoids the cancellation
  between ``|z|^2 / 2`` and ``(1 - a) r_k`` that ruins a direct evaluation where
  ``q^2 / p`` peaks far from ``q``. The integral of one component's term is
  ``exp(G_k) det(Lambda_k)^{-1/2}`` when ``Lambda_k`` is positive definite,
  and ``+inf`` otherwise.

``I(a) = int q^a p^(1 - a)`` is ``+inf`` iff the integrand stops decaying in
some direction (`power_integral_infinite`): in 1-D, with ``s`` the widest
component, iff ``sigma^2 >= a s^2 / (a - 1)`` (``a > 1``) or
``sigma^2 <= -a s^2 / (1 - a)`` (``a < 0``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax import _linalg
from divjax.families import LOG_2PI

_NUM_DIRECTIONS_2D = 720


class Frame(NamedTuple):
    """``q`` as an affine map ``x = loc + tril z``, and ``p``'s components seen from it."""

    loc: jax.Array  # (d,)
    tril: jax.Array  # (d, d)
    log_diag: jax.Array  # (d,) log of tril's diagonal
    u: jax.Array  # (M, d) T_k^{-1} (mu - m_k)
    b: jax.Array  # (M, d, d) T_k^{-1} L
    log_rho: jax.Array  # (M,) in 1-D: log(sigma / s_k); unused in d > 1
    c: jax.Array  # (M,) log pi_k + log det L - log det T_k


def frame(p, q) -> Frame:
    """The per-component quantities of the module docstring (``d = 1`` for a 1-D pair)."""
    locs, trils = p.mvn()
    loc, tril, log_diag = q.to_mvn()
    log_det_t = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(trils, 0, -2, -1))), -1)
    c = p.log_probs + jnp.sum(log_diag) - log_det_t
    delta = loc - locs
    if loc.shape[-1] == 1:
        s = jnp.abs(trils[:, 0, 0])
        log_rho = log_diag[0] - jnp.log(s)
        u = delta / s[:, None]
        b = jnp.exp(log_rho)[:, None, None]
    else:
        log_rho = jnp.zeros_like(c)
        u = _linalg.solve_lower(trils, delta)
        b = _linalg.solve_lower(trils[:, None], jnp.swapaxes(tril, -1, -2)[None])
        b = jnp.swapaxes(b, -1, -2)
    return Frame(loc, tril, log_diag, u, b, log_rho, c)


def _btb(f: Frame) -> jax.Array:
    return jnp.swapaxes(f.b, -1, -2) @ f.b


def log_ratios(f: Frame, z: jax.Array) -> jax.Array:
    r"""``r_k(z) = log(pi_k N_k(x) / q(x))`` at ``z (N, d)``, shape ``(N, M)``."""
    bu = jnp.einsum("kji,kj->ki", f.b, f.u)  # B_k^T u_k
    const = -0.5 * jnp.sum(f.u**2, -1) + f.c
    if z.shape[-1] == 1:
        alpha = -jnp.expm1(2.0 * f.log_rho)  # 1 - rho^2, accurate near rho = 1
        z1 = z[:, :1]
        return 0.5 * alpha * z1**2 - bu[:, 0] * z1 + const
    a = jnp.eye(z.shape[-1], dtype=z.dtype) - _btb(f)
    quad = jnp.einsum("ni,kij,nj->nk", z, a, z)
    return 0.5 * quad - z @ bu.T + const


class PowerTerms(NamedTuple):
    """``E_k`` of the module docstring for one exponent ``a`` (leading axis: components)."""

    prec: jax.Array  # (M, d, d) Lambda_k
    centre: jax.Array  # (M, d) z_k^* (meaningless where not pd)
    log_peak: jax.Array  # (M,) G_k
    pd: jax.Array  # (M,) Lambda_k positive definite
    h: jax.Array  # (M, d) -(1 - a) B_k^T u_k
    plain: jax.Array  # (M,) (1 - a) (c_k - |u_k|^2 / 2)


def power_terms(f: Frame, a: float) -> PowerTerms:
    """The completed squares ``E_k`` of ``q^a (pi_k N_k)^(1 - a)`` in q's frame."""
    d = f.loc.shape[-1]
    eye = jnp.eye(d, dtype=f.u.dtype)
    h = -(1.0 - a) * jnp.einsum("kji,kj->ki", f.b, f.u)
    if d == 1:
        lam = a + (1.0 - a) * jnp.exp(2.0 * f.log_rho)
        pd = lam > 0
        safe = jnp.where(pd, lam, 1.0)
        centre = h / safe[:, None]
        quad_u = f.u[:, 0] ** 2 / safe
        prec = lam[:, None, None]
    else:
        prec = a * eye + (1.0 - a) * _btb(f)
        pd = _linalg.is_positive_definite(prec)
        safe = jnp.where(pd[:, None, None], prec, eye)
        centre = _linalg.solve_spd(safe, h)
        w = a * eye + (1.0 - a) * f.b @ jnp.swapaxes(f.b, -1, -2)
        w = jnp.where(pd[:, None, None], w, eye)
        quad_u = jnp.sum(f.u * _linalg.solve_spd(w, f.u), -1)
    log_peak = -0.5 * a * (1.0 - a) * quad_u + (1.0 - a) * f.c
    plain = (1.0 - a) * (f.c - 0.5 * jnp.sum(f.u**2, -1))
    return PowerTerms(prec, centre, log_peak, pd, h, plain)


def power_exponents(t: PowerTerms, z: jax.Array) -> jax.Array:
    """``E_k(z)`` at ``z (N, d)``, shape ``(N, M)``: completed square where ``Lambda_k`` is pd."""
    # Each branch sees zeros where the other is used: no inf - inf, hence no NaN cotangent.
    pd = t.pd[None, :, None]
    dz = jnp.where(pd, z[:, None, :] - t.centre, 0.0)
    zp = jnp.where(pd, 0.0, z[:, None, :])
    completed = -0.5 * jnp.einsum("nki,kij,nkj->nk", dz, t.prec, dz) + t.log_peak
    plain = -0.5 * jnp.einsum("nki,kij,nkj->nk", zp, t.prec, zp)
    plain = plain + jnp.einsum("nki,ki->nk", zp, t.h) + t.plain
    return jnp.where(t.pd, completed, plain)


def log_power_integrand(t: PowerTerms, z: jax.Array, a: float) -> jax.Array:
    r"""``log(q^a p^(1 - a))`` per unit ``z``-volume, ``(N,)``: ``(1 - a) lse_k(E_k / (1 - a))``."""
    d = z.shape[-1]
    e = power_exponents(t, z)
    # Shift by the extreme term before scaling: exp((e_k - m) / (1 - a)) <= 1 for every k.
    m = jax.lax.stop_gradient(jnp.max(e, -1) if a < 1 else jnp.min(e, -1))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    s = jnp.sum(jnp.exp((e - m[:, None]) / (1.0 - a)), axis=-1)
    return m + (1.0 - a) * jnp.log(s) - 0.5 * d * LOG_2PI


def single_log_power_integral(t: PowerTerms) -> jax.Array:
    """``log I(a)`` for a one-component target: ``G - log det(Lambda) / 2`` (``inf`` if not pd)."""
    eye = jnp.eye(t.prec.shape[-1], dtype=t.prec.dtype)
    logdet = _linalg.logdet_spd(jnp.where(t.pd[:, None, None], t.prec, eye))
    return jnp.where(t.pd[0], t.log_peak[0] - 0.5 * logdet[0], jnp.inf)


def power_integral_infinite(f: Frame, a: float) -> jax.Array:
    r"""Whether ``I(a) = int q^a p^(1 - a) = inf`` (see the module docstring)."""
    if 0.0 <= a <= 1.0:
        return jnp.zeros((), bool)
    t = power_terms(f, a)
    if a < 0:  # every component's term must decay in every direction
        return ~jnp.all(t.pd)
    d = f.loc.shape[-1]
    if d == 1:  # the widest component dominates p in both tails
        return jnp.max(t.prec[:, 0, 0]) <= 0
    # p's tail along v is its slowest-decaying component's: need max_k v^T Lambda_k v > 0.
    v = _directions(d, f.u.dtype)
    forms = jnp.einsum("ni,kij,nj->nk", v, t.prec, v)
    return jnp.any(jnp.max(forms, axis=-1) <= 0)


def _directions(d: int, dtype) -> jax.Array:
    if d == 2:
        th = np.linspace(0.0, math.pi, _NUM_DIRECTIONS_2D, endpoint=False)
        v = np.stack([np.cos(th), np.sin(th)], -1)
    else:  # a fixed quasi-exhaustive set: the axes, their diagonals and random directions
        rng = np.random.default_rng(0)
        v = np.concatenate([np.eye(d), rng.standard_normal((4096, d))])
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return jnp.asarray(v, dtype)


__all__ = [
    "Frame",
    "PowerTerms",
    "frame",
    "log_power_integrand",
    "log_ratios",
    "power_exponents",
    "power_integral_infinite",
    "power_terms",
    "single_log_power_integral",
]
