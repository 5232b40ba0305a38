r"""Fitting ``q`` by gradient descent on a divergence: one jit-compiled ``lax.scan``.

The data path: surrogate loss (`divjax.surrogate`) -> ``jax.grad`` -> optax
update -> `lax.scan` over steps. A step whose gradient or new parameters are
not finite (too large a step, a negative step size running away, a collapsing
scale, an infinite chi-square) is not taken: the fit freezes at the last
finite ``q`` and records the step at which it diverged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from divjax import _progress
from divjax.divergences import divergence
from divjax.estimators import Stateful, check_estimator, stateful_surrogate, stateless
from divjax.families import Gaussian
from divjax.mv_families import DiagGaussian, FullRankGaussian, MixtureGaussian, MvGaussianMixture
from divjax.natural import wrap_optimizer
from divjax.optima import Optima, optimal_q
from divjax.parameterizations import Parameterization, get_parameterization, mu_log_sigma
from divjax.targets import GaussianMixture

DEFAULT_LEARNING_RATE = 0.05
DEFAULT_MOMENTUM = 0.9

# FitStatus.optimum codes besides a row index of `Optima`.
STUCK = -1  # converged nowhere known: not near any local minimum of the divergence
UNKNOWN = -2  # no optima to compare with (callable target, or the fit diverged)

# FitStatus.reason codes.
OK, NONFINITE_GRAD, NONFINITE_PARAMS, SCALE_OUT_OF_RANGE, OUT_OF_DOMAIN = 0, 1, 2, 3, 4
REASONS = {
    OK: "ok",
    NONFINITE_GRAD: "non-finite gradient",
    NONFINITE_PARAMS: "non-finite parameters",
    SCALE_OUT_OF_RANGE: "scale collapsed to 0 or exploded",
    OUT_OF_DOMAIN: "step left the parameterization's domain",
}


class FitState(NamedTuple):
    """The scan carry: coordinates ``theta``, optimizer state, PRNG key, step, divergence record.

    ``est_state`` is the estimator's state (`divjax.estimators.Stateful`): ``()``
    for stateless estimators, the Markov chain's `divjax.msc.MSCState` for
    ``msc``; like the parameters it is frozen once the fit diverges.
    """

    params: jax.Array
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array
    diverged_at: jax.Array
    reason: jax.Array
    average: Gaussian
    est_state: Any = ()


class StepInfo(NamedTuple):
    """Per-step outputs of `make_step` (scalars)."""

    loss: jax.Array
    grad_norm: jax.Array
    ess: jax.Array


class FitTrace(NamedTuple):
    """Per-step trace of a fit; leaves have a leading ``(num_steps,)`` axis.

    Attributes:
      q: ``q`` after each step (frozen at the last finite ``q`` after divergence).
      value: the exact divergence after each step, or ``None`` when it is not
        available (callable target) or not requested (``trace_value=False``).
      grad_norm: Euclidean norm of the gradient estimate at each step.
      ess: effective sample size ``1 / sum w^2`` of the step's samples.
      loss: the surrogate's loss value (a Z-free estimate; see `surrogate`).
    """

    q: Gaussian
    value: jax.Array | None
    grad_norm: jax.Array
    ess: jax.Array
    loss: jax.Array


class FitStatus(NamedTuple):
    """How a fit ended (arrays, batched under `sweep`).

    Attributes:
      diverged_at: the step whose update went non-finite, or ``-1``.
      reason: a code of `REASONS` (``0`` when the fit did not diverge).
      optimum: the row of `optimal_q`'s `Optima` the fit settled near
        (``0`` = global), `STUCK` (``-1``) when near none, `UNKNOWN` (``-2``)
        when no optima were available or the fit diverged. Judged on the
        moving average of the iterates over about the last tenth of the steps
        (`FitState.average`), so Monte Carlo noise in the very last step does
        not decide it.
      final_value: the exact divergence at the final ``q`` (``nan`` only when
        no exact value exists: callable target).
    """

    diverged_at: jax.Array
    reason: jax.Array
    optimum: jax.Array
    final_value: jax.Array

    @property
    def diverged(self) -> jax.Array:
        return self.diverged_at >= 0

    def describe(self) -> str:
        """A one-line summary of an unbatched status."""
        if int(self.diverged_at) >= 0:
            return f"diverged at step {int(self.diverged_at)} ({REASONS[int(self.reason)]})"
        opt = int(self.optimum)
        if opt == 0:
            return "converged to the global optimum"
        if opt > 0:
            return f"converged to local optimum #{opt}"
        if opt == STUCK:
            return "stuck (near no local minimum)"
        return "finished (no optima to compare with)"


class FitResult(NamedTuple):
    """The final ``q``, the per-step `FitTrace` and the `FitStatus`."""

    q: Gaussian
    trace: FitTrace
    status: FitStatus


def default_optimizer(
    learning_rate: float = DEFAULT_LEARNING_RATE, momentum: float = DEFAULT_MOMENTUM
) -> optax.GradientTransformation:
    """SGD with (heavy-ball) momentum, as in the seed post; a negative rate ascends."""
    return optax.sgd(learning_rate, momentum=momentum or None)


def _tree_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _scale_bounds(dtype) -> tuple[float, float]:
    info = jnp.finfo(dtype)
    return 0.5 * math.log(float(info.tiny)), 0.5 * math.log(float(info.max))


def family_log_scales(q) -> jax.Array:
    """The log standard deviations of ``q`` along its axes (all components), for the range check."""
    if isinstance(q, (Gaussian, DiagGaussian)):
        return jnp.asarray(q.log_scale)
    if isinstance(q, FullRankGaussian):
        return jnp.diagonal(q.chol, axis1=-2, axis2=-1)
    return jnp.asarray(q.log_scales)


# d-dimensional families are fitted in their own unconstrained parameters
# (loc, log_scale / chol / logits): every value is a valid q.
own_parameters = Parameterization(
    "own",
    lambda theta: theta,
    lambda q: q,
    None,
    lambda theta: jnp.asarray(True),
    None,
)


def init_state(
    q0: Gaussian,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    parameterization: Parameterization = mu_log_sigma,
    estimator: Stateful | None = None,
) -> FitState:
    """The state before the first step; ``estimator.init(q0, fold_in(key, 1))`` starts its state."""
    zero = jnp.zeros((), jnp.int32)
    params = parameterization.from_gaussian(q0)
    average = jax.tree_util.tree_map(jnp.asarray, q0)
    est_state = () if estimator is None else estimator.init(q0, jax.random.fold_in(key, 1))
    return FitState(params, optimizer.init(params), key, zero, zero - 1, zero, average, est_state)


def average_rate(num_steps: int) -> float:
    """Rate of the iterate average: a window of about ``num_steps / 10`` steps."""
    return 1.0 / max(1.0, num_steps / 10.0)


def make_step(
    loss_fn: Callable | Stateful,
    optimizer: optax.GradientTransformation,
    parameterization: Parameterization = mu_log_sigma,
    average_rate: float = 0.01,
) -> Callable[[FitState], tuple[FitState, StepInfo]]:
    """One optimizer step on ``loss_fn(q, key) -> (loss, aux)``, freezing on divergence.

    ``loss_fn`` may also be a `divjax.estimators.Stateful`, whose state is
    threaded through ``FitState.est_state`` (the new state of a step that is
    not taken is discarded with the rest of that step).

    The optimizer acts on ``theta`` in ``parameterization``'s coordinates; the
    gradient is ``jax.grad`` through ``to_gaussian``. Once a fit has diverged
    every later step is a no-op, so a batch of fits (``vmap``) can run the
    same number of steps whatever happens to each. ``state.average`` is an
    exponential moving average (rate ``average_rate``) of ``q``'s parameters.
    """
    to_q = parameterization.to_gaussian
    est = loss_fn if isinstance(loss_fn, Stateful) else stateless(loss_fn)
    grad_fn = jax.value_and_grad(
        lambda theta, key, s: est.loss_fn(to_q(theta), key, s), has_aux=True
    )

    def step(state: FitState) -> tuple[FitState, StepInfo]:
        key, sub = jax.random.split(state.key)
        (loss, (aux, est_state)), grad = grad_fn(state.params, sub, state.est_state)
        updates, opt_state = optimizer.update(grad, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        q = to_q(params)
        log_scales = family_log_scales(q)
        lo, hi = _scale_bounds(log_scales.dtype)
        grad_ok = _tree_finite(grad)
        domain_ok = parameterization.in_domain(params) | ~_tree_finite(params)
        params_ok = _tree_finite(params) & _tree_finite(q)
        scale_ok = jnp.all((log_scales > lo) & (log_scales < hi))
        # The first failed check, in priority order, names the reason.
        reason = jnp.select(
            [~grad_ok, ~domain_ok, ~params_ok, ~scale_ok],
            [NONFINITE_GRAD, OUT_OF_DOMAIN, NONFINITE_PARAMS, SCALE_OUT_OF_RANGE],
            OK,
        ).astype(jnp.int32)
        alive = state.diverged_at < 0
        take = alive & (reason == OK)
        keep = lambda new, old: jax.tree_util.tree_map(  # noqa: E731
            lambda a, b: jnp.where(take, a, b), new, old
        )
        average = jax.tree_util.tree_map(lambda m, x: m + average_rate * (x - m), state.average, q)
        new_state = FitState(
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            key=key,
            step=state.step + 1,
            diverged_at=jnp.where(alive & ~take, state.step, state.diverged_at),
            reason=jnp.where(alive & ~take, reason, state.reason),
            average=keep(average, state.average),
            est_state=keep(est_state, state.est_state),
        )
        grad_norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grad)))
        return new_state, StepInfo(loss, grad_norm, aux.ess)

    return step


def classify(
    q: Gaussian, diverged_at: jax.Array, optima: Optima | None, tol: float = 0.2
) -> jax.Array:
    """Which optimum ``q`` is near: a row of ``optima``, `STUCK` or `UNKNOWN`.

    "Near" means ``|loc - loc*| < tol * scale*`` and ``|log_scale - log_scale*| < tol``.
    """
    if optima is None:
        return jnp.full(jnp.shape(diverged_at), UNKNOWN, jnp.int32)
    if not isinstance(q, Gaussian):
        return _classify_mv(q, diverged_at, optima, tol)
    loc = jnp.asarray(q.loc)[..., None]
    log_scale = jnp.asarray(q.log_scale)[..., None]
    near = (jnp.abs(loc - optima.q.loc) < tol * optima.q.scale) & (
        jnp.abs(log_scale - optima.q.log_scale) < tol
    )
    idx = jnp.where(jnp.any(near, axis=-1), jnp.argmax(near, axis=-1), STUCK).astype(jnp.int32)
    return jnp.where(diverged_at >= 0, UNKNOWN, idx)


def _classify_mv(q, diverged_at, optima: Optima, tol: float) -> jax.Array:
    """`classify` for d-dimensional q: every axis's loc and log sd within ``tol``."""
    sd = jnp.sqrt(jnp.diagonal(q.cov, axis1=-2, axis2=-1))  # (d,)
    opt_sd = jnp.sqrt(jnp.diagonal(optima.q.cov, axis1=-2, axis2=-1))  # (n, d)
    near = jnp.all(jnp.abs(q.loc - optima.q.loc) < tol * opt_sd, axis=-1) & jnp.all(
        jnp.abs(jnp.log(sd) - jnp.log(opt_sd)) < tol, axis=-1
    )
    idx = jnp.where(jnp.any(near), jnp.argmax(near), STUCK).astype(jnp.int32)
    return jnp.where(diverged_at >= 0, UNKNOWN, idx)


