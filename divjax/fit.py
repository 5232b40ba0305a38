r"""Fitting ``q`` by gradient descent on a divergence: one step function, used everywhere.

`fitter` returns a `Fitter` of pure functions in the blackjax style:
``state = fitter.init(q0, key)`` and ``state, info = fitter.step(state, key)``,
both jit- and vmap-compatible, so a user can put a divjax step in a loop of
their own. `fit` runs it in one jit-compiled ``lax.scan``; `divjax.sweep`
vmaps it over seeds; the plots' trajectories and the explorer call the same
step.

The data path of one step: surrogate loss (`divjax.surrogate`) -> ``jax.grad``
-> optax update -> apply. A step whose gradient or new parameters are not
finite (too large a step, a negative step size running away, a collapsing
scale, an infinite chi-square), or that leaves the coordinates' domain, is
not taken: the fit freezes at the last finite ``q`` and records why
(`divjax.status`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from divjax import _checks, _progress, status
from divjax.coordinates import Parameterization, get_parameterization, own_parameters
from divjax.divergences import divergence, exact_available
from divjax.estimators import check_estimator, stateful_surrogate
from divjax.families import check_family
from divjax.natural import wrap_optimizer
from divjax.optima import Optima, classify, optimal_q
from divjax.status import FitStatus
from divjax.targets import as_target, check_pair

DEFAULT_LEARNING_RATE = 0.05
DEFAULT_MOMENTUM = 0.9


class FitState(NamedTuple):
    """The state between steps (a pytree; batched under ``vmap``).

    Attributes:
      params: the optimizer's coordinates: ``(2,)`` for a 1-D `Gaussian` in a
        `Parameterization`, else the family pytree itself.
      opt_state: the optax state.
      step: steps taken so far (``()`` int).
      diverged_at: the step whose update was refused, or ``-1``.
      reason: a `divjax.status.REASONS` code.
      average: an exponential moving average of ``q`` over about ``window`` steps.
      block_sum: the running sum of `divjax.status.summary` in the current block.
      blocks: ``(NUM_BLOCKS, 2 d)`` ring of the last block means (the status's
        "still moving" test); ``num_blocks`` counts the blocks completed.
      est_state: the estimator's state (``()``, or MSC's chain).
    """

    params: Any
    opt_state: optax.OptState
    step: jax.Array
    diverged_at: jax.Array
    reason: jax.Array
    average: Any
    block_sum: jax.Array
    blocks: jax.Array
    num_blocks: jax.Array
    est_state: Any = ()


class StepInfo(NamedTuple):
    """What one step saw: the surrogate's loss, the gradient's norm, the draw's ESS."""

    loss: jax.Array
    grad_norm: jax.Array
    ess: jax.Array


class Fitter(NamedTuple):
    """``init(q0, key) -> FitState``, ``step(state, key) -> (FitState, StepInfo)``, ``q(state)``."""

    init: Callable[[Any, jax.Array], FitState]
    step: Callable[[FitState, jax.Array], tuple[FitState, StepInfo]]
    q: Callable[[FitState], Any]


class FitTrace(NamedTuple):
    """Per-step trace of a fit; leaves have a leading ``(num_steps,)`` axis.

    Attributes:
      q: ``q`` after each step (frozen at the last finite ``q`` after divergence).
      value: the exact divergence after each step, or ``None`` where it is not
        available or not requested.
      grad_norm: the gradient estimate's Euclidean norm.
      ess: the effective sample size of the step's samples.
      loss: the surrogate's loss value (a Z-free estimate; see `divjax.surrogate`).
    """

    q: Any
    value: jax.Array | None
    grad_norm: jax.Array
    ess: jax.Array
    loss: jax.Array


class FitResult(NamedTuple):
    """The final ``q``, the per-step `FitTrace` and the `divjax.status.FitStatus`."""

    q: Any
    trace: FitTrace
    status: FitStatus


def default_optimizer(
    learning_rate: float = DEFAULT_LEARNING_RATE, momentum: float = DEFAULT_MOMENTUM
) -> optax.GradientTransformation:
    """SGD with (heavy-ball) momentum, as in the seed post; a negative rate ascends."""
    return optax.sgd(learning_rate, momentum=momentum or None)


def resolve_optimizer(optimizer, learning_rate=DEFAULT_LEARNING_RATE, momentum=DEFAULT_MOMENTUM):
    if optimizer is None:
        return default_optimizer(learning_rate, momentum)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    return optimizer


