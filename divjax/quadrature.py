r"""Composite Gauss-Legendre quadrature placed where 1-D mixture integrands live.

The integrands of the 1-D divergences (``q log p``, ``q d/dx log p``,
``p log p``, ``q^2 / p``) are smooth except near the points where two mixture
components swap dominance: there ``log p`` has a near-kink and
``d/dx log p`` a near-jump of width ``1 / kappa`` (``kappa`` = the slope
difference of the two component log-densities). A fixed grid (the seed page's
400-point trapezoid on a window) misses both and, worse, a finite window hides
the infinite chi-squares.

Break points are therefore put
- uniformly (half a scale apart, out to 12 scales, then 16, 24, 32 scales) around
  every *anchor*: q's mean (scale sigma), every component mean (scale s_k), and
  any extra anchor the caller passes (for ``q^2/p`` the centres of
  ``q^2 / N_k``);
- geometrically (``2^j / kappa``, j = -6..5) around every dominance crossing.
Each panel between sorted break points gets a 16-point Gauss-Legendre rule.
Shapes are static in the number of components, so everything jits and vmaps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from divjax.families import Gaussian
from divjax.targets import GaussianMixture

_GL_T, _GL_W = np.polynomial.legendre.leggauss(16)
_UNIFORM = np.concatenate([np.arange(-24, 25) * 0.5, [-32.0, -24.0, -16.0, 16.0, 24.0, 32.0]])
_GRADED = np.concatenate([[0.0], 2.0 ** np.arange(-6, 6), -(2.0 ** np.arange(-6, 6))])


def crossings(p: GaussianMixture) -> tuple[jax.Array, jax.Array]:
    r"""Points where two weighted component log-densities are equal.

    ``log w_i + log N(x; m_i, s_i) = log w_j + log N(x; m_j, s_j)`` is a
    quadratic ``a x^2 + b x + c = 0``; both roots of every pair ``i < j`` are
    returned (shape ``(M (M - 1),)``), with their sharpness
    ``kappa = |2 a x + b|``. Pairs without a real root get a harmless
    duplicate of ``m_0`` with sharpness ``1 / s_0``.
    """
    m, s, logw = p.locs, p.scales, jnp.log(p.weights)
    i, j = np.triu_indices(p.num_components, k=1)
    a = 0.5 / s[j] ** 2 - 0.5 / s[i] ** 2
    b = m[i] / s[i] ** 2 - m[j] / s[j] ** 2
    c = (logw[i] - jnp.log(s[i]) - 0.5 * (m[i] / s[i]) ** 2) - (
        logw[j] - jnp.log(s[j]) - 0.5 * (m[j] / s[j]) ** 2
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
    roots = jnp.where(ok, roots, m[0])
    kappa = jnp.where(ok, kappa, 1.0 / s[0])
    return roots, kappa


def _panel_rule(breaks: jax.Array) -> tuple[jax.Array, jax.Array]:
    breaks = jnp.sort(breaks)
    lo, hi = breaks[:-1], breaks[1:]
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    t = jnp.asarray(_GL_T, dtype=breaks.dtype)
    w = jnp.asarray(_GL_W, dtype=breaks.dtype)
    return (mid[:, None] + half[:, None] * t).ravel(), (half[:, None] * w).ravel()


def nodes(
    p: GaussianMixture,
    q: Gaussian | None = None,
    extra_locs: jax.Array | None = None,
    extra_scales: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Quadrature nodes and weights for ``int f(x) dx`` with 1-D mixture integrands.

    Args:
      p: the target mixture (its means and crossings become anchors).
      q: optional Gaussian whose mean and scale become an anchor.
      extra_locs, extra_scales: optional further anchors, shape ``(A,)``.

    Returns:
      ``(x, w)``, each of static shape ``(N,)``; ``sum(w * f(x))`` approximates
      the integral for integrands concentrated near the anchors. Both are
      wrapped in ``stop_gradient``: differentiating ``sum(w * f(x, q))``
      with respect to ``q`` gives ``int d/dq f(x, q) dx``, the exact
      derivative of the integral, rather than the derivative of where the
      nodes sit.
    """
    locs = [p.locs]
    scales = [p.scales]
    if q is not None:
        locs.append(jnp.reshape(q.loc, (1,)))
        scales.append(jnp.reshape(q.scale, (1,)))
    if extra_locs is not None:
        locs.append(extra_locs)
        scales.append(extra_scales)
    locs = jnp.concatenate(locs)
    scales = jnp.concatenate(scales)
    uniform = jnp.asarray(_UNIFORM, dtype=locs.dtype)
    breaks = [(locs[:, None] + scales[:, None] * uniform).ravel()]
    if p.num_components > 1:
        x_c, kappa = crossings(p)
        graded = jnp.asarray(_GRADED, dtype=locs.dtype)
        breaks.append((x_c[:, None] + graded / kappa[:, None]).ravel())
    # The rule is a fixed rule for the current anchors: gradients flow through
    # the integrand only (differentiation under the integral sign over R).
    x, w = _panel_rule(jax.lax.stop_gradient(jnp.concatenate(breaks)))
    return x, w
