r"""Every local minimum of a divergence over a Gaussian family (`optimal_q`), and `classify`.

Over the unconstrained parameters ``theta`` of the family: ``(loc, log_scale)``
for a 1-D `Gaussian`; ``(loc, log_scale)`` ``(d,)`` each for a `DiagGaussian`;
``(loc, log diag(L), strict lower triangle of L)`` for a `FullRankGaussian`
(the ignored upper triangle of ``chol`` is left out: it would make every
Hessian singular).

=================================  ===========================================
divergence                         method
=================================  ===========================================
``kl_forward``                     closed form (moment matching; convex), verified
``chi2_forward`` (any ``d``)       saddle-free Newton on the closed form
everything else (``d <= 2``)       saddle-free Newton from many starts on a
                                   32^d Gauss-Hermite rule in q's frame (cheap
                                   and smooth), each distinct end polished and
                                   verified on the exact quadrature
=================================  ===========================================

Newton minimizes the divergence for the KLs and Jensen-Shannon and
``log(1 + D)`` otherwise (same minima, far better conditioning); every end
is verified (gradient ~ 0, positive-definite ``jax.hessian``), duplicates
merged, and the minima sorted by value. Starts: every component; the moment
match of every pair of components and of the whole mixture; a grid of
locations between the extreme means at the smallest and largest component
variance; each start's covariance scaled until the divergence is finite.

Results are cached for the process per (divergence, order, family, fixed
scale, target): a second fit on the same target does not search again.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax import _checks, divergences, newton, quadrature
from divjax.closed_forms import cross_entropy
from divjax.families import DiagGaussian, FullRankGaussian, Gaussian, mean_and_log_sd
from divjax.targets import GaussianMixture

FAMILIES = ("full", "diag")
_SEARCH_XTOL = 1e-9
_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 256


class Optima(NamedTuple):
    """Local minima of a divergence, sorted ascending by value.

    Attributes:
      q: a batched family (leaves with a leading axis ``n``): `Gaussian` for a
        1-D target, `FullRankGaussian` or `DiagGaussian` otherwise; row 0 is
        the global minimum.
      value: ``(n,)`` the divergence at each minimum (for ``kl_forward`` in
        ``d > 2``, the cross-entropy ``-E_p[log q]``: the divergence up to the
        q-independent ``E_p[log p]``).
    """

    q: Any
    value: jax.Array


def to_q(theta: jax.Array, dim: int, family: str, fixed_log_scale=None):
    """The family member of ``theta`` (see the module docstring)."""
    if family == "gaussian":
        log_scale = theta[1] if fixed_log_scale is None else fixed_log_scale
        return Gaussian._make((theta[0], jnp.asarray(log_scale, theta.dtype)))
    loc, log_diag = theta[:dim], theta[dim : 2 * dim]
    if family == "diag":
        return DiagGaussian._make((loc, log_diag))
    chol = jnp.diag(log_diag).at[np.tril_indices(dim, -1)].set(theta[2 * dim :])
    return FullRankGaussian._make((loc, chol))


def to_theta(loc: np.ndarray, cov: np.ndarray, family: str) -> np.ndarray:
    loc, cov = np.atleast_1d(loc), np.atleast_2d(cov)
    if family in ("gaussian", "diag"):
        return np.concatenate([loc, 0.5 * np.log(np.diagonal(cov))])
    tril = np.linalg.cholesky(cov)
    return np.concatenate([loc, np.log(np.diagonal(tril)), tril[np.tril_indices(len(loc), -1)]])


def _objective(name, alpha, p, family, fixed, rule):
    dim = p.dim

    def f(theta):
        q = to_q(theta, dim, family, fixed)
        if name == "kl_forward" and dim > 2:  # the divergence up to a q-independent constant
            return cross_entropy(p, q)
        return divergences.objective(name, p, q, alpha=alpha, rule=rule)

    return f


def _search_rule(name, alpha, p):
    """The Gauss-Hermite rule of the search (``None``: search on the exact value, it is cheap)."""
    a = divergences.exponent(name, alpha)
    if name == "kl_forward" or a in (-1.0, 0.0, 1.0) or p.num_components == 1:
        return None
    z, w = quadrature.hermite_rule(p.dim)
    return z.astype(p.locs.dtype), w.astype(p.locs.dtype)


@functools.partial(
    jax.jit, static_argnames=("name", "alpha", "family", "fixed", "num_iters", "hermite")
)
def _solve(p, starts, *, name, alpha, family, fixed, num_iters, hermite):
    rule = _search_rule(name, alpha, p) if hermite else None
    f = _objective(name, alpha, p, family, fixed, rule)
    xtol = _SEARCH_XTOL if rule is not None else 0.0
    ends = jax.vmap(lambda t: newton.newton(f, t, num_iters, xtol))(starts)
    return newton.check_points(f, ends)


@functools.partial(jax.jit, static_argnames=("name", "alpha", "family", "fixed"))
def _check_one(p, theta, *, name, alpha, family, fixed):
    """``(theta, gradient, Hessian, value)`` of the exact objective at one point."""
    f = _objective(name, alpha, p, family, fixed, None)
    return theta, jax.grad(f)(theta), jax.hessian(f)(theta), f(theta)


@functools.partial(jax.jit, static_argnames=("name", "alpha", "family", "fixed"))
def _theta_values(p, thetas, *, name, alpha, family, fixed):
    return jax.vmap(_objective(name, alpha, p, family, fixed, None))(thetas)


def _check(p, thetas, **kw) -> list[np.ndarray]:
    """`_check_one` at each row of ``thetas``, stacked (one compiled program, any count)."""
    points = [[np.asarray(a) for a in _check_one(p, t, **kw)] for t in thetas]
    return [np.stack(parts) for parts in zip(*points)]


def _moments(p, groups):
    w, m, a = (np.asarray(v, np.float64) for v in (p.probs, *p.mvn()))
    a = a @ np.swapaxes(a, -1, -2)
    out = []
    for g in groups:
        wg = w[g] / w[g].sum()
        mean = wg @ m[g]
        diff = m[g] - mean
        out.append((mean, np.einsum("k,kij->ij", wg, a[g] + diff[:, :, None] * diff[:, None])))
    return out


def _starts(name, alpha, p) -> list[tuple[np.ndarray, np.ndarray]]:
    k = p.num_components
    m, t = (np.asarray(v, np.float64) for v in p.mvn())
    a = t @ np.swapaxes(t, -1, -2)
    everything = _moments(p, [list(range(k))])
    if name == "chi2_forward" or divergences.exponent(name, alpha) == -1.0:
        return [(everything[0][0], c * everything[0][1]) for c in (1.0, 2.0, 4.0)] + [
            (mk, 2.0 * everything[0][1]) for mk in m
        ]
    starts = list(zip(m, a)) + _moments(p, [[i, j] for i in range(k) for j in range(i + 1, k)])
    starts += everything
    eig = np.linalg.eigvalsh(a)
    axes = [np.unique(np.linspace(lo, hi, 5)) for lo, hi in zip(m.min(0), m.max(0))]
    eye = np.eye(p.dim)
    for loc in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, p.dim):
        starts += [(loc, eig.min() * eye), (loc, eig.max() * eye)]
    return starts


def _finite_thetas(name, alpha, p, family, fixed, starts) -> np.ndarray:
    """Each start's covariance scaled (shrunk for ``a > 1``, grown otherwise) until finite."""
    a = divergences.exponent(name, alpha)
    factor = 0.5 if a is not None and a > 1 else 2.0
    locs = np.stack([loc for loc, _ in starts])
    covs = np.stack([cov for _, cov in starts])
    dtype = p.locs.dtype
    for _ in range(30):
        thetas = np.stack([to_theta(loc, cov, family) for loc, cov in zip(locs, covs)])
        if fixed is not None:
            thetas = thetas[:, :1]
        values = _theta_values(
            p, jnp.asarray(thetas, dtype), name=name, alpha=alpha, family=family, fixed=fixed
        )
        finite = np.isfinite(np.asarray(values))
        if finite.all() or fixed is not None:
            break
        covs[~finite] *= factor
    return thetas[finite]


