r"""Every local minimum of a divergence over d-dimensional Gaussians: `mv_optimal_q`.

The method of `divjax.optimal_q` (saddle-free damped Newton from many starts,
every end verified by a gradient ~ 0 and a positive-definite ``jax.hessian``,
duplicates merged, sorted by value) over the unconstrained parameters of a
`FullRankGaussian` (``loc``, ``log diag(L)``, the strict lower triangle of
``L``) or a `DiagGaussian` (``loc``, ``log_scale``). The ignored upper
triangle of ``chol`` is left out: it would make every Hessian singular.

=============  ======  =====================================================
divergence     d       method
=============  ======  =====================================================
kl_forward     any     closed form (moment matching; convex), verified
chi2_forward   any     Newton on the closed form of ``log(1 + chi^2)``
kl_reverse     2       Newton on a Gauss-Hermite rule, polished and verified
                       on the 2-D quadrature of `divjax.multivariate`
chi2_reverse   2       the same, through ``log(1 + chi^2)``
=============  ======  =====================================================

``d = 1`` is `divjax.optimal_q` on the 1-D mixture, unchanged.

chi2_forward is ``+inf`` unless ``S - A_i (A_i + A_j)^{-1} A_j`` is positive
definite for every pair of components, so its starts (the moment match with
1, 2 and 4 times the mixture covariance, each component mean with twice it)
are inflated until finite, and the line search rejects ``inf``.

Reverse divergences in d = 2. The 2-D quadrature has a few hundred thousand
nodes: Newton from dozens of starts on it would take minutes. The search
runs instead on a 32 x 32 Gauss-Hermite rule in ``q``'s own coordinates
(``x = loc + L z``), whose minima lie close to the true ones; each distinct
end is then polished by saddle-free Newton steps (halved until they
descend) on the full quadrature, one ``q`` at a time, and verified there.
Starts: every component ``N(m_k, A_k)``; the moment match of every pair and
of the whole mixture; a 5 x 5 grid of locations spanning the component
means, at the smallest and at the largest component variance (isotropic).
For chi2_reverse each start's covariance is halved until the value is finite.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import _checks
from divjax.divergences import check_divergence
from divjax.multivariate import (
    EXACTNESS,
    _chi2_forward_log1p,
    _chi2_reverse_anchors,
    chi2_reverse_is_infinite,
    cross_entropy,
    grid_nodes,
    mv_divergence,
)
from divjax.mv_families import DiagGaussian, FullRankGaussian, MvGaussianMixture
from divjax.optima import FAMILIES, Optima, _check_points, _newton, _select, optimal_q
from divjax.targets import GaussianMixture

_GH_T, _GH_W = np.polynomial.hermite_e.hermegauss(32)
# The Gauss-Hermite search only has to land in the right basin: it stops once
# no step moves a parameter by more than _SEARCH_XTOL (its last steps would
# otherwise shuffle rounding errors until num_iters).
_SEARCH_XTOL = 1e-9
_POLISH_ITERS = 8
_POLISH_STEPS = (1.0, 0.5, 0.25, 0.125)


def _to_q(theta: jax.Array, d: int, family: str):
    """The `DiagGaussian` or `FullRankGaussian` of ``theta = (loc, log diag, strict lower)``."""
    loc, log_diag = theta[:d], theta[d : 2 * d]
    if family == "diag":
        return DiagGaussian._make((loc, log_diag))
    chol = jnp.diag(log_diag).at[np.tril_indices(d, -1)].set(theta[2 * d :])
    return FullRankGaussian._make((loc, chol))


def _to_theta(loc: np.ndarray, cov: np.ndarray, family: str) -> np.ndarray:
    if family == "diag":
        return np.concatenate([loc, 0.5 * np.log(np.diagonal(cov))])
    tril = np.linalg.cholesky(cov)
    lower = tril[np.tril_indices(len(loc), -1)]
    return np.concatenate([loc, np.log(np.diagonal(tril)), lower])


def _log_densities(p: MvGaussianMixture, q, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log q(x), log p(x))``, p normalized."""
    return q.log_prob(x), p.normalized_log_prob(x)


