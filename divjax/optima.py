r"""Every local minimum of a divergence over ``(loc, log_scale)``: `optimal_q`.

Method: saddle-free damped Newton from many starts, all in one compiled
program, then every end point is verified (gradient ~ 0 and a
positive-definite ``jax.hessian``), duplicates merged, and the minima sorted
by value. Chi-squares are minimized through ``log(1 + chi^2)``, which has the
same minima and far better conditioning.

Starts: every component ``N(m_k, s_k^2)``; the moment match of every pair of
components and of the whole mixture; a small grid between the extreme means.
Reverse KL and reverse chi-square have one minimum per well-separated mode
(mode-seeking); forward KL has exactly one (moment matching, convex) and
forward chi-square exactly one (log-convex in the natural parameters).
Forward KL's minimum is taken in closed form (the mixture's mean and
variance) and only verified.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax import _checks
from divjax.divergences import check_divergence, divergence
from divjax.families import Gaussian
from divjax.mv_families import DiagGaussian, FullRankGaussian, MvGaussianMixture
from divjax.targets import GaussianMixture

_STEP_SIZES = 2.0 ** -np.arange(0, 16)
FAMILIES = ("full", "diag")


class Optima(NamedTuple):
    """Local minima of a divergence, sorted ascending by value.

    Attributes:
      q: a batched `Gaussian` (leaves of shape ``(n,)``), or for a
        d-dimensional target a batched `FullRankGaussian` or `DiagGaussian`
        (leaves ``(n, d)``, ``chol`` ``(n, d, d)``); row 0 is the global minimum.
      value: the divergence at each minimum, shape ``(n,)``.
    """

    q: Gaussian | DiagGaussian | FullRankGaussian
    value: jax.Array


def _objective(name: str, p: GaussianMixture):
    def f(theta):
        d = divergence(name, p, Gaussian(theta[0], theta[1]))
        return jnp.log1p(d) if name.startswith("chi2") else d

    return f


def _starts(name: str, p: GaussianMixture) -> np.ndarray:
    w = np.asarray(p.probs, dtype=np.float64)
    m = np.asarray(p.locs, dtype=np.float64)
    s = np.asarray(p.scales, dtype=np.float64)
    starts = [(mk, np.log(sk)) for mk, sk in zip(m, s)]
    groups = [[i, j] for i in range(len(m)) for j in range(i + 1, len(m))]
    groups.append(list(range(len(m))))
    for g in groups:
        wg = w[g] / w[g].sum()
        mean = np.sum(wg * m[g])
        var = np.sum(wg * (s[g] ** 2 + (m[g] - mean) ** 2))
        starts.append((mean, 0.5 * np.log(var)))
    for loc in np.linspace(m.min(), m.max(), 5):
        for sc in (s.min(), s.max()):
            starts.append((loc, np.log(sc)))
    starts = np.array(starts)
    # Keep starts where the divergence is finite: sigma^2 in (s_max^2 / 2, 2 s_max^2).
    if name == "chi2_reverse":
        starts[:, 1] = np.minimum(starts[:, 1], np.log(s.max()))
    if name == "chi2_forward":
        starts[:, 1] = np.maximum(starts[:, 1], np.log(s.max()))
    return starts


def _newton(f, theta0: jax.Array, num_iters: int, xtol: float = 0.0) -> jax.Array:
    """Saddle-free damped Newton with a backtracking (Armijo) line search.

    Stops after ``num_iters`` iterations, or earlier once a step changes no
    entry of ``theta`` by more than ``xtol`` (by default: no longer changes it
    at all, converged to machine precision or stalled).
    """
    grad = jax.grad(f)
    hess = jax.hessian(f)
    steps = jnp.asarray(_STEP_SIZES, dtype=theta0.dtype)

    def step(theta):
        g = grad(theta)
        evals, evecs = jnp.linalg.eigh(hess(theta))
        scale = jnp.maximum(jnp.abs(evals), 1e-8 * (1.0 + jnp.max(jnp.abs(evals))))
        direction = -evecs @ ((evecs.T @ g) / scale)
        direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, -g)
        f0 = f(theta)
        cand = theta + steps[:, None] * direction
        fc = jax.vmap(f)(cand)
        ok = jnp.isfinite(fc) & (fc <= f0 + 1e-4 * steps * jnp.dot(g, direction))
        return jnp.where(jnp.any(ok), cand[jnp.argmax(ok)], theta)

    def cond(state):
        _, it, moved = state
        return (it < num_iters) & moved

    def body(state):
        theta, it, _ = state
        new = step(theta)
        return new, it + 1, jnp.any(jnp.abs(new - theta) > xtol)

    theta, _, _ = jax.lax.while_loop(cond, body, (theta0, 0, jnp.array(True)))
    return theta


def optimal_q(
    name: str,
    p: GaussianMixture | MvGaussianMixture,
    *,
    num_iters: int = 100,
    grad_tol: float | None = None,
    family: str = "full",
) -> Optima:
    r"""Every verified local minimum of the divergence ``name`` over ``(loc, log_scale)``.

    A d-dimensional target (`MvGaussianMixture`) is handed to
    `divjax.mv_optima.mv_optimal_q`, which searches the Gaussian ``family``.

    Args:
      name: one of `divjax.DIVERGENCES`.
      p: the target mixture: a 1-D `GaussianMixture`, or a `MvGaussianMixture`.
      num_iters: the most Newton iterations per start.
      grad_tol: the largest gradient norm (of the objective: the divergence for
        KLs, ``log(1 + chi^2)`` for chi-squares) accepted at a minimum; by
        default ``1e-6`` in float64 and ``2e-3`` in float32.
      family: for a `MvGaussianMixture` only, ``"full"`` (`FullRankGaussian`)
        or ``"diag"`` (`DiagGaussian`); a 1-D target is always fitted with a
        `Gaussian`.

    Returns:
      `Optima` ``(q, value)`` sorted by value, row 0 the global minimum.

    Raises:
      ValueError: unknown divergence or family, a target that is neither a
        `GaussianMixture` nor a `MvGaussianMixture`, or a divergence that
        `mv_optimal_q` cannot minimize exactly in the target's dimension.
      RuntimeError: if no start converged to a verified minimum.
    """
    check_divergence(name)
    _checks.check_choice(family, FAMILIES, "family")
    if isinstance(p, MvGaussianMixture):
        # Imported here: divjax.mv_optima builds on this module.
        from divjax.mv_optima import mv_optimal_q

        return mv_optimal_q(name, p, family=family, num_iters=num_iters, grad_tol=grad_tol)
    if not isinstance(p, GaussianMixture):
        raise ValueError(
            f"p must be a divjax.GaussianMixture or MvGaussianMixture, got {type(p).__name__}"
        )
    dtype = p.locs.dtype
    if grad_tol is None:
        grad_tol = 1e-6 if dtype == jnp.float64 else 2e-3
    if name == "kl_forward":
        # Convex with a closed-form minimum (moment matching): no search, only the check.
        starts = jnp.stack([p.mean(), 0.5 * jnp.log(p.variance())])[None].astype(dtype)
        ends, grads, hessians, values = _verify(name, p, starts)
    else:
        starts = jnp.asarray(_starts(name, p), dtype=dtype)
        ends, grads, hessians, values = _solve(name, p, starts, num_iters)
    found = _select(ends, grads, hessians, values, grad_tol)
    if not found:
        raise RuntimeError(f"optimal_q({name!r}): no start converged to a verified minimum")
    thetas = np.stack([theta for _, theta in found]).astype(dtype)
    q = Gaussian(jnp.asarray(thetas[:, 0]), jnp.asarray(thetas[:, 1]))
    value = jax.vmap(lambda qq: divergence(name, p, qq))(q)
    return Optima(q=q, value=value)


def _select(ends, grads, hessians, values, grad_tol: float, dim: int = 1) -> list:
    """``(value, theta)`` of the verified minima among Newton's ``ends``, duplicates
    merged, sorted by value.

    ``ends`` are ``(n, P)`` parameter vectors laid out as ``(loc (dim,),
    log_scale (dim,), anything else)``; a minimum has a finite value, gradient
    norm at most ``grad_tol`` and a positive-definite Hessian.
    """
    ends, grads, hessians, values = map(np.asarray, (ends, grads, hessians, values))
    found: list[tuple[float, np.ndarray]] = []
    for theta, g, h, v in zip(ends, grads, hessians, values):
        if not (np.isfinite(v) and np.all(np.isfinite(h))):
            continue
        if np.linalg.norm(g) > grad_tol or np.min(np.linalg.eigvalsh(h)) <= 0:
            continue
        if any(_same(theta, other, dim) for _, other in found):
            continue
        found.append((float(v), theta))
    found.sort(key=lambda t: t[0])
    return found


def _same(a: np.ndarray, b: np.ndarray, dim: int = 1) -> bool:
    """Locations (and other entries) within ``1e-3`` scales, log-scales within ``1e-3``."""
    scale = np.exp(np.min(np.minimum(a[dim : 2 * dim], b[dim : 2 * dim])))
    tol = np.full(a.shape, 1e-3 * scale)
    tol[dim : 2 * dim] = 1e-3
    return bool(np.all(np.abs(a - b) < tol))


@functools.partial(jax.jit, static_argnames=("name", "num_iters"))
def _solve(name, p, starts, num_iters):
    f = _objective(name, p)
    ends = jax.vmap(lambda t: _newton(f, t, num_iters))(starts)
    return _verify(name, p, ends)


@functools.partial(jax.jit, static_argnames=("name",))
def _verify(name, p, ends):
    return _check_points(_objective(name, p), ends)


def _check_points(f, ends):
    """``(ends, gradients, Hessians, values)`` of ``f`` at each row of ``ends``."""
    return ends, jax.vmap(jax.grad(f))(ends), jax.vmap(jax.hessian(f))(ends), jax.vmap(f)(ends)
