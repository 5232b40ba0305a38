r"""Hand-derived exact gradients for the 1-D `Gaussian` family, ``phi = (loc, log_scale)``.

These are the formulas a reader derives on paper; `divjax.exact_grad` returns
them for a 1-D target and `divjax.autodiff_grad` (``jax.grad`` of the value)
checks them. With ``x = mu + sigma z``, ``u_k = (mu - m_k) / s_k`` and
``rho_k = sigma / s_k``:

- ``kl_forward``: ``(-(E_p x - mu) / sigma^2, 1 - E_p[(x - mu)^2] / sigma^2)``,
  closed form in the mixture's mean and variance.
- ``kl_reverse``: one component, ``(u / s, rho^2 - 1)``; a mixture, the
  derivative of the form centred on the dominant component ``*``:
  ``(u_* / s_*, rho_*^2 - 1) - E_q[sum_k resp_k (dr_k - dr_*)]``, by quadrature
  in q's frame (`divjax.kl_integrals.kl_reverse_line_grad`).
- ``chi2_forward``: the derivative of the pairwise closed form of ``log(1 + chi^2)``.
- ``chi2_reverse``: ``(1 + chi^2) grad log I(2)`` with ``I(2) = int q^2 / p``.
  One component (and a mixture far from ``q``, where ``log I`` is the
  smallest single-component integral): ``log I = b t - log(lambda) / 2 - a b u^2 / (2 lambda)``,
  ``a = 2``, ``b = 1 - a``, ``lambda = a + b rho^2``, so
  ``d log I / dmu = -a b u / (s lambda)`` and
  ``d log I / dlog sigma = -a b expm1(2t) / lambda + a b^2 u^2 rho^2 / lambda^2``.
  A mixture: differentiating the completed squares ``E_k = G_k - lambda_k (z - z*_k)^2 / 2``
  under the integral in q's frame, ``grad log I = sum_i w^_i sum_k resp_ik grad E_k(z_i)``
  with ``grad E_k = lambda_k (z - z*_k) grad z*_k - (z - z*_k)^2 grad lambda_k / 2 + grad G_k``.
  (The score form ``2 E_q[(q / p) grad log q]`` loses every digit where ``q``
  is narrow: it is the small difference of large terms.)

Chi-square gradients are ``(1 + chi^2) grad log(1 + chi^2)`` rescaled in log
space, so a finite chi-square beyond the float range gives ``+-inf``, never NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax._numerics import half_difference, mul_exp
from divjax.closed_forms import chi2_forward_pairs
from divjax.families import LOG_2PI, Gaussian
from divjax.kl_integrals import kl_reverse_line_grad
from divjax.line_algebra import asymptotic_log_power, line, power_singles, single_log_power_grad
from divjax.pair_rules import q_rule
from divjax.power_integrals import asymptotic_threshold, safe_q
from divjax.q_frame import frame, power_exponents, power_terms

stop = jax.lax.stop_gradient


def scaled(log_scale: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """``exp(log_scale) * x`` without forming ``inf * 0``."""
    return mul_exp(x, log_scale)


def kl_forward(p, q: Gaussian) -> Gaussian:
    inv = jnp.exp(-q.log_scale)
    d = 2.0 * half_difference(p.mean(), q.loc) * inv  # (E_p x - mu) / sigma
    return Gaussian._make((-d * inv, 1.0 - p.variance() * inv * inv - d * d))


def kl_reverse(p, q: Gaussian) -> Gaussian:
    if p.num_components > 1:
        return Gaussian._make(kl_reverse_line_grad(p, q))
    ln = line(p, q)
    u = 2.0 * ln.half_delta[0] * jnp.exp(-ln.log_s[0])
    return Gaussian._make((u * jnp.exp(-ln.log_s[0]), jnp.expm1(2.0 * ln.log_rho[0])))


def chi2_forward(p, q: Gaussian) -> Gaussian:
    t = chi2_forward_pairs(p, q)
    lse = logsumexp(t.log_terms)
    top = t.log_terms == jnp.inf  # beyond log space: the infinite pairs set the direction
    r = jnp.where(
        jnp.isfinite(lse), jnp.exp(t.log_terms - jnp.where(jnp.isfinite(lse), lse, 0.0)), top
    )
    # With D = sigma^2 - C: sigma^2 / D = 1 / (1 - C / sigma^2), never inf / inf.
    inv = jnp.exp(-q.log_scale)
    ratio = jnp.where(t.pd, 1.0 / (1.0 - t.cmat[..., 0, 0] * inv * inv), 1.0)
    scaled_diff = t.diff[..., 0] * inv  # (c_ij - mu) / sigma
    d_loc = -scaled_diff * inv * ratio
    d_log_scale = 2.0 - ratio - ratio * ratio * scaled_diff * scaled_diff
    return Gaussian._make(tuple(mul_exp(jnp.sum(r * g), lse) for g in (d_loc, d_log_scale)))


def _q_frame_log_power_grad(p, q, a: float):
    """``(grad log I(a), log I(a))`` for a 1-D mixture, from the completed squares in q's frame."""
    b = 1.0 - a
    f = frame(p, q)
    t = power_terms(f, a)
    z, w = q_rule(p, f, t)
    e = power_exponents(t, z)  # (N, M)
    log_f = b * logsumexp(e / b, axis=-1)
    log_wf = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)) + log_f, -jnp.inf)
    log_i = logsumexp(log_wf) - 0.5 * LOG_2PI
    node = jax.nn.softmax(log_wf)
    resp = jax.nn.softmax(e / b, axis=-1)
    ln = line(p, q)
    inv_s = jnp.exp(-ln.log_s)
    u = 2.0 * ln.half_delta * inv_s
    rho = jnp.exp(ln.log_rho)
    lam = t.prec[:, 0, 0]
    safe = jnp.where(t.pd, lam, 1.0)
    zc = jnp.where(t.pd, t.centre[:, 0], 0.0)
    # pd: E_k = G_k - lambda_k (z - z*_k)^2 / 2
    dlam = 2.0 * b * rho * rho  # d lambda / dlog sigma (d / dmu = 0)
    dzc_loc = -b * rho * inv_s / safe
    dzc_ls = -b * u * rho * (a - b * rho * rho) / (safe * safe)
    dg_loc = -a * b * u * inv_s / safe
    dg_ls = a * b * b * (u * rho / safe) ** 2 + b
    dz = z[:, 0:1] - zc  # (N, M)
    pd_loc = safe * dz * dzc_loc
    pd_ls = safe * dz * dzc_ls - 0.5 * dz * dz * dlam
    # not pd: E_k = -lambda_k z^2 / 2 + h_k z + b (c_k - u_k^2 / 2), h_k = -b rho_k u_k
    zz = z[:, 0:1]
    pl_loc = -b * rho * inv_s * zz - b * u * inv_s
    pl_ls = -0.5 * dlam * zz * zz - b * rho * u * zz + b
    g_loc = jnp.where(t.pd, pd_loc + dg_loc, pl_loc)
    g_ls = jnp.where(t.pd, pd_ls + dg_ls, pl_ls)
    grad = (jnp.sum(node * jnp.sum(resp * g_loc, -1)), jnp.sum(node * jnp.sum(resp * g_ls, -1)))
    return grad, log_i


def chi2_reverse(p, q: Gaussian) -> Gaussian:
    a = 2.0
    ln = line(p, q)
    k, asym = asymptotic_log_power(power_singles(ln, a), a)
    g_single = single_log_power_grad(ln, a, k)
    if p.num_components == 1:
        g, log_i = g_single, jnp.maximum(asym, 0.0)
    else:
        use = stop(~(jnp.abs(asym) <= asymptotic_threshold(jnp.result_type(asym))))
        g_quad, log_quad = _q_frame_log_power_grad(p, safe_q(p, q, a, use), a)
        g = tuple(jnp.where(use, gs, gq) for gs, gq in zip(g_single, g_quad))
        log_i = jnp.maximum(jnp.where(use, asym, log_quad), 0.0)
    return Gaussian._make(tuple(mul_exp(v, log_i) for v in g))


GRADIENTS = {
    "kl_forward": kl_forward,
    "kl_reverse": kl_reverse,
    "chi2_forward": chi2_forward,
    "chi2_reverse": chi2_reverse,
}

__all__ = ["GRADIENTS", "scaled"]