def _reverse_objective(name: str, p: MvGaussianMixture, family: str, rule: str):
    r"""kl_reverse, or ``log(1 + chi^2)`` for chi2_reverse, in d = 2.

    ``rule="quadrature"``: on the nodes of `divjax.multivariate.grid_nodes`,
    the rule of `mv_divergence`. ``rule="hermite"``: a 32 x 32 Gauss-Hermite
    rule for ``E_q`` in ``q``'s coordinates ``x = loc + L z``, the cheap
    search objective. Either way ``KL = sum(m * r)`` and
    ``1 + chi^2 = sum(m * exp(r))`` with ``r = log q - log p`` and ``m`` the
    nodes' q-mass.
    """
    dtype = p.locs.dtype
    t = jnp.asarray(_GH_T, dtype)
    log_w = jnp.asarray(np.log(_GH_W / math.sqrt(2.0 * math.pi)), dtype)
    z = jnp.stack(jnp.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    log_wz = (log_w[:, None] + log_w[None, :]).ravel()

    def f(theta):
        q = _to_q(theta, 2, family)
        if rule == "hermite":
            log_q, log_p = _log_densities(p, q, q.loc + z @ q.scale_tril.T)
            log_mass = log_wz
        else:
            anchors = _chi2_reverse_anchors(p, q) if name == "chi2_reverse" else ()
            x, w = grid_nodes(p, q, *anchors)
            log_q, log_p = _log_densities(p, q, x)
            log_mass = jnp.log(w) + log_q
        if name == "kl_reverse":
            return jnp.sum(jnp.exp(log_mass) * (log_q - log_p))
        log1p_chi2 = logsumexp(log_mass + log_q - log_p)
        return jnp.where(chi2_reverse_is_infinite(p, q), jnp.inf, log1p_chi2)

    return f


def _objective(name: str, p: MvGaussianMixture, family: str, rule: str = "quadrature"):
    """What Newton minimizes: the divergence, ``log(1 + chi^2)`` for chi-squares."""
    if name.endswith("reverse"):
        return _reverse_objective(name, p, family, rule)

    def f(theta):
        q = _to_q(theta, p.dim, family)
        if name == "kl_forward":  # the divergence up to a q-independent constant
            return cross_entropy(p, q)
        return _chi2_forward_log1p(p, q)

    return f


@functools.partial(jax.jit, static_argnames=("name", "family", "num_iters"))
def _solve(name, family, p, starts, num_iters):
    f = _objective(name, p, family, "hermite")
    xtol = _SEARCH_XTOL if name.endswith("reverse") else 0.0
    ends = jax.vmap(lambda t: _newton(f, t, num_iters, xtol))(starts)
    return _check_points(f, ends)


@functools.partial(jax.jit, static_argnames=("name", "family"))
def _search_values(name, family, p, thetas):
    return jax.vmap(_objective(name, p, family, "hermite"))(thetas)


@functools.partial(jax.jit, static_argnames=("name", "family"))
def _check_point(name, family, p, theta):
    """``(theta, gradient, Hessian, value)`` of the objective at one point (no batching)."""
    f = _objective(name, p, family)
    return theta, jax.grad(f)(theta), jax.hessian(f)(theta), f(theta)


@functools.partial(jax.jit, static_argnames=("family",))
def _kl_forward_2d(family, p, theta):
    return mv_divergence("kl_forward", p, _to_q(theta, 2, family))


def _polish(name, family, p, theta, grad_tol):
    """Saddle-free Newton steps on the full quadrature, halved until they lower the objective.

    One point at a time: `_newton` batches its line search over 16 step
    sizes, seconds per step on a few hundred thousand nodes.
    """
    dtype = p.locs.dtype
    point = _check_point(name, family, p, jnp.asarray(theta, dtype))
    for _ in range(_POLISH_ITERS):
        _, g, h, v = (np.asarray(a) for a in point)
        if np.linalg.norm(g) <= 1e-2 * grad_tol or not np.all(np.isfinite(h)):
            break
        evals, evecs = np.linalg.eigh(h)
        step = evecs @ ((evecs.T @ g) / np.maximum(np.abs(evals), 1e-8 * np.abs(evals).max()))
        for size in _POLISH_STEPS:
            trial = _check_point(name, family, p, point[0] - jnp.asarray(size * step, dtype))
            if float(trial[3]) < float(v):
                break
        else:
            break
        point = trial
    return [np.asarray(a)[None] for a in point]


def _group_moments(p: MvGaussianMixture) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(mean, cov)`` of every pair of components and of the whole mixture."""
    w, m, a = (np.asarray(v, np.float64) for v in (p.probs, p.locs, p.covs))
    k = len(w)
    groups = [[i, j] for i in range(k) for j in range(i + 1, k)] + [list(range(k))]
    moments = []
    for g in groups:
        wg = w[g] / w[g].sum()
        mean = wg @ m[g]
        diff = m[g] - mean
        moments.append((mean, np.einsum("k,kij->ij", wg, a[g] + diff[:, :, None] * diff[:, None])))
    return moments


def _reverse_starts(p: MvGaussianMixture) -> list[tuple[np.ndarray, np.ndarray]]:
    m, a = np.asarray(p.locs, np.float64), np.asarray(p.covs, np.float64)
    starts = list(zip(m, a)) + _group_moments(p)
    eig = np.linalg.eigvalsh(a)
    axes = [np.unique(np.linspace(lo, hi, 5)) for lo, hi in zip(m.min(0), m.max(0))]
    for loc in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, p.dim):
        starts += [(loc, eig.min() * np.eye(p.dim)), (loc, eig.max() * np.eye(p.dim))]
    return starts


def _chi2_forward_starts(p: MvGaussianMixture) -> list[tuple[np.ndarray, np.ndarray]]:
    mean, cov = (np.asarray(v, np.float64) for v in (p.mean(), p.covariance()))
    starts = [(mean, c * cov) for c in (1.0, 2.0, 4.0)]
    return starts + [(mk, 2.0 * cov) for mk in np.asarray(p.locs, np.float64)]


def _finite_starts(name, family, p, starts, factor: float) -> np.ndarray:
    """Thetas of ``starts``, each covariance scaled by ``factor`` until the objective is finite."""
    locs = np.stack([loc for loc, _ in starts])
    covs = np.stack([cov for _, cov in starts])
    for _ in range(30):
        thetas = np.stack([_to_theta(loc, cov, family) for loc, cov in zip(locs, covs)])
        values = _search_values(name, family, p, jnp.asarray(thetas, p.locs.dtype))
        finite = np.isfinite(np.asarray(values))
        if finite.all():
            break
        covs[~finite] *= factor
    return thetas[finite]


def _from_1d(opt: Optima, family: str) -> Optima:
    loc, log_scale = opt.q.loc[:, None], opt.q.log_scale[:, None]
    if family == "diag":
        return Optima(DiagGaussian._make((loc, log_scale)), opt.value)
    return Optima(FullRankGaussian._make((loc, log_scale[..., None])), opt.value)


def mv_optimal_q(
    name: str,
    p: MvGaussianMixture,
    *,
    family: str = "full",
    num_iters: int = 100,
    grad_tol: float | None = None,
) -> Optima:
    r"""Every verified local minimum of ``name`` over a d-dimensional Gaussian family.

    Args:
      name: one of `divjax.DIVERGENCES`; ``kl_reverse`` and ``chi2_reverse``
        need ``d <= 2``.
      p: the target, a `MvGaussianMixture`.
      family: ``"full"`` (`FullRankGaussian`) or ``"diag"`` (`DiagGaussian`).
      num_iters: the most Newton iterations per start.
      grad_tol: the largest gradient norm of the objective (the divergence for
        kl_reverse, the cross-entropy for kl_forward, ``log(1 + chi^2)`` for
        chi-squares; with respect to ``(loc, log diag(L), strict lower
        triangle of L)``) accepted at a minimum; by default ``1e-6`` in
        float64 and ``2e-3`` in float32.

    Returns:
      `Optima` ``(q, value)`` sorted by value, row 0 the global minimum:
      ``q`` a batched ``family`` (leaves with a leading axis ``n``), ``value``
      ``(n,)`` the divergence (for kl_forward in ``d > 2`` the cross-entropy
      ``-E_p[log q]``, the divergence up to the q-independent ``E_p[log p]``,
      see `divjax.cross_entropy`).

    Raises:
      ValueError: unknown divergence or family, a target that is not a
        `MvGaussianMixture`, or a reverse divergence in ``d > 2`` (not exact
        there; the message says what is).
      RuntimeError: if no start converged to a verified minimum.
    """
    check_divergence(name)
    _checks.check_choice(family, FAMILIES, "family")
    if not isinstance(p, MvGaussianMixture):
        raise ValueError(f"p must be a divjax.MvGaussianMixture, got {type(p).__name__}")
    d, dtype = p.dim, p.locs.dtype
    if d == 1:
        p1 = GaussianMixture(p.weights, p.locs[:, 0], jnp.abs(p.scale_trils[:, 0, 0]))
        return _from_1d(optimal_q(name, p1, num_iters=num_iters, grad_tol=grad_tol), family)
    if name.endswith("reverse") and d > 2:
        raise ValueError(f"mv_optimal_q({name!r}) needs d <= 2, got d = {d}. {EXACTNESS}")
    if grad_tol is None:
        grad_tol = 1e-6 if dtype == jnp.float64 else 2e-3
    if name == "kl_forward":
        # Convex with a closed-form minimum (moment matching): no search, only the check.
        moments = (np.asarray(v, np.float64) for v in (p.mean(), p.covariance()))
        start = jnp.asarray(_to_theta(*moments, family), dtype)
        ends = [np.asarray(a)[None] for a in _check_point(name, family, p, start)]
    elif name == "chi2_forward":
        starts = _finite_starts(name, family, p, _chi2_forward_starts(p), 2.0)
        ends = _solve(name, family, p, jnp.asarray(starts, dtype), num_iters)
    else:
        starts = _finite_starts(name, family, p, _reverse_starts(p), 0.5)
        first = _solve(name, family, p, jnp.asarray(starts, dtype), num_iters)
        polished = [_polish(name, family, p, t, grad_tol) for _, t in _select(*first, grad_tol, d)]
        ends = [np.concatenate(parts) for parts in zip(*polished)] if polished else first
    found = _select(*ends, grad_tol, d)
    if not found:
        raise RuntimeError(f"mv_optimal_q({name!r}): no start converged to a verified minimum")
    thetas = jnp.asarray(np.stack([theta for _, theta in found]), dtype)
    value = jnp.asarray([v for v, _ in found], dtype)  # the objective's
    if name.startswith("chi2"):
        value = jnp.expm1(value)
    elif name == "kl_forward" and d == 2:  # the cross-entropy plus E_p[log p]
        value = _kl_forward_2d(family, p, thetas[0])[None]
    return Optima(jax.vmap(lambda t: _to_q(t, d, family))(thetas), value)


__all__ = ["mv_optimal_q"]
