r"""Whole fit trajectories in one program: for the landscape's paths, animations and examples.

`fit_paths` runs `divjax.fitter`'s step for several fits at once, vmapped over
PRNG keys, starts and step sizes (SGD with momentum or Adam built with
``optax.inject_hyperparams``, so one compiled program serves every step size),
and returns every iterate. `draw_aux` draws one `SurrogateAux` per ``q``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from divjax import _checks
from divjax.estimators import check_estimator, surrogate
from divjax.fit import fitter
from divjax.targets import as_target, check_pair

OPTIMIZERS = ("sgd", "adam")


def _optimizer(kind: str):
    if kind == "sgd":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.9)
    return optax.inject_hyperparams(optax.adam)(learning_rate=0.05, b1=0.9)


@functools.partial(
    jax.jit, static_argnames=("name", "estimator", "alpha", "num_samples", "num_steps", "optimizer")
)
def _paths(
    target, q0, keys, lrs, moms, *, name, estimator, alpha, num_samples, num_steps, optimizer
):
    f = fitter(
        target, name, estimator, num_samples=num_samples, alpha=alpha,
        optimizer=_optimizer(optimizer), window=max(1, num_steps // 10),
    )  # fmt: skip
    momentum_name = "momentum" if optimizer == "sgd" else "b1"

    def one(q_start, key, lr, mom):
        state = f.init(q_start, key)
        hyper = dict(state.opt_state.hyperparams, learning_rate=lr, **{momentum_name: mom})
        state = state._replace(opt_state=state.opt_state._replace(hyperparams=hyper))

        def body(state, _):
            state, _ = f.step(state, jax.random.fold_in(key, state.step))
            return state, f.q(state)

        state, qs = jax.lax.scan(body, state, None, length=num_steps)
        start = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None].astype(a.dtype), q_start)
        return jax.tree_util.tree_map(
            lambda a, b: jnp.concatenate([a, b]), start, qs
        ), state.diverged_at

    return jax.vmap(one)(q0, keys, lrs, moms)


def fit_paths(
    target,
    q0,
    name: str,
    estimator: str = "exact",
    *,
    num_samples: int = 16,
    num_seeds: int = 1,
    num_steps: int = 300,
    learning_rate=0.05,
    momentum=0.9,
    optimizer: str = "sgd",
    alpha=None,
    key: jax.Array,
):
    r"""Paths of several fits (`divjax.fitter`'s step) in one program.

    Fits are vmapped over ``num_seeds`` PRNG keys and, when given as
    sequences, over ``learning_rate``, ``momentum`` and the starts ``q0``
    (leaves with a leading ``(S,)``), all broadcast against each other. An
    ``"exact"`` fit is deterministic: one seed per start and step size.
    ``optimizer="adam"`` uses ``optax.adam(learning_rate, b1=momentum)``.

    Returns:
      ``(path, diverged_at)``: ``path`` a family with leaves ``(S, T + 1, ...)``
      (the start first; frozen after a divergence) and ``diverged_at`` ``(S,)``.
    """
    _checks.check_choice(optimizer, OPTIMIZERS, "optimizer")
    _, alpha, target = check_estimator(
        name, estimator, target, max(int(num_samples), 1), alpha=alpha
    )
    check_pair(target, q0)
    target = as_target(target, q0.event_shape)
    num_steps = _checks.check_int(num_steps, "num_steps", 1)
    lrs = np.atleast_1d(np.asarray(learning_rate, np.float64))
    moms = np.atleast_1d(np.asarray(momentum, np.float64))
    batched = jnp.ndim(q0.mean()) > len(q0.event_shape)
    n_starts = jax.tree_util.tree_leaves(q0)[0].shape[0] if batched else 1
    n = max(lrs.size, moms.size, n_starts, 1 if estimator == "exact" else num_seeds)
    dtype = jax.tree_util.tree_leaves(q0)[0].dtype
    starts = jax.tree_util.tree_map(
        lambda a: jnp.broadcast_to(jnp.asarray(a, dtype), (n,) + jnp.shape(a)[int(batched) :]), q0
    )
    path, div = _paths(
        target, starts, jax.random.split(key, n),
        jnp.asarray(np.broadcast_to(lrs, (n,)), dtype),
        jnp.asarray(np.broadcast_to(moms, (n,)), dtype),
        name=name, estimator=estimator, alpha=alpha, num_samples=max(int(num_samples), 1),
        num_steps=num_steps, optimizer=optimizer,
    )  # fmt: skip
    return jax.tree_util.tree_map(np.asarray, path), np.asarray(div)


@functools.partial(jax.jit, static_argnames=("name", "estimator", "num_samples", "alpha"))
def _auxes(target, q, keys, *, name, estimator, num_samples, alpha):
    loss_fn = surrogate(name, estimator, target, num_samples, alpha=alpha)
    return jax.vmap(lambda qq, k: loss_fn(qq, k)[1])(q, keys)


def draw_aux(target, q, name: str, estimator: str, num_samples: int, key: jax.Array, *, alpha=None):
    """One draw of ``estimator``'s `SurrogateAux` at ``q`` (a batched ``q`` gives batched aux)."""
    _, alpha, target = check_estimator(name, estimator, target, num_samples, alpha=alpha)
    target = as_target(target, q.event_shape)
    batched = jnp.ndim(q.mean()) > len(q.event_shape)
    qb = q if batched else jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], q)
    n = jax.tree_util.tree_leaves(qb)[0].shape[0]
    aux = _auxes(
        target, qb, jax.random.split(key, n), name=name, estimator=estimator,
        num_samples=int(num_samples), alpha=alpha,
    )  # fmt: skip
    return aux if batched else jax.tree_util.tree_map(lambda a: a[0], aux)


__all__ = ["draw_aux", "fit_paths"]
