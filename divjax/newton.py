r"""Saddle-free damped Newton and the verification of minima, for `divjax.optimal_q`.

`newton` minimizes a smooth ``f`` over a parameter vector: the Hessian's
eigenvalues are replaced by their absolute values (so saddles repel), the
step is damped by a backtracking Armijo line search over 16 step sizes, and
the loop stops after ``num_iters`` iterations or once a step moves no entry by
more than ``xtol``. `check_points` evaluates ``(gradient, Hessian, value)`` at
end points and `select` keeps the verified minima: finite value, gradient
norm below a tolerance, positive-definite Hessian, duplicates merged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_STEP_SIZES = 2.0 ** -np.arange(0, 16)


def newton(f, theta0: jax.Array, num_iters: int, xtol: float = 0.0) -> jax.Array:
    """Saddle-free damped Newton from ``theta0`` (``(P,)``); returns the end point."""
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


def check_points(f, ends: jax.Array):
    """``(ends, gradients, Hessians, values)`` of ``f`` at each row of ``ends``."""
    return ends, jax.vmap(jax.grad(f))(ends), jax.vmap(jax.hessian(f))(ends), jax.vmap(f)(ends)


def polish(check, theta: np.ndarray, grad_tol: float, num_iters: int = 8) -> list[np.ndarray]:
    """Saddle-free Newton steps, halved until they lower ``f``, one point at a time.

    ``check(theta) -> (theta, gradient, Hessian, value)`` (a jitted
    `check_points` of one point). For objectives too costly to batch a line
    search over (a 2-D quadrature of a few hundred thousand nodes).
    """
    point = check(theta)
    for _ in range(num_iters):
        _, g, h, v = (np.asarray(a) for a in point)
        if np.linalg.norm(g) <= 1e-2 * grad_tol or not np.all(np.isfinite(h)):
            break
        evals, evecs = np.linalg.eigh(h)
        step = evecs @ ((evecs.T @ g) / np.maximum(np.abs(evals), 1e-8 * np.abs(evals).max()))
        for size in (1.0, 0.5, 0.25, 0.125):
            trial = check(np.asarray(point[0]) - size * step)
            if float(trial[3]) < float(v):
                break
        else:
            break
        point = trial
    return [np.asarray(a)[None] for a in point]


def select(ends, grads, hessians, values, grad_tol: float, dim: int = 1) -> list:
    """``(value, theta)`` of the verified minima among ``ends``, duplicates merged, sorted.

    ``ends`` are ``(n, P)`` vectors laid out as ``(loc (dim,), log_scale (dim,),
    anything else)``; a minimum has a finite value, gradient norm at most
    ``grad_tol`` and a positive-definite Hessian.
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
    if a.shape[0] < 2 * dim:  # location only (a fixed scale)
        return bool(np.all(np.abs(a - b) < 1e-3))
    scale = np.exp(np.min(np.minimum(a[dim : 2 * dim], b[dim : 2 * dim])))
    tol = np.full(a.shape, 1e-3 * scale)
    tol[dim : 2 * dim] = 1e-3
    return bool(np.all(np.abs(a - b) < tol))


__all__ = ["check_points", "newton", "polish", "select"]