def _key(name, alpha, p, family, fixed, num_iters, grad_tol):
    leaves = tuple(np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(p))
    return (
        name,
        alpha,
        family,
        fixed,
        num_iters,
        grad_tol,
        str(p.locs.dtype),
        p.locs.shape,
        leaves,
    )


def optimal_q(
    name: str,
    p: GaussianMixture,
    *,
    alpha=None,
    family: str = "full",
    fixed_log_scale: float | None = None,
    num_iters: int = 100,
    grad_tol: float | None = None,
) -> Optima:
    r"""Every verified local minimum of the divergence ``name`` over a Gaussian family.

    Args:
      name: a divergence with an exact value for ``p`` (`divjax.divergence`),
        or ``kl_forward`` in any ``d`` (closed form).
      p: a `GaussianMixture`.
      alpha: the order of ``renyi_*`` and ``amari``.
      family: for a ``d``-dimensional target, ``"full"`` (`FullRankGaussian`)
        or ``"diag"`` (`DiagGaussian`); a 1-D target always gives `Gaussian`'s.
      fixed_log_scale: 1-D only: minimize over the location with
        ``log_scale`` held at this value (what a ``fixed_scale`` fit reaches).
      num_iters: the most Newton iterations per start.
      grad_tol: the largest gradient norm of the objective accepted at a
        minimum; by default ``1e-6`` in float64 and ``2e-3`` in float32.

    Returns:
      `Optima` ``(q, value)`` sorted by value, row 0 the global minimum.

    Raises:
      ValueError: an unknown divergence or family, a bad ``alpha``, a target
        that is not a `GaussianMixture`, no exact value in this dimension, or
        ``fixed_log_scale`` for a ``d``-dimensional target.
      RuntimeError: if no start converged to a verified minimum.
    """
    alpha = divergences.check_divergence(name, alpha)
    if not isinstance(p, GaussianMixture):
        raise ValueError(f"optimal_q needs a divjax.GaussianMixture target, got {type(p).__name__}")
    _checks.check_choice(family, FAMILIES, "family")
    family = "gaussian" if p.event_shape == () else family
    if fixed_log_scale is not None:
        if family != "gaussian":
            raise ValueError("fixed_log_scale is for a 1-D target (Gaussian family) only")
        fixed_log_scale = float(fixed_log_scale)
    if name != "kl_forward":
        divergences.check_exact_target(name, p, alpha, what="value")
    dtype = p.locs.dtype
    if grad_tol is None:
        grad_tol = 1e-6 if dtype == jnp.float64 else 2e-3
    key = _key(name, alpha, p, family, fixed_log_scale, num_iters, grad_tol)
    found = _CACHE.get(key)
    if found is None:  # computed outside the lock: threads work on different divergences
        found = _optimal_q(name, alpha, p, family, fixed_log_scale, num_iters, grad_tol)
        with _CACHE_LOCK:
            while len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = found
    return found


