r"""Small dense linear algebra in plain ``jax.numpy``, with no LAPACK custom calls.

Why not ``jnp.linalg``: on CPU, jaxlib 0.10's LAPACK kernels split a *batched*
call (anything under ``vmap``: components, pairs of components, seeds, starts)
across XLA's intra-op thread pool and block until the pieces finish. When a
program holds as many independent batched LAPACK calls as the pool has
threads (two, on a 2-core machine), XLA runs them concurrently, each blocks
the thread it runs on waiting for work queued behind the other, and the
process deadlocks at 0% CPU. Eight independent batched ``solve_triangular``
calls in one ``jit`` hang every time on 2 cores; unbatched ones never do.

The matrices here are ``d x d`` with small ``d`` (the target's dimension), so
the classic unrolled algorithms cost nothing and batch by broadcasting. All
functions take ``(..., d, d)`` arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cholesky(a: jax.Array) -> jax.Array:
    r"""Lower Cholesky factor of symmetric ``a`` (Cholesky-Banachiewicz, column by column).

    NaN where ``a`` is not positive definite (the square root of a
    non-positive pivot), which `is_positive_definite` reads.
    """
    d = a.shape[-1]
    cols = []
    for j in range(d):
        prev = jnp.stack(cols, -1) if cols else jnp.zeros(a.shape[:-1] + (0,), a.dtype)
        # a[:, j] - L[:, :j] L[j, :j]^T for rows i >= j.
        col = a[..., :, j] - jnp.einsum("...ik,...k->...i", prev, prev[..., j, :])
        pivot = jnp.sqrt(col[..., j])
        col = jnp.where(jnp.arange(d) >= j, col / pivot[..., None], 0.0)
        cols.append(col.at[..., j].set(pivot))
    return jnp.stack(cols, -1)


def solve_lower(tril: jax.Array, b: jax.Array) -> jax.Array:
    r"""``z`` with ``tril z = b`` by forward substitution; ``b`` is ``(..., d)`` (broadcast)."""
    d = tril.shape[-1]
    z = []
    for i in range(d):
        acc = b[..., i]
        if z:
            acc = acc - jnp.sum(jnp.stack(z, -1) * tril[..., i, :i], -1)
        z.append(acc / tril[..., i, i])
    return jnp.stack(z, -1)


def solve_spd(a: jax.Array, b: jax.Array) -> jax.Array:
    r"""``a^{-1} b`` for symmetric positive-definite ``a`` and ``b`` of shape ``(..., d)``."""
    tril = cholesky(a)
    y = solve_lower(tril, b)
    return solve_upper(jnp.swapaxes(tril, -1, -2), y)


def solve_upper(triu: jax.Array, b: jax.Array) -> jax.Array:
    r"""``z`` with ``triu z = b`` by back substitution; ``b`` is ``(..., d)`` (broadcast)."""
    d = triu.shape[-1]
    z: list = [None] * d
    for i in reversed(range(d)):
        acc = b[..., i]
        if i < d - 1:
            acc = acc - jnp.sum(jnp.stack(z[i + 1 :], -1) * triu[..., i, i + 1 :], -1)
        z[i] = acc / triu[..., i, i]
    return jnp.stack(z, -1)


def inv_spd(a: jax.Array) -> jax.Array:
    r"""``a^{-1}`` for symmetric positive-definite ``a`` (column by column via `solve_spd`)."""
    d = a.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(d, dtype=a.dtype), a.shape)
    return jnp.swapaxes(solve_spd(a[..., None, :, :], eye), -1, -2)


def logdet_spd(a: jax.Array) -> jax.Array:
    r"""``log det a`` for symmetric positive-definite ``a``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(cholesky(a), axis1=-2, axis2=-1)), -1)


def is_positive_definite(a: jax.Array) -> jax.Array:
    r"""Whether symmetric ``a`` is positive definite: its Cholesky pivots are all positive."""
    diag = jnp.diagonal(cholesky(a), axis1=-2, axis2=-1)
    return jnp.all(jnp.isfinite(diag) & (diag > 0), -1)


__all__ = [
    "cholesky",
    "inv_spd",
    "is_positive_definite",
    "logdet_spd",
    "solve_lower",
    "solve_spd",
    "solve_upper",
]