def _tree_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _scale_bounds(dtype) -> tuple[float, float]:
    info = jnp.finfo(dtype)
    return 0.5 * math.log(float(info.tiny)), 0.5 * math.log(float(info.max))


def coordinates(q, parameterization, natural_gradient=False, fixed_scale=False) -> Parameterization:
    """The coordinates ``q``'s family is fitted in (`ValueError` for 1-D-only options)."""
    if q.family == "gaussian":
        return get_parameterization(parameterization)
    if parameterization not in ("mu_log_sigma", own_parameters) or natural_gradient or fixed_scale:
        raise ValueError(
            f"a {type(q).__name__} q0 is fitted in its own unconstrained parameters: "
            "parameterization, natural_gradient and fixed_scale apply to the 1-D Gaussian only"
        )
    return own_parameters


def fitter(
    target,
    name: str,
    estimator: str = "exact",
    *,
    num_samples: int = 16,
    optimizer: optax.GradientTransformation | None = None,
    alpha=None,
    parameterization: str | Parameterization = "mu_log_sigma",
    natural_gradient: bool = False,
    damping: float = 0.0,
    clip_norm: float | None = None,
    fixed_scale: bool = False,
    window: int = 100,
) -> Fitter:
    r"""The step-level fitting API: pure ``init`` and ``step`` functions.

    Example::

        f = dj.fitter(p, "kl_reverse", "reparam", num_samples=16)
        state = f.init(q0, jax.random.key(0))
        step = jax.jit(f.step)
        for t in range(1000):
            state, info = step(state, jax.random.key(t))
        q = f.q(state)

    ``jax.vmap(f.init)`` and ``jax.vmap(f.step)`` batch fits (over keys, or
    over starts ``q0`` with batched leaves). Optimizers that need the loss
    value (``optax.lbfgs``, ``optax.contrib.reduce_on_plateau``) receive
    ``value``, ``grad`` and ``value_fn`` (the loss at other parameters, same
    key) through optax's extra-args protocol.

    Args:
      target, name, estimator, num_samples, alpha: as `divjax.surrogate`.
      optimizer: any optax transformation (default `default_optimizer`).
      parameterization, natural_gradient, damping, clip_norm, fixed_scale: as `fit`.
      window: steps the iterate average (and the "still moving" test) spans.
    """
    est = stateful_surrogate(name, estimator, target, num_samples, alpha=alpha, contributions=False)
    base = optax.with_extra_args_support(resolve_optimizer(optimizer))
    window = _checks.check_int(window, "window", 1)
    rate = 1.0 / window
    block = max(1, window // status.BLOCKS_PER_WINDOW)

    def parts(q):
        param = coordinates(q, parameterization, natural_gradient, fixed_scale)
        opt = wrap_optimizer(
            base, param, natural=natural_gradient, damping=damping, clip_norm=clip_norm, fixed_scale=fixed_scale
        )
        return param, optax.with_extra_args_support(opt)

    def init(q0, key: jax.Array) -> FitState:
        check_family(q0, "q0")
        param, opt = parts(q0)
        params = param.from_gaussian(q0)
        zero = jnp.zeros((), jnp.int32)
        q0 = jax.tree_util.tree_map(jnp.asarray, q0)
        v = status.summary(q0)
        blocks = jnp.zeros((status.NUM_BLOCKS,) + v.shape, v.dtype)
        return FitState(
            params, opt.init(params), zero, zero - 1, zero, q0, jnp.zeros_like(v), blocks, zero,
            est.init(q0, key),
        )  # fmt: skip

    def step(state: FitState, key: jax.Array) -> tuple[FitState, StepInfo]:
        param, opt = parts(state.average)
        to_q = param.to_gaussian

        def loss_of(params):
            return est.loss_fn(to_q(params), key, state.est_state)

        (loss, (aux, est_state)), grad = jax.value_and_grad(loss_of, has_aux=True)(state.params)
        updates, opt_state = opt.update(
            grad, state.opt_state, state.params, value=loss, grad=grad, value_fn=lambda x: loss_of(x)[0]
        )
        params = optax.apply_updates(state.params, updates)
        q = to_q(params)
        log_scales = q.log_marginal_scales()
        lo, hi = _scale_bounds(jnp.result_type(log_scales))
        finite = _tree_finite(params) & _tree_finite(q)
        # The first failed check, in priority order, names the reason.
        reason = jnp.select(
            [
                ~_tree_finite(grad),
                ~(param.in_domain(params) | ~_tree_finite(params)),
                ~finite,
                ~jnp.all((log_scales > lo) & (log_scales < hi)),
            ],
            [status.NONFINITE_GRAD, status.OUT_OF_DOMAIN, status.NONFINITE_PARAMS, status.SCALE_OUT_OF_RANGE],
            status.OK,
        ).astype(jnp.int32)
        alive = state.diverged_at < 0
        take = alive & (reason == status.OK)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), new, old)

        new_params = keep(params, state.params)
        q_now = to_q(new_params)
        average = jax.tree_util.tree_map(lambda m, x: m + rate * (x - m), state.average, q_now)
        block_sum = state.block_sum + status.summary(q_now)
        full = (state.step + 1) % block == 0
        slot = state.num_blocks % status.NUM_BLOCKS
        blocks = jnp.where(full, state.blocks.at[slot].set(block_sum / block), state.blocks)
        new_state = FitState(
            params=new_params,
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + 1,
            diverged_at=jnp.where(alive & ~take, state.step, state.diverged_at),
            reason=jnp.where(alive & ~take, reason, state.reason),
            average=average,
            block_sum=jnp.where(full, 0.0, block_sum),
            blocks=blocks,
            num_blocks=state.num_blocks + full.astype(jnp.int32),
            est_state=keep(est_state, state.est_state),
        )
        grad_norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grad)))
        return new_state, StepInfo(loss, grad_norm, aux.ess)

    def current_q(state: FitState):
        param, _ = parts(state.average)
        return param.to_gaussian(state.params)

    return Fitter(init, step, current_q)


