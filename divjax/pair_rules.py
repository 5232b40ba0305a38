r"""Quadrature rules for a pair ``(p, q)``: where each integrand lives, in closed form.

- `q_rule`: nodes in q's standardized variable ``z`` (``x = mu + L z``),
  anchored on ``q`` (``0``, width 1), on p's components seen from ``q`` and
  (for power integrals) on the peaks of the Gaussian-shaped bounds
  ``q^a N_k^(1 - a)``, which for ``q^2 / p`` can sit many q-widths away; 1-D
  rules add geometric break points around the mixture's crossings.
- `claim_u` and `claim_crossings`: the pieces of a *claims* rule
  (`divjax.quadrature.claims_rule`), where every part of the line is
  integrated in the variable of the narrowest density or bound that holds it.
- `p_rule`: nodes where ``p`` has its mass (expectations under ``p``).

Everything that could overflow (a distance ``1e5`` in units of ``1e-30``) is
formed in log space and clipped to `ucap`, beyond which a density is 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from divjax import _linalg, quadrature
from divjax._numerics import half_difference, log_max, safe_log_abs
from divjax.families import LOG_2PI
from divjax.q_frame import Frame

_LOG2 = math.log(2.0)


def big(dtype) -> float:
    return 0.125 * float(jnp.finfo(dtype).max)


def ucap(dtype) -> float:
    """A standardized distance whose square is still finite: beyond it a density is 0."""
    return 1e-3 * math.sqrt(float(jnp.finfo(dtype).max))


def divide(num, log_den, cap):
    r"""``num / exp(log_den)`` clipped to ``+-cap``, with finite gradients everywhere.

    A multiplication by ``exp(-log_den)`` (a division's derivative would form
    ``den^2``, which underflows for ``den = 1e-30`` in float32).
    """
    lm = log_max(jnp.result_type(num)) - 1.0
    inv = jnp.exp(-jnp.clip(log_den, -lm, lm))
    ok = jnp.abs(num) * inv < cap
    return jnp.where(ok, jnp.where(ok, num, 0.0) * inv, jnp.sign(num) * cap)


def _component_anchors(f: Frame, p) -> tuple[jax.Array, jax.Array]:
    """Centres and per-axis extents of p's components in q's frame, ``(M, d)`` each."""
    locs, trils = p.mvn()
    if f.loc.shape[-1] == 1:
        ln_big = math.log(ucap(f.u.dtype))
        log_c = safe_log_abs(half_difference(f.loc[0], locs[:, 0])) + _LOG2 - f.log_diag[0]
        centre = -jnp.sign(f.loc[0] - locs[:, 0]) * jnp.exp(jnp.minimum(log_c, ln_big))
        width = jnp.exp(jnp.minimum(-f.log_rho, ln_big))
        return centre[:, None], width[:, None]
    centre = _linalg.solve_lower(f.tril, locs - f.loc)
    v = _linalg.solve_lower(f.tril, jnp.swapaxes(trils, -1, -2))  # rows: L^{-1} T_k columns
    return centre, jnp.sqrt(jnp.sum(v**2, axis=-2))


def q_rule(p, f: Frame, terms=None) -> tuple[jax.Array, jax.Array]:
    r"""Nodes ``z (N, d)`` and weights ``(N,)`` for ``int g(z) dz`` in q's frame.

    ``terms`` (`divjax.q_frame.PowerTerms`) adds the peaks of the power
    integrand's per-component bounds as anchors and to the window.
    """
    d = f.loc.shape[-1]
    dtype = f.u.dtype
    centres = [jnp.zeros((1, d), dtype)]
    widths = [jnp.ones((1, d), dtype)]
    if terms is not None:
        eye = jnp.eye(d, dtype=dtype)
        cov = _linalg.inv_spd(jnp.where(terms.pd[:, None, None], terms.prec, eye))
        ok = terms.pd[:, None] & jnp.all(jnp.isfinite(terms.centre), -1, keepdims=True)
        far = ucap(dtype)  # a peak farther out is in the asymptotic regime (log I > 1e30)
        centres.append(jnp.clip(jnp.where(ok, terms.centre, 0.0), -far, far))
        widths.append(jnp.clip(jnp.sqrt(jnp.diagonal(cov, 0, -2, -1)), 0.0, far))
    lo, hi = quadrature.window(jnp.concatenate(centres), jnp.concatenate(widths))
    comp_c, comp_w = _component_anchors(f, p)
    centres, widths = jnp.concatenate(centres + [comp_c]), jnp.concatenate(widths + [comp_w])
    if d == 2:
        return quadrature.rule_2d(centres, widths, lo, hi)
    locs, trils = p.mvn()
    x_c, kappa = quadrature.mixture_crossings(p.log_probs, locs[:, 0], trils[:, 0, 0])
    crossings = crossings_in(x_c, kappa, f.loc[0], f.log_diag[0])
    z, w = quadrature.rule_1d(centres[:, 0], widths[:, 0], lo[0], hi[0], crossings)
    return z[:, None], w


def crossings_in(x_c, kappa, centre, log_width):
    """Crossings ``(t, kappa_t)`` in the variable ``t = (x - centre) / width``, clipped."""
    big = ucap(jnp.result_type(x_c))
    log_t = safe_log_abs(half_difference(x_c, centre)) + _LOG2 - log_width
    t = jnp.sign(x_c - centre) * jnp.exp(jnp.minimum(log_t, math.log(big)))
    k = jnp.exp(jnp.clip(jnp.log(kappa) + log_width, -math.log(big), math.log(big)))
    return t, k


def log_std_normal(z: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(z**2, -1) - 0.5 * z.shape[-1] * LOG_2PI


def check_dim(p) -> None:
    if p.dim > 2:
        raise ValueError(f"quadrature needs d <= 2, got d = {p.dim}")


def claim_u(half_diff, lw, t, cap):
    r"""``u[o, n, j] = (x_n - c_j) / w_j`` at the nodes ``t (J, N)`` of every frame ``o``.

    ``x_n - c_j = (c_o - c_j) + w_o t_n`` is formed at a power-of-two scale
    (``2^-8`` in frames wider than 1), so it never overflows and two huge
    terms never cancel into a false zero; exactly ``t`` for ``j = o``.
    """
    f_log = jnp.where(lw > 0, -8.0 * _LOG2, 0.0)
    num = half_diff[:, None, :] * (2.0 * jnp.exp(f_log))[:, None, None] + (
        jnp.exp(lw + f_log)[:, None, None] * t[:, :, None]
    )
    u = divide(num, lw[None, None, :] + f_log[:, None, None], cap)
    own = jnp.eye(lw.shape[0], dtype=bool)[:, None, :]
    return jnp.where(own, t[:, :, None], u)


def claim_crossings(p, ln, base, offset, lw):
    """The mixture's crossings in every claim's variable: ``(t (J, C), width (J, C))``."""
    cap = big(ln.log_scale.dtype)
    x_c, kappa = quadrature.mixture_crossings(p.log_probs, ln.locs, jnp.exp(ln.log_s))
    rel = jnp.clip(2.0 * half_difference(x_c[None, :], base[:, None]), -cap, cap)
    rel = jnp.clip(rel - offset[:, None], -cap, cap)
    t, k = crossings_in(rel, kappa[None, :], 0.0, lw[:, None])
    return t, 1.0 / k


def p_rule(p) -> tuple[jax.Array, jax.Array]:
    r"""Nodes ``x (N, d)`` and weights for ``int g(x) dx`` where ``p`` has its mass."""
    check_dim(p)
    locs, trils = p.mvn()
    sds = jnp.sqrt(jnp.sum(trils**2, axis=-1))
    lo, hi = quadrature.window(locs, sds)
    if p.dim == 2:
        return quadrature.rule_2d(locs, sds, lo, hi)
    crossings = quadrature.mixture_crossings(p.log_probs, locs[:, 0], sds[:, 0])
    x, w = quadrature.rule_1d(locs[:, 0], sds[:, 0], lo[0], hi[0], crossings)
    return x[:, None], w


def log_p_at(p, x: jax.Array) -> jax.Array:
    """``log p`` at ``x (N, d)`` (``(N,)`` points for a 1-D target)."""
    return p.log_prob(x[:, 0] if p.event_shape == () else x)


__all__ = [
    "big",
    "check_dim",
    "claim_crossings",
    "claim_u",
    "crossings_in",
    "divide",
    "log_p_at",
    "log_std_normal",
    "p_rule",
    "q_rule",
    "ucap",
]
