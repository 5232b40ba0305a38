r"""Hand-derived exact gradients for the 1-D `Gaussian` family, ``phi = (loc, log_scale)``.

These are the formulas a reader derives on paper; `divjax.exact_grad` returns
them for a 1-D target and `divjax.autodiff_grad` (``jax.grad`` of the value)
checks them. With ``x = mu + sigma z``, ``q``'s score is
``grad_phi log q = (z / sigma, z^2 - 1)``.

- ``kl_forward``: ``-E_p[grad log q] = (-(E_p x - mu) / sigma^2, 1 - E_p[(x - mu)^2] / sigma^2)``,
  closed form in the mixture's mean and variance.
- ``kl_reverse``: ``(-E_q[d/dx log p], -1 - E_q[(x - mu) d/dx log p])`` (the
  reparameterization identity), by quadrature in q's frame.
- ``chi2_forward``: the derivative of the pairwise closed form of ``log(1 + chi^2)``.
- ``chi2_reverse``: ``2 E_q[(q / p) grad log q] = 2 int (q^2 / p) grad log q``,
  by quadrature in q's frame, in log space.

Chi-square gradients are ``(1 + chi^2) grad log(1 + chi^2)`` rescaled in log
space, so a finite chi-square beyond the float range gives ``+-inf``, never NaN.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import quadrature
from divjax.closed_forms import (
    chi2_forward_pairs,
    frame,
    log_power_integrand,
    log_ratios,
    power_terms,
)
from divjax.families import Gaussian
from divjax.integrals import q_rule


def scaled(log_scale: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """``exp(log_scale) * x`` without forming ``inf * 0``."""
    return jnp.sign(x) * jnp.exp(log_scale + jnp.log(jnp.abs(x)))


def kl_forward(p, q: Gaussian) -> Gaussian:
    second = p.variance() + (p.mean() - q.loc) ** 2
    inv_var = jnp.exp(-2.0 * q.log_scale)
    return Gaussian._make((-(p.mean() - q.loc) * inv_var, 1.0 - second * inv_var))


def kl_reverse(p, q: Gaussian) -> Gaussian:
    # sigma d/dx log p at x = mu + sigma z is -sum_k resp_k rho_k (u_k + rho_k z).
    f = frame(p, q)
    z, w = q_rule(p, f)
    resp = jnp.exp(log_ratios(f, z) - logsumexp(log_ratios(f, z), axis=-1, keepdims=True))
    rho = jnp.exp(f.log_rho)
    slope = -jnp.sum(resp * rho * (f.u[:, 0] + rho * z), axis=-1)  # sigma d/dx log p
    mass = w * jnp.exp(-0.5 * z[:, 0] ** 2 - 0.5 * jnp.log(2.0 * jnp.pi))
    grad_loc = -quadrature.weighted_sum(mass, slope) * jnp.exp(-q.log_scale)
    grad_log_scale = -1.0 - quadrature.weighted_sum(mass, z[:, 0] * slope)
    return Gaussian._make((grad_loc, grad_log_scale))


def chi2_forward(p, q: Gaussian) -> Gaussian:
    t = chi2_forward_pairs(p, q)
    lse = logsumexp(t.log_terms)
    r = jnp.exp(t.log_terms - lse)
    diff, dmat = t.diff[..., 0], t.dmat[..., 0, 0]
    s2 = jnp.exp(2.0 * q.log_scale)
    d_loc = -diff / dmat
    d_log_scale = 2.0 - s2 / dmat - s2 * diff**2 / dmat**2
    return Gaussian._make(tuple(scaled(lse, jnp.sum(r * g)) for g in (d_loc, d_log_scale)))


def chi2_reverse(p, q: Gaussian) -> Gaussian:
    f = frame(p, q)
    terms = power_terms(f, 2.0)
    z, w = q_rule(p, f, terms)
    log_f = log_power_integrand(terms, z, 2.0)
    z = z[:, 0]
    out = []
    for score in (z * jnp.exp(-q.log_scale), z**2 - 1.0):
        val, sign = logsumexp(log_f, b=w * score, return_sign=True)
        out.append(2.0 * sign * jnp.exp(val))
    return Gaussian._make(out)


GRADIENTS = {
    "kl_forward": kl_forward,
    "kl_reverse": kl_reverse,
    "chi2_forward": chi2_forward,
    "chi2_reverse": chi2_reverse,
}

__all__ = ["GRADIENTS", "scaled"]