@jax.jit
def judge(
    state: FitState,
    target,
    optima: Optima | None,
    *,
    final_value: jax.Array,
    tol: float = 0.2,
    move_tol: float = status.MOVE_TOL,
) -> FitStatus:
    """The `FitStatus` of a finished fit (``state`` possibly batched; see `divjax.status`)."""
    diverged = state.diverged_at >= 0
    drift, significant = status.trend(state.blocks, state.num_blocks, state.average)
    optimum = classify(state.average, optima, tol)
    optimum = jnp.where(diverged | (optima is None), status.UNKNOWN, optimum).astype(jnp.int32)
    return FitStatus(
        diverged_at=state.diverged_at,
        reason=state.reason,
        optimum=optimum,
        moving=~diverged & significant & (drift > move_tol),
        ran_away=~diverged & status.ran_away(state.average, target),
        final_value=final_value,
        drift=drift,
    )


# Jitted: evaluated eagerly, a quadrature compiles every primitive on its own (seconds).
_final_value = jax.jit(divergence, static_argnames=("name", "alpha"))


def default_optima(name, target, q0, alpha=None, fixed_log_scale=None) -> Optima | None:
    """`divjax.optimal_q` for ``q0``'s family where it is defined (cached), else None."""
    if not hasattr(target, "mvn") or q0.family == "mixture":
        return None
    family = "diag" if q0.family == "diag" else "full"
    try:
        return optimal_q(name, target, alpha=alpha, family=family, fixed_log_scale=fixed_log_scale)
    except (ValueError, RuntimeError):
        return None