def _check_family(q0, target, name, parameterization, natural_gradient, fixed_scale):
    """Raises `ValueError` where ``q0`` does not fit; True when ``q0`` is d-dimensional."""
    if isinstance(q0, Gaussian):
        if isinstance(target, MvGaussianMixture):
            raise ValueError(
                "a d-dimensional target needs a DiagGaussian, FullRankGaussian or "
                "MixtureGaussian q0, got Gaussian"
            )
        return False
    if not isinstance(q0, (DiagGaussian, FullRankGaussian, MixtureGaussian)):
        raise ValueError(
            "q0 must be a divjax.Gaussian, DiagGaussian, FullRankGaussian or MixtureGaussian, "
            f"got {type(q0).__name__}"
        )
    if isinstance(target, GaussianMixture):
        raise ValueError(
            f"a 1-D GaussianMixture target needs a divjax.Gaussian q0, got {type(q0).__name__}"
        )
    if parameterization != "mu_log_sigma" or natural_gradient or fixed_scale:
        raise ValueError(
            f"a {type(q0).__name__} q0 is fitted in its own unconstrained parameters: "
            "parameterization, natural_gradient and fixed_scale apply to the 1-D Gaussian only"
        )
    return True


def _exact_value_available(name, target, q0) -> bool:
    """Whether `divergence` gives the exact value at every ``q`` of ``q0``'s family."""
    if isinstance(target, GaussianMixture):
        return True
    if not isinstance(target, MvGaussianMixture) or isinstance(q0, MixtureGaussian):
        return False
    return name == "chi2_forward" or target.dim <= 2


