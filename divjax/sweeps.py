r"""Many fits in one compiled program: seeds x K x estimators x divergences x optimizers.

Batching choices (measured in ``benchmarks/bench_sweep.py``):

- **Seeds** are a ``vmap`` axis of `divjax.fitter`'s step; with several
  devices the seed axis is sharded across them (``jax.sharding``). Each
  seed's fit is independent, so the numbers are the same on one device or many.
- **K** (``num_samples``) fixes array shapes, so each K is its own static
  configuration in the one program (no masking at the largest K): the work
  grows with ``seeds x sum(K) x steps``.
- **One scan** advances every configuration at every step.
- **Exact** fits are deterministic: one fit per divergence and optimizer,
  whatever the seeds or K, reported with ``num_samples = 0``.

Any family (``q0`` a `Gaussian`, `DiagGaussian`, `FullRankGaussian` or
`MixtureGaussian`) and any target (a mixture, or a log density: then no
final divergence and no optima).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from divjax import _checks, _progress
from divjax.divergences import divergence, exact_available
from divjax.estimators import ESTIMATORS, check_estimator, min_samples
from divjax.families import check_family
from divjax.fit import coordinates, default_optima, default_optimizer, fitter, judge
from divjax.optima import Optima
from divjax.status import FitStatus
from divjax.targets import as_target, check_pair


class SweepConfig(NamedTuple):
    """One configuration: divergence, estimator, K (``0`` for exact), optimizer label, order."""

    name: str
    estimator: str
    num_samples: int
    optimizer: str
    alpha: float | None = None


class SweepRun(NamedTuple):
    """The fits of one configuration, one per seed (leaves with a leading ``(num_seeds,)``)."""

    config: SweepConfig
    q: Any
    status: FitStatus


class SweepResult(NamedTuple):
    """All runs of a sweep, with the compile and run times (seconds) of its one program."""

    runs: tuple[SweepRun, ...]
    num_seeds: int
    num_steps: int
    compile_s: float
    run_s: float

    def particle_steps(self) -> int:
        """Useful particle-steps: sum over fits of K x steps."""
        return sum(r.config.num_samples * self.num_seeds * self.num_steps for r in self.runs)


def all_fits(names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Every (divergence, estimator) pair of `divjax.ESTIMATORS` for ``names`` (default: the four)."""
    from divjax.divergences import DIVERGENCES

    return [(n, e) for n in (names or DIVERGENCES) for e in ESTIMATORS[n]]


def configs(fits, num_samples, optimizers) -> list[SweepConfig]:
    """The configurations of a sweep, in order (K below an estimator's minimum skipped)."""
    out = []
    for label in optimizers:
        for fit_ in fits:
            name, est, alpha = (tuple(fit_) + (None,))[:3]
            if est == "exact":
                out.append(SweepConfig(name, est, 0, label, alpha))
                continue
            out += [
                SweepConfig(name, est, int(k), label, alpha)
                for k in num_samples
                if int(k) >= min_samples(est, name)
            ]
    return out


def _seed_sharding(num_seeds: int):
    devices = jax.devices()
    if len(devices) < 2 or num_seeds % len(devices):
        return None
    return NamedSharding(Mesh(np.array(devices), ("seeds",)), PartitionSpec("seeds"))


def _check(target, q0, fits, num_samples, num_seeds, num_steps, optimizers):
    check_family(q0, "q0")
    if not optimizers:
        raise ValueError("optimizers must name at least one optax GradientTransformation")
    for label, opt in optimizers.items():
        if not isinstance(opt, optax.GradientTransformation):
            raise ValueError(f"optimizers[{label!r}] must be an optax.GradientTransformation")
    _checks.check_int(num_seeds, "num_seeds", 1)
    _checks.check_int(num_steps, "num_steps", 1)
    for k in num_samples:
        _checks.check_int(k, "num_samples", 1)
    for fit_ in fits:
        name, est, alpha = (tuple(fit_) + (None,))[:3]
        check_estimator(name, est, target, min_samples(est, name), alpha=alpha)
    check_pair(as_target(target), q0)


