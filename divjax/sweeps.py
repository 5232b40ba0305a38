r"""Many fits in one compiled program: seeds x K x estimators x divergences x optimizers.

Batching choices (measured in ``benchmarks/bench_sweep.py``):

- **Seeds** are a ``vmap`` axis of `divjax.fitter`'s step, sharded over every
  device of every process (`divjax._distributed`): under JAX's multi-process
  runtime each process computes its block and every process gets the whole
  result, identical to a one-process run.
- **Chunks** of ``seed_chunk`` seeds run one after another through the same
  compiled program, so memory stays bounded for any number of seeds. With
  ``out_dir`` every finished chunk is written as it completes; the same call
  later resumes from the first unfinished chunk, with identical results.
- **K** fixes array shapes, so each K is its own static configuration in the
  program (no masking at the largest K): work grows with ``seeds x sum(K) x steps``.
- **One scan** advances every configuration at every step.
- **Exact** fits are deterministic: one fit per divergence and optimizer,
  reported for every seed with ``num_samples = 0``.

Any family and any target (a log density gives no final divergence and no optima).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from divjax import _checks, _distributed, _progress, _store
from divjax.divergences import DIVERGENCES, divergence, exact_available
from divjax.estimators import ESTIMATORS, check_estimator, min_samples
from divjax.families import check_family
from divjax.fit import coordinates, default_optima, default_optimizer, fitter, judge
from divjax.optima import Optima
from divjax.status import FitStatus
from divjax.targets import as_target, check_pair

_PARTICLES_PER_CHUNK = 2**22  # seeds x sum(K) per chunk when seed_chunk is not given


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
    """All runs of a sweep, with the compile and run times (seconds) of its program."""

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
            ks = [int(k) for k in num_samples if int(k) >= min_samples(est, name)]
            out += [SweepConfig(name, est, k, label, alpha) for k in ks]
    return out


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


def _chunk_size(seed_chunk, num_seeds, cfgs) -> int:
    devices = _distributed.num_devices()
    if seed_chunk is None:
        particles = max(1, sum(max(c.num_samples, 1) for c in cfgs))
        seed_chunk = max(1, min(num_seeds, _PARTICLES_PER_CHUNK // particles))
    seed_chunk = _checks.check_int(seed_chunk, "seed_chunk", 1)
    return devices * math.ceil(min(seed_chunk, num_seeds) / devices)  # a multiple of the devices


class _Program(NamedTuple):
    cfgs: list
    fitters: list
    q0: Any
    exact: list


def _init(program: _Program, keys):
    """States for one chunk of seed keys (exact configs: one fit, replicated)."""
    states = []
    for i, (f, exact) in enumerate(zip(program.fitters, program.exact)):
        k = jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys[:1] if exact else keys)
        states.append((jax.vmap(lambda kk, f=f: f.init(program.q0, kk))(k), k))
    return tuple(states)


def _advance(program: _Program, carry, length):
    steps = [jax.vmap(f.step) for f in program.fitters]

    def body(carry, _):
        out = []
        for step, (s, keys) in zip(steps, carry):
            out.append((step(s, jax.vmap(jax.random.fold_in)(keys, s.step))[0], keys))
        return tuple(out), None

    return jax.lax.scan(body, carry, None, length=length)


def _run_chunk(program, keys, num_steps, progress, compiled):
    init = compiled.setdefault("init", jax.jit(functools.partial(_init, program)))
    carry = init(keys)
    carry, _, timing = _progress.run_chunked(
        functools.partial(_advance, program), carry, num_steps,
        desc=f"sweep ({len(program.cfgs)} configs)", enabled=progress, cache=compiled,
    )  # fmt: skip
    return _distributed.gather(tuple(s for s, _ in carry)), timing


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
    seed_chunk: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
) -> SweepResult:
    r"""Runs every configuration for every seed in one compiled ``lax.scan`` (per chunk of seeds).

    Args:
      target: a `GaussianMixture` (final divergences and optima available), a
        `LogDensity`, a distribution or a callable ``log p~`` (Monte Carlo only).
      q0: the common start, any family.
      fits: ``(divergence, estimator)`` or ``(divergence, estimator, alpha)``
        tuples; every estimator of the four main divergences by default.
      num_samples: the K values (an estimator skips the K below its minimum).
      num_seeds: independent fits per configuration.
      num_steps: optimizer steps.
      optimizers: ``{label: GradientTransformation}``; by default
        ``{"sgd": default_optimizer()}``.
      key: PRNG key: seed ``s`` of configuration ``c`` starts from
        ``fold_in(split(key, num_seeds)[s], c)`` and step ``t`` uses ``fold_in``
        of that with ``t`` (as `divjax.fit` does), whatever the chunking or devices.
      parameterization: the 1-D Gaussian's coordinates (see `divjax.fit`).
      tol, move_tol: see `divjax.fit`.
      optima: ``{divergence: Optima}`` to judge against; computed with
        `divjax.optimal_q` where missing and defined.
      seed_chunk: seeds per chunk (default: as many as keep about 4 million
        particles per step); rounded up to a multiple of the device count.
      out_dir: write each finished chunk there (``sweep.json`` records the
        configuration) and resume from the first missing chunk; a folder
        holding a different sweep is refused (ValueError).
      progress: progress bars (default: on a terminal only).

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
    exact = [c.estimator == "exact" for c in cfgs]
    program = _Program(cfgs, fitters, q0, exact)
    chunk = _chunk_size(seed_chunk, num_seeds, cfgs)
    num_chunks = math.ceil(num_seeds / chunk)
    seed_keys = jax.random.split(key, num_seeds)
    store = None
    if out_dir is not None:
        meta = _store.describe(cfgs, num_seeds, num_steps, chunk, key, target, q0, parameterization)
        store = _store.ChunkStore(Path(out_dir), meta)
    compiled, chunks, compile_s, run_s = {}, [], 0.0, 0.0
    template = None
    if store is not None:
        template = jax.eval_shape(functools.partial(_init, program), seed_keys[:chunk])
        template = [s for s, _ in template]
    for i in tqdm(range(num_chunks), desc="seed chunks", disable=num_chunks == 1 or not _progress.bar_enabled(progress)):
        saved = store.load(i, template) if store is not None else None
        if saved is None:
            idx = np.minimum(np.arange(i * chunk, (i + 1) * chunk), num_seeds - 1)  # pad the last
            keys = _distributed.put_seeds(seed_keys[idx])
            states, timing = _run_chunk(program, keys, num_steps, progress, compiled)
            compile_s, run_s = compile_s + timing.compile_s, run_s + timing.run_s
            n = min(chunk, num_seeds - i * chunk)
            saved = [jax.tree_util.tree_map(lambda a, n=n, e=e: a if e else a[:n], s) for s, e in zip(states, exact)]
            if store is not None:
                store.save(i, saved)
        chunks.append(saved)
    states = [
        chunks[0][j] if exact[j] else jax.tree_util.tree_map(lambda *a: np.concatenate(a), *(c[j] for c in chunks))
        for j in range(len(cfgs))
    ]
    runs = _finish(program, states, target, q0, optima, num_seeds, tol, move_tol)
    return SweepResult(tuple(runs), num_seeds, num_steps, compile_s, run_s)