def _optimal_q(name, alpha, p, family, fixed, num_iters, grad_tol) -> Optima:
    dim, dtype = p.dim, p.locs.dtype
    kw = dict(name=name, alpha=alpha, family=family, fixed=fixed)
    if name == "kl_forward":  # convex, closed-form minimum: only the check
        ((mean, cov),) = _moments(p, [list(range(p.num_components))])
        theta = to_theta(mean, cov, family)[: 1 if fixed is not None else None]
        ends = _check(p, jnp.asarray(theta[None], dtype), **kw)
    else:
        starts = _finite_thetas(name, alpha, p, family, fixed, _starts(name, alpha, p))
        hermite = _search_rule(name, alpha, p) is not None
        ends = _solve(p, jnp.asarray(starts, dtype), num_iters=num_iters, hermite=hermite, **kw)
        if hermite:  # polish each distinct search end on the exact quadrature

            def check(theta):
                return [np.asarray(a) for a in _check_one(p, jnp.asarray(theta, dtype), **kw)]

            polished = [
                newton.polish(check, theta, grad_tol)
                for _, theta in newton.select(*ends, grad_tol, dim)
            ]
            if polished:
                ends = [np.concatenate(parts) for parts in zip(*polished)]
    found = newton.select(*ends, grad_tol, dim)
    if not found:
        raise RuntimeError(f"optimal_q({name!r}): no start converged to a verified minimum")
    thetas = jnp.asarray(np.stack([theta for _, theta in found]), dtype)
    q = jax.vmap(lambda t: to_q(t, dim, family, fixed))(thetas)
    return Optima(q=q, value=_values_at(p, q, name=name, alpha=alpha))


@functools.partial(jax.jit, static_argnames=("name", "alpha"))
def _values_at(p, q, *, name, alpha):
    """The divergence at every row of ``q`` (jitted: eager quadrature compiles op by op)."""
    if name == "kl_forward" and p.dim > 2:  # up to the q-independent E_p[log p]
        return jax.vmap(lambda qq: cross_entropy(p, qq))(q)
    return jax.vmap(lambda qq: divergences.divergence(name, p, qq, alpha=alpha))(q)


def classify(q, optima: Optima | None, tol: float = 0.2) -> jax.Array:
    """The row of ``optima`` that ``q`` is near, or ``-1`` (near none / no optima).

    "Near": every axis's mean within ``tol`` of the optimum's standard
    deviation and every log marginal standard deviation within ``tol``. One
    rule for every family and dimension; ``q`` may be batched.
    """
    batch = jnp.shape(q.mean())[: jnp.ndim(q.mean()) - len(q.event_shape)]
    if optima is None:
        return jnp.full(batch, -1, jnp.int32)
    m, s = mean_and_log_sd(q)
    m_opt, s_opt = mean_and_log_sd(optima.q)  # (n, d)
    m, s = m[..., None, :], s[..., None, :]
    near = jnp.all(jnp.abs(m - m_opt) < tol * jnp.exp(s_opt), -1) & jnp.all(
        jnp.abs(s - s_opt) < tol, -1
    )
    return jnp.where(jnp.any(near, -1), jnp.argmax(near, -1), -1).astype(jnp.int32)


__all__ = ["FAMILIES", "Optima", "classify", "optimal_q", "to_q", "to_theta"]