def sweep(
    target,
    q0,
    fits: Sequence[tuple] | None = None,
    *,
    num_samples: Sequence[int] = (1, 4, 16, 64, 256),
    num_seeds: int = 256,
    num_steps: int = 2000,
    optimizers: Mapping[str, optax.GradientTransformation] | None = None,
    key: jax.Array,
    parameterization="mu_log_sigma",
    tol: float = 0.2,
    move_tol: float | None = None,
    optima: Mapping[str, Optima] | None = None,
    progress: bool | None = None,
) -> SweepResult:
    r"""Runs every configuration for every seed in one compiled ``lax.scan``.

    Args:
      target: a `GaussianMixture` (final divergences and optima available), a
        `LogDensity`, a distribution or a callable ``log p~`` (Monte Carlo only).
      q0: the common start, any family.
      fits: ``(divergence, estimator)`` or ``(divergence, estimator, alpha)``
        tuples; every estimator of the four main divergences by default.
      num_samples: the K values (an estimator skips the K below its minimum).
      num_seeds: independent fits per configuration (the ``vmap`` axis).
      num_steps: optimizer steps.
      optimizers: ``{label: GradientTransformation}``; by default
        ``{"sgd": default_optimizer()}``.
      key: PRNG key: seed ``s`` of configuration ``c`` starts from
        ``fold_in(split(key, num_seeds)[s], c)`` and step ``t`` uses
        ``fold_in`` of that with ``t`` (as `divjax.fit` does).
      parameterization: the 1-D Gaussian's coordinates (see `divjax.fit`).
      tol, move_tol: see `divjax.fit`.
      optima: ``{divergence: Optima}`` to judge against; computed with
        `divjax.optimal_q` where missing and defined.
      progress: progress bar (default: on a terminal only).

    Returns:
      `SweepResult`; ``runs[i].status`` holds per-seed `FitStatus` arrays.
    """
    fits = list(fits) if fits is not None else all_fits()
    optimizers = dict(optimizers) if optimizers is not None else {"sgd": default_optimizer()}
    _check(target, q0, fits, num_samples, num_seeds, num_steps, optimizers)
    target = as_target(target, q0.event_shape)
    coordinates(q0, parameterization)
    cfgs = configs(fits, num_samples, optimizers)
    window = max(1, num_steps // 10)
    fitters = [
        fitter(
            target, c.name, c.estimator, num_samples=max(c.num_samples, 1), alpha=c.alpha,
            optimizer=optimizers[c.optimizer], parameterization=parameterization, window=window,
        )  # fmt: skip
        for c in cfgs
    ]
    seeds = [1 if c.estimator == "exact" else num_seeds for c in cfgs]
    seed_keys = jax.random.split(key, num_seeds)
    sharding = _seed_sharding(num_seeds)
    if sharding is not None:
        seed_keys = jax.device_put(seed_keys, sharding)
    base_keys = tuple(
        jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(seed_keys[:n]) for i, n in enumerate(seeds)
    )
    states = tuple(
        jax.vmap(lambda k, f=f: f.init(q0, k))(keys) for f, keys in zip(fitters, base_keys)
    )
    steps = [jax.vmap(f.step) for f in fitters]

    def advance(carry, length):
        def body(states, _):
            out = []
            for step, s, keys in zip(steps, states, base_keys):
                out.append(step(s, jax.vmap(jax.random.fold_in)(keys, s.step))[0])
            return tuple(out), None

        return jax.lax.scan(body, carry, None, length=length)

    states, _, timing = _progress.run_chunked(
        advance, states, num_steps, desc=f"sweep ({len(cfgs)} configs)", enabled=progress
    )
    optima = dict(optima or {})
    runs = []
    for c, f, s in zip(cfgs, fitters, states):
        if c.name not in optima:
            optima[c.name] = default_optima(c.name, target, q0, c.alpha)
        q = jax.vmap(f.q)(s)
        exact = q0.family != "mixture" and exact_available(c.name, target, q0, c.alpha)
        if exact:
            final = _final_values(c.name, c.alpha, target, q)
        else:
            final = jnp.full(s.step.shape, jnp.nan, jax.tree_util.tree_leaves(q)[0].dtype)
        status = judge(
            s, target, optima[c.name], final_value=final, tol=tol,
            **({} if move_tol is None else {"move_tol": move_tol}),
        )  # fmt: skip
        if c.estimator == "exact":  # deterministic: the same fit for every seed
            q, status = jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(a, (num_seeds,) + a.shape[1:]), (q, status)
            )
        q, status = jax.tree_util.tree_map(np.asarray, (q, status))
        runs.append(SweepRun(c, q, status))
    return SweepResult(tuple(runs), num_seeds, num_steps, timing.compile_s, timing.run_s)


@functools.partial(jax.jit, static_argnames=("name", "alpha"))
def _final_values(name: str, alpha, target, q) -> jax.Array:
    return jax.vmap(lambda qq: divergence(name, target, qq, alpha=alpha))(q)


__all__ = ["SweepConfig", "SweepResult", "SweepRun", "all_fits", "configs", "sweep"]