def _finish(program, states, target, q0, optima, num_seeds, tol, move_tol) -> list[SweepRun]:
    """Final values and statuses of every configuration (same on every process)."""
    optima = dict(optima or {})
    runs = []
    for c, f, s in zip(program.cfgs, program.fitters, states):
        s = jax.tree_util.tree_map(jnp.asarray, s)
        if c.name not in optima:
            optima[c.name] = default_optima(c.name, target, q0, c.alpha)
        q = jax.vmap(f.q)(s)
        if q0.family != "mixture" and exact_available(c.name, target, q0, c.alpha):
            final = _final_values(c.name, c.alpha, target, q)
        else:
            final = jnp.full(s.step.shape, jnp.nan, jax.tree_util.tree_leaves(q)[0].dtype)
        extra = {} if move_tol is None else {"move_tol": move_tol}
        status = judge(s, target, optima[c.name], final_value=final, tol=tol, **extra)
        if c.estimator == "exact":  # deterministic: the same fit for every seed
            q, status = jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(a, (num_seeds,) + a.shape[1:]), (q, status)
            )
        q, status = jax.tree_util.tree_map(np.asarray, (q, status))
        runs.append(SweepRun(c, q, status))
    return runs


@functools.partial(jax.jit, static_argnames=("name", "alpha"))
def _final_values(name: str, alpha, target, q) -> jax.Array:
    return jax.vmap(lambda qq: divergence(name, target, qq, alpha=alpha))(q)


__all__ = ["SweepConfig", "SweepResult", "SweepRun", "all_fits", "configs", "sweep"]
