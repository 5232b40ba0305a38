r"""The exact integrals that have no closed form, by quadrature in the right frame.

- Expectations under ``q`` (``KL(q || p)``, ``I(a) = int q^a p^(1 - a)``, the
  q-half of Jensen-Shannon) are integrated in q's standardized variable ``z``
  (``x = mu + L z``), with the integrand built from the per-component closed
  forms of `divjax.closed_forms` (no ``x`` is ever formed, so ``q`` may be
  1e-30 wide or 1e5 away and nothing cancels or overflows).
- Expectations under ``p`` (``E_p[log p]``, the p-half of Jensen-Shannon) are
  integrated in ``x`` around p's components.

Anchors (`divjax.quadrature`): ``q`` at ``z = 0`` (width 1), every component
of ``p`` (centre ``L^{-1}(m_k - mu)``, its extent in ``z``), the peak of every
bound ``q^a N_k^(1 - a)`` (centre ``z_k^*``, width ``Lambda_k^{-1/2}``), and in
1-D every dominance crossing of the mixture. The window holds ``q`` and those
peaks, which bound the integrand; ``q^2 / p`` can peak 60 q-widths away from
``q``'s mean (``N(12, 1.3^2)`` on the default target), far outside any fixed
window around ``q``. 1-D or 2-D (a tensor-product rule); ``d > 2`` has no
quadrature.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import _linalg, quadrature
from divjax.closed_forms import (
    Frame,
    chi2_forward_log1p,
    frame,
    log_power_integrand,
    log_ratios,
    power_integral_infinite,
    power_terms,
    single_log_power_integral,
)
from divjax.families import LOG_2PI, normal_log_prob

_LOG2 = math.log(2.0)


def _component_anchors(f: Frame, p) -> tuple[jax.Array, jax.Array]:
    """Centres and per-axis extents of p's components in q's frame, ``(M, d)`` each."""
    locs, trils = p.mvn()
    if f.loc.shape[-1] == 1:
        inv_rho = jnp.exp(-f.log_rho)
        return -f.u * inv_rho[:, None], inv_rho[:, None]
    centre = _linalg.solve_lower(f.tril, locs - f.loc)
    v = _linalg.solve_lower(f.tril, jnp.swapaxes(trils, -1, -2))  # rows: L^{-1} T_k columns
    return centre, jnp.sqrt(jnp.sum(v**2, axis=-2))


def q_rule(p, f: Frame, terms=None) -> tuple[jax.Array, jax.Array]:
    r"""Nodes ``z (N, d)`` and weights ``(N,)`` for ``int g(z) dz`` in q's frame.

    ``terms`` (`divjax.closed_forms.PowerTerms`) adds the peaks of the power
    integrand's per-component bounds as anchors and to the window.
    """
    d = f.loc.shape[-1]
    dtype = f.u.dtype
    centres = [jnp.zeros((1, d), dtype)]
    widths = [jnp.ones((1, d), dtype)]
    if terms is not None:
        eye = jnp.eye(d, dtype=dtype)
        cov = _linalg.inv_spd(jnp.where(terms.pd[:, None, None], terms.prec, eye))
        centres.append(jnp.where(terms.pd[:, None], terms.centre, 0.0))
        widths.append(jnp.sqrt(jnp.diagonal(cov, 0, -2, -1)))
    lo, hi = quadrature.window(jnp.concatenate(centres), jnp.concatenate(widths))
    comp_c, comp_w = _component_anchors(f, p)
    centres, widths = jnp.concatenate(centres + [comp_c]), jnp.concatenate(widths + [comp_w])
    if d == 2:
        return quadrature.rule_2d(centres, widths, lo, hi)
    locs, trils = p.mvn()
    x_c, kappa = quadrature.mixture_crossings(p.log_probs, locs[:, 0], trils[:, 0, 0])
    sigma = jnp.exp(f.log_diag[0])
    crossings = ((x_c - f.loc[0]) / sigma, kappa * sigma)
    z, w = quadrature.rule_1d(centres[:, 0], widths[:, 0], lo[0], hi[0], crossings)
    return z[:, None], w


def _log_std_normal(z: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(z**2, -1) - 0.5 * z.shape[-1] * LOG_2PI


def _check_dim(p) -> None:
    if p.dim > 2:
        raise ValueError(f"quadrature needs d <= 2, got d = {p.dim}")


def kl_reverse(p, q, rule=None) -> jax.Array:
    r"""``KL(q || p) = -E_q[log(p / q)]``, in q's frame (``rule``: a fixed ``(z, w)`` instead)."""
    _check_dim(p)
    f = frame(p, q)
    z, w = q_rule(p, f) if rule is None else rule
    ell = logsumexp(log_ratios(f, z), axis=-1)
    return -quadrature.weighted_sum(w * jnp.exp(_log_std_normal(z)), ell)