def fit(
    target,
    q0,
    name: str,
    estimator: str = "exact",
    *,
    num_samples: int = 16,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    momentum: float = DEFAULT_MOMENTUM,
    num_steps: int = 1000,
    key: jax.Array | None = None,
    alpha=None,
    parameterization: str | Parameterization = "mu_log_sigma",
    trace_value: bool = True,
    optima: Optima | None = None,
    tol: float = 0.2,
    move_tol: float = status.MOVE_TOL,
    progress: bool | None = None,
    natural_gradient: bool = False,
    damping: float = 0.0,
    clip_norm: float | None = None,
    fixed_scale: bool = False,
) -> FitResult:
    r"""Fits ``q`` to ``target`` by descending the divergence ``name``, in one compiled scan.

    Args:
      target: a `GaussianMixture` (any ``d``), a `LogDensity`, a distribution
        with ``log_prob``, or a callable ``log p~`` of one point (Monte Carlo only).
      q0: the start: a `Gaussian` (1-D), `DiagGaussian`, `FullRankGaussian` or
        `MixtureGaussian` (the last three in their own unconstrained parameters).
      name: the divergence (`divjax.DIVERGENCES`, `divjax.ALPHA_DIVERGENCES`).
      estimator: one of ``divjax.ESTIMATORS[name]``; ``"exact"`` by default.
      num_samples: ``K``, Monte Carlo samples per step (static: fixes shapes).
      optimizer: any optax transformation; by default
        ``optax.sgd(learning_rate, momentum=momentum)`` (negative rates ascend).
      num_steps: optimizer steps.
      key: PRNG key; required for Monte Carlo estimators. Step ``t`` uses
        ``fold_in(key, t)``; the estimator's state starts from ``key``.
      alpha: the order of ``renyi_*`` and ``amari``.
      parameterization: the 1-D Gaussian's coordinates (`divjax.PARAMETERIZATIONS`).
      trace_value: record the exact divergence after every step (where exact).
      optima: the `Optima` to judge the end against; by default
        `divjax.optimal_q` where it is defined (cached per target and divergence).
      tol: closeness to an optimum (`divjax.optima.classify`).
      move_tol: the averaged iterate's largest movement over the last tenth
        of the steps for the fit to count as settled (`divjax.status`).
      progress: show a progress bar (default: on a terminal, after 2 s).
      natural_gradient, damping: precondition by the inverse Fisher information
        in ``parameterization``'s coordinates (`divjax.natural_gradient`).
      clip_norm: clip the gradient's global norm before anything else sees it.
      fixed_scale: fit the location only, the scale held at ``q0``'s; the end
        is judged against the optimum at that scale.

    Returns:
      `FitResult` ``(q, trace, status)``.

    Raises:
      ValueError: bad arguments (before any tracing), or ``fit`` itself
        called under ``jit``/``vmap`` (use `fitter`'s ``init``/``step`` there).
    """
    if not _checks.is_concrete(*jax.tree_util.tree_leaves(q0)):
        raise ValueError(
            "fit compiles and runs its own program; under jax.jit or jax.vmap use "
            "divjax.fitter(...).init / .step instead"
        )
    check_family(q0, "q0")
    _, alpha, target = check_estimator(name, estimator, target, num_samples, alpha=alpha)
    check_pair(target, q0)
    target = as_target(target, q0.event_shape)
    coordinates(q0, parameterization, natural_gradient, fixed_scale)
    num_steps = _checks.check_int(num_steps, "num_steps", 1)
    if key is None:
        if estimator != "exact":
            raise ValueError(f"key is required for the Monte Carlo estimator {estimator!r}")
        key = jax.random.key(0)
    window = max(1, num_steps // 10)
    f = fitter(
        target, name, estimator, num_samples=num_samples,
        optimizer=resolve_optimizer(optimizer, learning_rate, momentum), alpha=alpha,
        parameterization=parameterization, natural_gradient=natural_gradient, damping=damping,
        clip_norm=clip_norm, fixed_scale=fixed_scale, window=window,
    )  # fmt: skip
    exact = q0.family != "mixture" and exact_available(name, target, q0, alpha)
    if optima is None:
        fixed = float(q0.log_scale) if fixed_scale else None
        optima = default_optima(name, target, q0, alpha, fixed)
    record = trace_value and exact

    def scan_body(state, _):
        state, info = f.step(state, jax.random.fold_in(key, state.step))
        q = f.q(state)
        value = divergence(name, target, q, alpha=alpha) if record else None
        return state, FitTrace(q, value, info.grad_norm, info.ess, info.loss)

    def advance(state, length):
        return jax.lax.scan(scan_body, state, None, length=length)

    state = f.init(q0, key)
    state, trace, _ = _progress.run_chunked(
        advance, state, num_steps, desc=f"fit {name}/{estimator}", enabled=progress
    )
    q = f.q(state)
    dtype = jax.tree_util.tree_leaves(q0)[0].dtype
    final = _final_value(name, target, q, alpha=alpha) if exact else jnp.asarray(jnp.nan, dtype)
    result_status = judge(
        state, target, optima, final_value=final, tol=tol, move_tol=move_tol
    )
    return FitResult(q, trace, result_status)


__all__ = [
    "FitResult",
    "FitState",
    "FitTrace",
    "Fitter",
    "StepInfo",
    "default_optimizer",
    "fit",
    "fitter",
    "judge",
]
