r"""Composite Gauss-Legendre rules placed where the integrand lives, in any Gaussian frame.

The exact divergences integrate in a *frame*: a variable ``y`` with
``x = c + F y`` for a Gaussian ``N(c, F F^T)`` (``q`` itself for
expectations under ``q``: its standardized variable; the identity for
expectations under ``p``). However narrow, wide or far ``q`` is, the part of
the integrand that matters then sits at a few *anchors* in ``y``, each with a
centre and a width, which the callers compute in closed form (q at ``0`` with
width 1, the mixture's components, the peaks of the Gaussian-shaped bounds
``q^a N_k^(1 - a)``). This module turns anchors into nodes and weights:

- uniform break points (half a width apart, out to 12 widths, then 16, 24
  and 32 widths) around every anchor;
- geometric break points (``2^j / kappa``, ``j = -6..5``) around every
  *crossing* of two mixture components in 1-D, where ``log p`` has a near-kink
  of width ``1 / kappa``;
- every break point clipped into a window that holds the integrand's mass (so
  anchors that lie 1e30 widths away cost nothing and never overflow);
- a 16-point (1-D) or 8 x 8-point (2-D tensor) Gauss-Legendre rule on every
  panel between sorted break points.

Shapes are static in the number of anchors, so everything jits and vmaps. The
nodes and weights are held fixed (`jax.lax.stop_gradient`): differentiating
``sum(w f(y; q))`` with respect to ``q`` gives the integral of the derivative
(differentiation under the integral sign in the frame's variable), not the
derivative of where the nodes sit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

stop = jax.lax.stop_gradient

_GL16 = np.polynomial.legendre.leggauss(16)
_GL8 = np.polynomial.legendre.leggauss(8)
UNIFORM_1D = np.concatenate([np.arange(-24, 25) * 0.5, [-32.0, -24.0, -16.0, 16.0, 24.0, 32.0]])
UNIFORM_2D = np.concatenate([np.arange(-12.0, 12.5, 1.0), [-24.0, -16.0, 16.0, 24.0]])
GRADED = np.concatenate([[0.0], 2.0 ** np.arange(-6, 6), -(2.0 ** np.arange(-6, 6))])
# Beyond 40 widths a Gaussian-shaped term is below exp(-800): nothing left to integrate.
REACH = 40.0


def window(centres: jax.Array, widths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(lo, hi)`` covering ``REACH`` widths around every anchor, per axis (last axis)."""
    return jnp.min(centres - REACH * widths, axis=0), jnp.max(centres + REACH * widths, axis=0)


def _panels(breaks: jax.Array, rule) -> tuple[jax.Array, jax.Array]:
    breaks = jnp.sort(breaks)
    lo, hi = breaks[:-1], breaks[1:]
    half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
    t = jnp.asarray(rule[0], breaks.dtype)
    w = jnp.asarray(rule[1], breaks.dtype)
    return (mid[:, None] + half[:, None] * t).ravel(), (half[:, None] * w).ravel()


def _breaks(centres, widths, offsets, lo, hi):
    pts = centres[:, None] + widths[:, None] * jnp.asarray(offsets, centres.dtype)
    return jnp.clip(pts.ravel(), lo, hi)