def _default_optima(name, target, q0) -> Optima | None:
    if isinstance(target, GaussianMixture):
        return optimal_q(name, target)
    if not _exact_value_available(name, target, q0) and name != "kl_forward":
        return None
    if isinstance(q0, MixtureGaussian) or not isinstance(target, MvGaussianMixture):
        return None
    family = "diag" if isinstance(q0, DiagGaussian) else "full"
    return optimal_q(name, target, family=family)


def resolve_optimizer(optimizer, learning_rate, momentum) -> optax.GradientTransformation:
    if optimizer is None:
        return default_optimizer(learning_rate, momentum)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    return optimizer


def fit(
    target,
    q0: Gaussian,
    name: str,
    estimator: str = "exact",
    *,
    num_samples: int = 16,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    momentum: float = DEFAULT_MOMENTUM,
    num_steps: int = 1000,
    key: jax.Array | None = None,
    parameterization: str | Parameterization = "mu_log_sigma",
    trace_value: bool = True,
    optima: Optima | None = None,
    tol: float = 0.2,
    progress: bool | None = None,
    natural_gradient: bool = False,
    damping: float = 0.0,
    clip_norm: float | None = None,
    fixed_scale: bool = False,
) -> FitResult:
    r"""Fits ``q`` to ``target`` by descending the divergence ``name``.

    Args:
      target: a `GaussianMixture` (1-D or d-dimensional), or a callable
        unnormalized ``log p~(x)`` (Monte Carlo estimators only).
      q0: the starting `Gaussian` (1-D), or in ``d`` dimensions a
        `DiagGaussian`, `FullRankGaussian` or `MixtureGaussian`, fitted in its
        own unconstrained parameters (``parameterization``,
        ``natural_gradient`` and ``fixed_scale`` are for the 1-D `Gaussian`).
      name: one of `divjax.DIVERGENCES`.
      estimator: one of ``divjax.ESTIMATORS[name]``; ``"exact"`` by default.
      num_samples: ``K``, Monte Carlo samples per step (static: fixes shapes).
      optimizer: any optax ``GradientTransformation``; by default
        ``optax.sgd(learning_rate, momentum=momentum)``.
      learning_rate, momentum: for the default optimizer (negative learning
        rates ascend: the seed post's "running away").
      num_steps: optimizer steps, all inside one ``lax.scan``.
      key: PRNG key; required for Monte Carlo estimators.
      parameterization: the coordinates gradient descent runs in (a name in
        `divjax.PARAMETERIZATIONS` or a `Parameterization`).
      trace_value: record the exact divergence after every step (costs one
        exact evaluation per step; ignored where no exact value exists:
        callable targets, a `MixtureGaussian` q, reverse divergences and
        ``kl_forward`` beyond ``d = 2``).
      optima: the `Optima` to classify the final ``q`` against; computed with
        `divjax.optimal_q` for a `GaussianMixture` target when omitted (in
        ``d`` dimensions where `optimal_q` can: not for a `MixtureGaussian`).
      tol: closeness to an optimum, see `classify`.
      progress: show a progress bar (default: only on a terminal, and only
        once the fit has run for two seconds).
      natural_gradient: precondition by the inverse Fisher information in
        ``parameterization``'s coordinates (`divjax.natural.natural_gradient`,
        with ``damping``) before ``optimizer``.
      damping: added to the Fisher's diagonal when ``natural_gradient``.
      clip_norm: clip the gradient's global norm (``optax.clip_by_global_norm``)
        before anything else sees it; ``None`` for no clipping.
      fixed_scale: fit the location only, the scale held at ``q0``'s
        (``mu_log_sigma``, ``mu_sigma`` and ``mu_tau`` only).

    Returns:
      `FitResult` ``(q, trace, status)``. A step that would leave the
      parameterization's domain (``sigma <= 0``, ``tau <= 0``, ``eta2 >= 0``,
      ``m2 <= m1^2``) is not taken: the fit is reported as diverged with reason
      `OUT_OF_DOMAIN`.
    """
    check_estimator(name, estimator, target, num_samples)
    multivariate = _check_family(q0, target, name, parameterization, natural_gradient, fixed_scale)
    optimizer = resolve_optimizer(optimizer, learning_rate, momentum)
    if multivariate:
        parameterization = own_parameters
    optimizer = wrap_optimizer(
        optimizer,
        get_parameterization(parameterization),
        natural=natural_gradient,
        damping=damping,
        clip_norm=clip_norm,
        fixed_scale=fixed_scale,
    )
    if key is None:
        if estimator != "exact":
            raise ValueError(f"key is required for the Monte Carlo estimator {estimator!r}")
        key = jax.random.key(0)
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    exact_available = _exact_value_available(name, target, q0)
    if optima is None:
        optima = _default_optima(name, target, q0)

    param = get_parameterization(parameterization)
    est = stateful_surrogate(name, estimator, target, num_samples)
    step = make_step(est, optimizer, param, average_rate(num_steps))
    record_value = trace_value and exact_available

    def scan_body(state, _):
        state, info = step(state)
        q = param.to_gaussian(state.params)
        value = divergence(name, target, q) if record_value else None
        return state, FitTrace(q, value, info.grad_norm, info.ess, info.loss)

    def advance(state, length):
        return jax.lax.scan(scan_body, state, None, length=length)

    state = init_state(q0, optimizer, key, param, est)
    state, trace, _ = _progress.run_chunked(
        advance, state, num_steps, desc=f"fit {name}/{estimator}", enabled=progress
    )
    q = param.to_gaussian(state.params)
    dtype = jax.tree_util.tree_leaves(q0)[0].dtype
    final_value = divergence(name, target, q) if exact_available else jnp.asarray(jnp.nan, dtype)
    status = FitStatus(
        diverged_at=state.diverged_at,
        reason=state.reason,
        optimum=classify(state.average, state.diverged_at, optima, tol),
        final_value=final_value,
    )
    return FitResult(q, trace, status)