def log_power_integral(p, q, a: float, rule=None) -> jax.Array:
    r"""``log I(a) = log int q^a p^(1 - a) dx`` (normalized ``p``), ``+inf`` where infinite.

    Closed form for ``a in {0, 1}`` (zero), ``a = -1`` (`chi2_forward_log1p`)
    and a one-component ``p``; quadrature in q's frame otherwise (``rule``: a
    fixed ``(z, w)`` instead of the adaptive one).
    """
    if a in (0.0, 1.0):
        return jnp.zeros((), jnp.result_type(q.loc))
    if a == -1.0:
        return chi2_forward_log1p(p, q)
    f = frame(p, q)
    terms = power_terms(f, a)
    if p.num_components == 1:
        value = single_log_power_integral(terms)
    else:
        _check_dim(p)
        z, w = q_rule(p, f, terms) if rule is None else rule
        value = logsumexp(log_power_integrand(terms, z, a), b=w)
    return jnp.where(power_integral_infinite(f, a), jnp.inf, value)


def p_rule(p) -> tuple[jax.Array, jax.Array]:
    r"""Nodes ``x (N, d)`` and weights for ``int g(x) dx`` where ``p`` has its mass."""
    _check_dim(p)
    locs, trils = p.mvn()
    sds = jnp.sqrt(jnp.sum(trils**2, axis=-1))
    lo, hi = quadrature.window(locs, sds)
    if p.dim == 2:
        return quadrature.rule_2d(locs, sds, lo, hi)
    crossings = quadrature.mixture_crossings(p.log_probs, locs[:, 0], sds[:, 0])
    x, w = quadrature.rule_1d(locs[:, 0], sds[:, 0], lo[0], hi[0], crossings)
    return x[:, None], w


def _at(p, x: jax.Array) -> jax.Array:
    """``log p`` at ``x (N, d)`` (``(N,)`` points for a 1-D target)."""
    return p.log_prob(x[:, 0] if p.event_shape == () else x)


def neg_entropy(p) -> jax.Array:
    r"""``E_p[log p]`` of the normalized mixture, by quadrature around its components."""
    x, w = p_rule(jax.lax.stop_gradient(p))
    log_p = _at(p, x)
    return quadrature.weighted_sum(w * jnp.exp(log_p), log_p)


def jensen_shannon(p, q, rule=None) -> jax.Array:
    r"""``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``.

    ``E_q[log(2q / (p + q))] = log 2 - E_q[softplus(log(p / q))]`` in q's frame;
    ``E_p[log(2p / (p + q))] = log 2 - E_p[softplus(log(q / p))]`` around p.
    """
    _check_dim(p)
    f = frame(p, q)
    z, w = q_rule(p, f) if rule is None else rule
    ell = logsumexp(log_ratios(f, z), axis=-1)
    q_half = _LOG2 - quadrature.weighted_sum(w * jnp.exp(_log_std_normal(z)), jax.nn.softplus(ell))
    x, wx = p_rule(jax.lax.stop_gradient(p))
    log_p = _at(p, x)
    log_q = _at_q(q, x)
    p_half = _LOG2 - quadrature.weighted_sum(wx * jnp.exp(log_p), jax.nn.softplus(log_q - log_p))
    return 0.5 * (q_half + p_half)


def _at_q(q, x: jax.Array) -> jax.Array:
    """``log q`` at ``x (N, d)``; ``-inf`` (with a zero, not NaN, gradient) where it underflows."""
    loc, tril, log_diag = q.to_mvn()
    limit = 0.1 * math.sqrt(float(jnp.finfo(x.dtype).max) / x.shape[-1])

    def standardize(x):  # in 1-D by exp(-log sigma): no 1 / sigma^2 in the derivative
        if x.shape[-1] == 1:
            return (x - loc) * jnp.exp(-log_diag)
        return _linalg.solve_lower(tril, x - loc)

    ok = jnp.all(jnp.abs(jax.lax.stop_gradient(standardize(x))) < limit, axis=-1)
    z = standardize(jnp.where(ok[:, None], x, jax.lax.stop_gradient(loc)))
    return jnp.where(ok, normal_log_prob(jnp.sum(z**2, -1), jnp.sum(log_diag), z.shape[-1]), -jnp.inf)


__all__ = ["jensen_shannon", "kl_reverse", "log_power_integral", "neg_entropy", "p_rule", "q_rule"]