def rule_1d(
    centres: jax.Array,
    widths: jax.Array,
    lo: jax.Array,
    hi: jax.Array,
    crossings: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Nodes and weights ``(y (N,), w (N,))`` on ``[lo, hi]``.

    Args:
      centres, widths: ``(A,)`` anchors in the frame's variable.
      lo, hi: the window (break points outside it are clipped onto it).
      crossings: optional ``(points (C,), kappa (C,))`` of near-kinks, in the
        frame's variable, with ``kappa`` the inverse width.
    """
    parts = [_breaks(centres, widths, UNIFORM_1D, lo, hi), jnp.stack([lo, hi])]
    if crossings is not None:
        points, kappa = crossings
        parts.append(_breaks(points, 1.0 / kappa, GRADED, lo, hi))
    y, w = _panels(stop(jnp.concatenate(parts)), _GL16)
    return stop(y), stop(w)


# Own break points of a claim, in its own widths; crossings get a shorter graded set.
OWN_1D = np.array([0.0] + [s * v for v in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) for s in (-1, 1)])
GRADED_CLAIMS = np.concatenate([[0.0], 2.0 ** np.arange(-4, 5), -(2.0 ** np.arange(-4, 5))])


def _clipped_exp(log_x, cap):
    return jnp.exp(jnp.minimum(log_x, cap))


def claims_rule(
    half_diff: jax.Array,
    log_widths: jax.Array,
    crossings: tuple[jax.Array, jax.Array] | None = None,
    reach: float = REACH,
) -> tuple[jax.Array, jax.Array]:
    r"""The line shared among ``J`` claims, each part integrated in its owner's variable.

    Claim ``j`` (a density or a Gaussian-shaped bound with centre ``c_j`` and
    width ``w_j``) holds ``c_j +- reach w_j``; every point belongs to the
    narrowest claim that holds it (ties: the lower index), and points no claim
    holds are left out (every integrand here is below ``exp(-reach^2 / 2)``
    there). Frame ``o`` integrates ``x = c_o + w_o t`` over ``|t| <= reach``
    with break points at its own `OWN_1D` offsets, at the centre and both ends
    of every other claim (so ownership is constant on each panel), and around
    every crossing; panels held by a narrower claim get weight zero. A spike
    1e-30 wide inside a unit-width claim is thus integrated in the spike's own
    variable, which a single frame could not resolve.

    The break points are NOT stop-gradient: where a claim's edge moves with
    ``q`` the panels move with it, so the derivative of the sum is that of the
    integral (the boundary terms of adjacent claims cancel).

    Args:
      half_diff: ``(J, J)``, ``(c_o - c_j) / 2`` in ``x`` (finite).
      log_widths: ``(J,)``, ``log w_j``.
      crossings: optional ``(t (J, C), width (J, C))``: near-kinks of the
        integrand in every frame's variable.

    Returns:
      ``(t (J, N), w (J, N))``: nodes and weights per frame (zero off its part).
    """
    big = 1e4 * reach
    log_big = float(np.log(big))
    lw_o, lw_j = log_widths[:, None], log_widths[None, :]
    diff = half_diff
    log_diff = _safe_log_abs(half_diff) + np.log(2.0)
    centre = -jnp.sign(diff) * _clipped_exp(log_diff - lw_o, log_big)  # c_j in frame o
    half = reach * _clipped_exp(lw_j - lw_o, log_big)
    dtype = log_widths.dtype
    own = jnp.broadcast_to(jnp.asarray(OWN_1D, dtype), (diff.shape[0], OWN_1D.shape[0]))
    ends = jnp.full((diff.shape[0], 2), reach, dtype) * jnp.asarray([-1.0, 1.0], dtype)
    parts = [own, ends, centre, centre - half, centre + half]
    if crossings is not None:
        points, width = crossings
        width = jnp.minimum(width, big)
        graded = points[..., None] + width[..., None] * jnp.asarray(GRADED_CLAIMS, dtype)
        parts.append(jnp.clip(graded, -big, big).reshape(diff.shape[0], -1))
    breaks = jnp.sort(jnp.clip(jnp.concatenate(parts, -1), -reach, reach), axis=-1)
    lo, hi = breaks[:, :-1], breaks[:, 1:]
    mid, halfw = 0.5 * (hi + lo), 0.5 * (hi - lo)
    order = jnp.arange(diff.shape[0])
    narrower = (lw_j < lw_o) | ((lw_j == lw_o) & (order[None, :] < order[:, None]))
    # A hole narrower than the frame's resolution at its place (eps |t|) is widened to that
    # resolution: nodes whose position is only known to rounding never sample a spike.
    tol = 8.0 * float(np.finfo(dtype).eps) * jnp.maximum(1.0, jnp.abs(centre))
    inside = jnp.abs(mid[:, :, None] - centre[:, None, :]) < (half + tol)[:, None, :]
    owned = ~jnp.any(narrower[:, None, :] & inside, axis=-1)
    x16, w16 = (jnp.asarray(r, dtype) for r in _GL16)
    t = (mid[..., None] + halfw[..., None] * x16).reshape(diff.shape[0], -1)
    w = jnp.where(owned[..., None], halfw[..., None] * w16, 0.0).reshape(diff.shape[0], -1)
    return t, w


def _safe_log_abs(x):
    nz = x != 0
    return jnp.where(nz, jnp.log(jnp.abs(jnp.where(nz, x, 1.0))), -jnp.inf)


def rule_2d(
    centres: jax.Array, widths: jax.Array, lo: jax.Array, hi: jax.Array
) -> tuple[jax.Array, jax.Array]:
    r"""A tensor-product rule ``(y (N, 2), w (N,))`` from per-axis anchors.

    Args:
      centres, widths: ``(A, 2)``: each anchor's centre and its extent along
        each axis of the frame.
      lo, hi: ``(2,)`` the window.
    """
    axes = []
    for j in range(2):
        parts = [_breaks(centres[:, j], widths[:, j], UNIFORM_2D, lo[j], hi[j])]
        parts.append(jnp.stack([lo[j], hi[j]]))
        axes.append(_panels(stop(jnp.concatenate(parts)), _GL8))
    (y0, w0), (y1, w1) = axes
    y = jnp.stack(jnp.meshgrid(y0, y1, indexing="ij"), -1).reshape(-1, 2)
    return stop(y), stop((w0[:, None] * w1[None, :]).ravel())


def hermite_rule(dim: int, num: int = 32) -> tuple[jax.Array, jax.Array]:
    r"""A fixed Gauss-Hermite rule ``(z (N, dim), w (N,))`` for ``int h(z) dz``, ``N = num^dim``.

    Exact for ``h = phi(z) * polynomial``; a cheap, smooth stand-in for the
    adaptive rules where only the location of a minimum matters (the search
    phase of `divjax.optimal_q`). Weights are for the Lebesgue measure.
    """
    t, w = np.polynomial.hermite_e.hermegauss(num)
    grids = np.meshgrid(*([t] * dim), indexing="ij")
    z = np.stack([g.ravel() for g in grids], -1)
    wz = np.prod(np.stack(np.meshgrid(*([w] * dim), indexing="ij"), -1).reshape(-1, dim), -1)
    wz = wz * np.exp(0.5 * np.sum(z**2, -1))
    return jnp.asarray(z), jnp.asarray(wz)


def mixture_crossings(log_probs, locs, scales) -> tuple[jax.Array, jax.Array]:
    r"""Points where two weighted 1-D component log-densities are equal, with their sharpness.

    ``log pi_i + log N(x; m_i, s_i) = log pi_j + log N(x; m_j, s_j)`` is a
    quadratic ``a x^2 + b x + c = 0``; both roots of every pair ``i < j`` are
    returned (shape ``(M (M - 1),)``) with ``kappa = |2 a x + b|``. Pairs
    without a real root get a harmless copy of ``m_0`` with sharpness ``1 / s_0``.
    """
    m, s = locs, scales
    i, j = np.triu_indices(m.shape[0], k=1)
    a = 0.5 / s[j] ** 2 - 0.5 / s[i] ** 2
    b = m[i] / s[i] ** 2 - m[j] / s[j] ** 2
    c = (log_probs[i] - jnp.log(s[i]) - 0.5 * (m[i] / s[i]) ** 2) - (
        log_probs[j] - jnp.log(s[j]) - 0.5 * (m[j] / s[j]) ** 2
    )
    disc = b**2 - 4.0 * a * c
    sgn = jnp.where(b >= 0, 1.0, -1.0)
    qq = -0.5 * (b + sgn * jnp.sqrt(jnp.maximum(disc, 0.0)))
    safe_qq = jnp.where(qq == 0, 1.0, qq)
    safe_a = jnp.where(a == 0, 1.0, a)
    r1 = jnp.where(a == 0, jnp.nan, qq / safe_a)
    r2 = jnp.where(qq == 0, jnp.nan, c / safe_qq)
    roots = jnp.concatenate([r1, r2])
    ok = jnp.isfinite(roots) & jnp.concatenate([disc >= 0, disc >= 0])
    kappa = jnp.abs(2.0 * jnp.concatenate([a, a]) * roots + jnp.concatenate([b, b]))
    ok = ok & (kappa > 0) & jnp.isfinite(kappa)
    return jnp.where(ok, roots, m[0]), jnp.where(ok, kappa, 1.0 / s[0])


def weighted_sum(w: jax.Array, values: jax.Array) -> jax.Array:
    """``sum(w * values)`` where a zero weight never meets an infinite value (no ``0 * inf``)."""
    return jnp.sum(jnp.where(w > 0, w * jnp.where(w > 0, values, 0.0), 0.0))


__all__ = [
    "claims_rule",
    "hermite_rule",
    "mixture_crossings",
    "rule_1d",
    "rule_2d",
    "weighted_sum",
    "window",
]
