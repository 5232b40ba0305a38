r"""Many fits in one compiled program: seeds x K x estimators x divergences x optimizers.

Batching choices (measured in ``benchmarks/bench_sweep.py``):

- **Seeds** are a ``vmap`` axis; with several devices the seed axis is
  sharded across them (``jax.sharding``), and each seed's fit is independent,
  so the numbers are the same on one device or many.
- **K** (``num_samples``) fixes array shapes, so each K is its own static
  configuration inside the one jitted program (no masking at the largest K):
  the work grows with ``seeds x sum(K) x steps``, not
  ``seeds x len(K) x max(K) x steps``.
- **One scan** whose every step advances every configuration amortizes the
  per-step overhead that dominates small batches.
- **Exact** fits are deterministic (no samples): one fit per divergence and
  optimizer, whatever the seeds or K, reported with ``num_samples = 0``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from divjax import _progress
from divjax.divergences import divergence
from divjax.estimators import ESTIMATORS, check_estimator, min_samples, stateful_surrogate
from divjax.families import Gaussian
from divjax.fit import (
    FitStatus,
    average_rate,
    classify,
    default_optimizer,
    init_state,
    make_step,
)
from divjax.optima import Optima, optimal_q
from divjax.parameterizations import Parameterization, get_parameterization
from divjax.targets import GaussianMixture


class SweepConfig(NamedTuple):
    """One configuration: divergence, estimator, K (``0`` for exact) and optimizer label."""

    name: str
    estimator: str
    num_samples: int
    optimizer: str


class SweepRun(NamedTuple):
    """The fits of one configuration, one per seed (leaves ``(num_seeds,)``)."""

    config: SweepConfig
    q: Gaussian
    status: FitStatus


class SweepResult(NamedTuple):
    """All runs of a sweep, with compile and run times (seconds) of its program."""

    runs: tuple[SweepRun, ...]
    num_seeds: int
    num_steps: int
    compile_s: float
    run_s: float

    def particle_steps(self) -> int:
        """Useful particle-steps: sum over fits of K x steps."""
        return sum(r.config.num_samples * self.num_seeds * self.num_steps for r in self.runs)


def all_fits() -> list[tuple[str, str]]:
    """Every (divergence, estimator) pair of `divjax.ESTIMATORS`, exact included."""
    return [(name, est) for name, ests in ESTIMATORS.items() for est in ests]


def _configs(fits, num_samples, optimizers) -> list[SweepConfig]:
    configs = []
    for label in optimizers:
        for name, est in fits:
            if est == "exact":
                configs.append(SweepConfig(name, est, 0, label))
                continue
            for k in num_samples:
                configs.append(SweepConfig(name, est, int(k), label))
    return configs


def _seed_sharding(num_seeds: int):
    devices = jax.devices()
    if len(devices) < 2 or num_seeds % len(devices):
        return None
    return NamedSharding(Mesh(np.array(devices), ("seeds",)), PartitionSpec("seeds"))


def sweep(
    target,
    q0: Gaussian,
    fits: Sequence[tuple[str, str]] | None = None,
    *,
    num_samples: Sequence[int] = (1, 4, 16, 64, 256),
    num_seeds: int = 256,
    num_steps: int = 2000,
    optimizers: Mapping[str, optax.GradientTransformation] | None = None,
    key: jax.Array,
    parameterization: str | Parameterization = "mu_log_sigma",
    tol: float = 0.2,
    optima: Mapping[str, Optima] | None = None,
    progress: bool | None = None,
) -> SweepResult:
    r"""Runs every configuration for every seed in one compiled ``lax.scan``.

    Args:
      target: a `GaussianMixture` (final divergences and optima available)
        or a callable ``log p~`` (Monte Carlo estimators only).
      q0: the common start.
      fits: ``(divergence, estimator)`` pairs; all of `divjax.ESTIMATORS` by default.
      num_samples: the K values; estimators needing more samples than a K
        (`divjax.estimators.min_samples`: 2 for ``reinforce_loo``, ``msc``, ...)
        skip it.
      num_seeds: independent fits per configuration (the ``vmap`` axis).
      num_steps: optimizer steps.
      optimizers: ``{label: GradientTransformation}``; by default
        ``{"sgd": default_optimizer()}`` (SGD with momentum).
      key: PRNG key; seed ``i`` of configuration ``c`` uses
        ``fold_in(split(key, num_seeds)[i], c)``.
      parameterization: coordinates for gradient descent (see `divjax.fit`).
      tol: closeness to an optimum for the status (see `divjax.fit.classify`).
      optima: ``{divergence: Optima}`` to classify against; computed with
        `divjax.optimal_q` for a `GaussianMixture` target where missing.
      progress: progress bar (default: on a terminal only).

    Returns:
      `SweepResult`; ``runs[i].status`` holds per-seed `FitStatus` arrays.
    """
    fits = list(fits) if fits is not None else all_fits()
    optimizers = dict(optimizers) if optimizers is not None else {"sgd": default_optimizer()}
    if not optimizers:
        raise ValueError("optimizers must name at least one optax GradientTransformation")
    for label, opt in optimizers.items():
        if not isinstance(opt, optax.GradientTransformation):
            raise ValueError(f"optimizers[{label!r}] must be an optax.GradientTransformation")
    if num_seeds < 1 or num_steps < 1:
        raise ValueError(f"num_seeds and num_steps must be >= 1, got {num_seeds}, {num_steps}")
    for name, est in fits:
        check_estimator(name, est, target, min_samples(est))
    for k in num_samples:
        if int(k) < 1:
            raise ValueError(f"num_samples must be >= 1, got {k}")
    configs = [
        c
        for c in _configs(fits, num_samples, optimizers)
        if c.estimator == "exact" or c.num_samples >= min_samples(c.estimator)
    ]
    param = get_parameterization(parameterization)
    exact_available = isinstance(target, GaussianMixture)

    steps, ests, seeds_per_config = [], [], []
    for c in configs:
        est = stateful_surrogate(c.name, c.estimator, target, max(c.num_samples, 1))
        step = make_step(est, optimizers[c.optimizer], param, average_rate(num_steps))
        steps.append(jax.vmap(step))
        ests.append(est)
        seeds_per_config.append(1 if c.estimator == "exact" else num_seeds)

    seed_keys = jax.random.split(key, num_seeds)
    sharding = _seed_sharding(num_seeds)
    if sharding is not None:
        seed_keys = jax.device_put(seed_keys, sharding)
    states = []
    for i, c in enumerate(configs):
        keys = jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(seed_keys[: seeds_per_config[i]])
        opt, est = optimizers[c.optimizer], ests[i]
        init = lambda k, opt=opt, est=est: init_state(q0, opt, k, param, est)  # noqa: E731
        states.append(jax.vmap(init)(keys))
    states = tuple(states)

    def advance(states, length):
        def body(states, _):
            return tuple(step(s)[0] for step, s in zip(steps, states)), None

        return jax.lax.scan(body, states, None, length=length)

    states, _, timing = _progress.run_chunked(
        advance, states, num_steps, desc=f"sweep ({len(configs)} configs)", enabled=progress
    )

    optima = dict(optima or {})
    if exact_available:
        for name in sorted({c.name for c in configs} - set(optima)):
            optima[name] = optimal_q(name, target)

    runs = []
    for c, s in zip(configs, states):
        q = jax.vmap(param.to_gaussian)(s.params)
        if exact_available:
            final_value = _final_values(c.name, target, q)
        else:
            final_value = jnp.full(q.loc.shape, jnp.nan, q.loc.dtype)
        status = FitStatus(
            diverged_at=s.diverged_at,
            reason=s.reason,
            optimum=classify(s.average, s.diverged_at, optima.get(c.name), tol),
            final_value=final_value,
        )
        if c.estimator == "exact":  # deterministic: the same fit for every seed
            q, status = jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(a, (num_seeds,) + a.shape[1:]), (q, status)
            )
        q, status = jax.tree_util.tree_map(np.asarray, (q, status))
        runs.append(SweepRun(c, Gaussian._make(q), FitStatus._make(status)))
    return SweepResult(tuple(runs), num_seeds, num_steps, timing.compile_s, timing.run_s)


@functools.partial(jax.jit, static_argnums=0)
def _final_values(name: str, target: GaussianMixture, q: Gaussian) -> jax.Array:
    return jax.vmap(lambda qq: divergence(name, target, qq))(q)
