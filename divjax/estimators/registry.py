r"""The estimator registry: one record per (divergence, estimator), read by everything else.

``surrogate(name, estimator, target, K)`` returns ``loss_fn(q, key) -> (loss,
aux)``: ``jax.grad(loss_fn, has_aux=True)(q, key)`` is the estimate, as a pytree
like ``q``, and ``aux`` a `SurrogateAux`. ``stateful_surrogate`` is the same
for every estimator with its state carried explicitly (``()`` for stateless
ones; the Markov chain of ``msc``). Monte Carlo estimators only evaluate the
target's ``log p~`` (unnormalized) unless the record says ``normalized``.

What each estimator estimates (`EstimatorInfo.estimand`):

- ``"gradient"``: ``grad D`` (unbiased, or consistent for self-normalized ones);
- ``"gradient_log1p"``: ``grad log(1 + D)`` (``snis2``, ``score_sn``: with an
  unnormalized target, this is what can be estimated);
- ``"gradient_over_z"``: ``grad D / Z`` (the unbiased chi-square ones);
- ``"bound"``: ``-grad L_K``, the importance-weighted bound's gradient, equal to
  ``grad KL(q || p)`` only at ``K = 1`` (``iwae``, ``iwae_dreg``).

Infinite variance: ``variance_exponent(alpha)`` is the ``a`` with
``Var = inf`` iff ``I(a) = int q^a p^(1 - a) = inf`` (for self-normalized
estimators: their asymptotic variance ``K Var``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax import divergences
from divjax.closed_forms import cross_entropy
from divjax.estimators import bounds, control_variates, msc, pathwise, score_function
from divjax.estimators._core import Draw, Spec, SurrogateAux, assemble, linear_terms, stop
from divjax.targets import LogDensity, as_target, check_pair

ALL_FAMILIES = ("gaussian", "diag", "full", "mixture")
REPARAMETERIZED = ("gaussian", "diag", "full")


class EstimatorInfo(NamedTuple):
    """Everything divjax knows about one estimator of one divergence.

    Attributes:
      divergence: the divergence it serves.
      name: the estimator's name.
      fn: ``(Draw, alpha) -> Spec`` (None for ``"exact"``).
      estimand: see the module docstring.
      min_samples: the smallest ``K``.
      pathwise: differentiates through samples (needs a reparameterized
        family and a differentiable ``log p~``).
      stateful: carries a state between steps (``msc``, ``msc_rb``).
      normalized: needs the normalized ``log p``.
      self_normalized: a ratio estimator (finite variance at every ``K``).
      variance_exponent: ``alpha -> a`` (see the module docstring), or None.
    """

    divergence: str
    name: str
    fn: Callable[[Draw, Any], Spec] | None
    estimand: str = "gradient"
    min_samples: int = 1
    pathwise: bool = False
    stateful: bool = False
    normalized: bool = False
    self_normalized: bool = False
    variance_exponent: Callable[[Any], float] | None = None

    @property
    def families(self) -> tuple[str, ...]:
        if self.name == "exact":
            return REPARAMETERIZED
        return REPARAMETERIZED if self.pathwise else ALL_FAMILIES


def _const(a):
    return lambda alpha: a


_R = EstimatorInfo
_RECORDS = [
    _R("kl_forward", "snis", score_function.snis, self_normalized=True, variance_exponent=_const(-1.0)),
    _R("kl_forward", "snis_dreg", bounds.snis_dreg, pathwise=True, self_normalized=True, variance_exponent=_const(-1.0)),
    _R("kl_forward", "msc", msc.msc, min_samples=2, stateful=True),
    _R("kl_forward", "msc_rb", msc.msc_rb, min_samples=2, stateful=True, self_normalized=True, variance_exponent=_const(-1.0)),
    _R("kl_reverse", "reinforce", score_function.reinforce),
    _R("kl_reverse", "reinforce_loo", score_function.reinforce_loo, min_samples=2),
    _R("kl_reverse", "reparam", pathwise.reparam_kl, pathwise=True),
    _R("kl_reverse", "stl", pathwise.stl, pathwise=True),
    _R("kl_reverse", "reinforce_cv", control_variates.reinforce_cv, min_samples=2),
    _R("kl_reverse", "iwae", bounds.iwae, "bound", pathwise=True, self_normalized=True, variance_exponent=_const(-1.0)),
    _R("kl_reverse", "iwae_dreg", bounds.iwae_dreg, "bound", pathwise=True, self_normalized=True, variance_exponent=_const(-3.0)),
    _R("chi2_forward", "snis2", score_function.snis2, "gradient_log1p", self_normalized=True, variance_exponent=_const(-3.0)),
    _R("chi2_reverse", "score", score_function.score_chi2, "gradient_over_z", variance_exponent=_const(3.0)),
    _R("chi2_reverse", "score_sn", score_function.score_sn, "gradient_log1p", self_normalized=True, variance_exponent=_const(3.0)),
    _R("chi2_reverse", "reparam", pathwise.reparam_chi2, "gradient_over_z", pathwise=True, variance_exponent=_const(3.0)),
    _R("chi2_reverse", "score_cv", control_variates.score_cv, "gradient_over_z", min_samples=2, variance_exponent=_const(3.0)),
    _R("renyi_reverse", "sn", score_function.renyi_reverse_sn, self_normalized=True, variance_exponent=lambda a: 2.0 * a - 1.0),
    _R("renyi_reverse", "reparam", pathwise.renyi_reverse_reparam, pathwise=True, self_normalized=True, variance_exponent=lambda a: 2.0 * a - 1.0),
    _R("renyi_forward", "sn", score_function.renyi_forward_sn, self_normalized=True, variance_exponent=lambda a: 1.0 - 2.0 * a),
    _R("renyi_forward", "reparam", pathwise.renyi_forward_reparam, pathwise=True, self_normalized=True, variance_exponent=lambda a: 1.0 - 2.0 * a),
    _R("amari", "score", score_function.amari_score, normalized=True, variance_exponent=lambda a: 1.0 - 2.0 * a),
    _R("amari", "reparam", pathwise.amari_reparam, pathwise=True, normalized=True, variance_exponent=lambda a: 1.0 - 2.0 * a),
    _R("hellinger", "score", score_function.hellinger_score, normalized=True),
    _R("hellinger", "reparam", pathwise.hellinger_reparam, pathwise=True, normalized=True),
    _R("jensen_shannon", "score", score_function.js_score, normalized=True),
    _R("jensen_shannon", "reparam", pathwise.js_reparam, pathwise=True, normalized=True),
]
REGISTRY: dict[tuple[str, str], EstimatorInfo] = {
    (r.divergence, r.name): r
    for r in [_R(n, "exact", None) for n in divergences.ALL_DIVERGENCES] + _RECORDS
}
ESTIMATORS: dict[str, tuple[str, ...]] = {
    n: tuple(e for d, e in REGISTRY if d == n) for n in divergences.ALL_DIVERGENCES
}


def estimator_info(name: str, estimator: str) -> EstimatorInfo:
    """The record of ``estimator`` for divergence ``name`` (ValueError naming the valid ones)."""
    divergences.check_divergence(name, 0.5 if name in divergences.NEEDS_ALPHA else None)
    info = REGISTRY.get((name, estimator))
    if info is None:
        raise ValueError(
            f"unknown estimator {estimator!r} for divergence {name!r}; "
            f"valid choices: {', '.join(ESTIMATORS[name])}"
        )
    return info


def estimators_for(name: str, family: str = "gaussian") -> tuple[str, ...]:
    """The estimators of ``name`` that support ``family`` (``"mixture"``: no pathwise ones)."""
    return tuple(e for e in ESTIMATORS[name] if family in REGISTRY[(name, e)].families)


def min_samples(estimator: str, name: str | None = None) -> int:
    """The smallest ``num_samples`` the estimator accepts (1 for most, 2 for some)."""
    infos = [r for (d, e), r in REGISTRY.items() if e == estimator and name in (None, d)]
    return max((r.min_samples for r in infos), default=1)


def check_estimator(name: str, estimator: str, target, num_samples, *, alpha=None):
    """Validates everything knowable before tracing; returns ``(info, alpha, target)``.

    Raises:
      ValueError: unknown divergence or estimator (naming the valid choices), a
        bad ``alpha``, ``num_samples`` not an int or below the estimator's
        minimum, an estimator undefined at this ``alpha``, ``"exact"`` without
        an exact method for the target, or a target an estimator cannot use.
    """
    alpha = divergences.check_divergence(name, alpha)
    info = estimator_info(name, estimator)
    need = info.min_samples
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if num_samples < need:
        raise ValueError(f"estimator {estimator!r} needs num_samples >= {need}, got {num_samples}")
    if estimator == "reparam" and name in ("renyi_forward", "amari") and alpha == 1:
        raise ValueError(f"{name} 'reparam' is undefined at alpha = 1; use 'sn' or 'score'")
    target = as_target(target)
    if estimator == "exact":
        divergences.check_exact_target(name, target, alpha, what="gradient")
    if info.normalized and isinstance(target, LogDensity) and not target.normalized:
        raise ValueError(
            f"{name} is linear in p: its estimator {estimator!r} needs the normalized log p; "
            "declare divjax.LogDensity(fn, normalized=True) if fn is normalized"
        )
    return info, alpha, target


def check_q(info: EstimatorInfo, target, q) -> None:
    """`ValueError` where ``q`` does not fit the target or the estimator (runs at trace time)."""
    check_pair(target, q)
    if q.family not in info.families:
        supported = ", ".join(estimators_for(info.divergence, q.family))
        raise ValueError(
            f"estimator {info.name!r} differentiates through samples, which a {type(q).__name__} "
            f"q does not reparameterize (its component draw is discrete); use one of: {supported}"
        )


class Stateful(NamedTuple):
    r"""An estimator whose state is carried between optimizer steps (``()`` if stateless).

    Attributes:
      init: ``(q0, key) -> state``.
      loss_fn: ``(q, key, state) -> (loss, (aux, new_state))``;
        ``jax.grad(loss_fn, has_aux=True)`` gives ``(estimate, (aux, new_state))``.
    """

    init: Callable[[Any, jax.Array], Any]
    loss_fn: Callable[[Any, jax.Array, Any], tuple[jax.Array, tuple[SurrogateAux, Any]]]


def _no_state(q, key):
    return ()


def _exact_spec(name, alpha, p, q, draw: Draw) -> Spec:
    r"""The exact gradient as a linear surrogate ``stop(g) . phi`` (loss = the divergence)."""
    if divergences.exact_available(name, p, q, alpha, what="value"):
        value = divergences.divergence(name, p, q, alpha=alpha)
    else:  # kl_forward beyond d = 2: the divergence up to the q-independent E_p[log p]
        value = cross_entropy(p, q)
    value = stop(value)
    inf = jnp.isinf(value)
    k = draw.num_samples
    g = jax.tree_util.tree_map(
        lambda a: jnp.broadcast_to(jnp.where(inf, 1.0, a) / k, (k,) + a.shape),
        stop(divergences.exact_grad(name, p, q, alpha=alpha)),
    )
    log_scale = jnp.where(inf, jnp.inf, 0.0).astype(draw.log_weights.dtype)
    return Spec(value, linear_terms(g), log_scale)


def stateful_surrogate(
    name: str, estimator: str, target, num_samples: int, *, alpha=None, contributions: bool = True
) -> Stateful:
    r"""`surrogate` for any estimator, with its state carried explicitly.

    For ``msc`` and ``msc_rb`` the state is `divjax.estimators.msc.MSCState`:
    ``init`` draws the chain's start from ``q0``, each ``loss_fn`` call applies
    one CIS kernel step at ``q``. Stateless estimators carry ``()`` and give the
    same numbers as `surrogate` for the same keys. ``contributions=False`` skips
    the per-sample contributions in ``aux`` (fits do not read them). Args and
    raises: as `surrogate`.
    """
    info, alpha, target = check_estimator(name, estimator, target, num_samples, alpha=alpha)
    k = int(num_samples)

    def bind(q):
        check_q(info, target, q)
        bound = as_target(target, q.event_shape)
        return bound, (bound.log_prob if info.normalized else bound.unnormalized_log_prob)

    if info.stateful:

        def loss_fn(q, key, state):
            _, log_p = bind(q)
            draw = msc.cis_kernel(key, q, state, log_p, k)
            loss, aux = assemble(q, info.fn(draw, alpha), draw, contributions)
            return loss, (aux, msc.MSCState(draw.samples[draw.index]))

        return Stateful(msc.init, loss_fn)

    def loss_fn(q, key, state):
        p, log_p = bind(q)
        x = stop(q.sample(key, k))
        draw = Draw(q, key, x, stop(log_p(x) - q.log_prob(x)), log_p)
        spec = _exact_spec(name, alpha, p, q, draw) if info.fn is None else info.fn(draw, alpha)
        return assemble(q, spec, draw, contributions), state

    def with_state(q, key, state):
        (loss, aux), state = loss_fn(q, key, state)
        return loss, (aux, state)

    return Stateful(_no_state, with_state)


def surrogate(name: str, estimator: str, target, num_samples: int, *, alpha=None):
    r"""A surrogate loss whose gradient is the ``estimator``'s estimate of ``grad D``.

    Args:
      name: the divergence, one of `divjax.DIVERGENCES` or `divjax.ALPHA_DIVERGENCES`.
      estimator: one of ``ESTIMATORS[name]``; ``"exact"`` routes to
        `divjax.exact_grad`, so exact and Monte Carlo runs share one code path.
      target: a `divjax.GaussianMixture` (any dimension), a `divjax.LogDensity`,
        a distribution object with ``log_prob``, or a callable ``log p~`` of one
        point (vectorized inside; see `divjax.LogDensity`).
      num_samples: ``K >= min_samples(estimator)``; static (it fixes shapes).
        ``"exact"`` still draws ``K`` samples for ``aux``.
      alpha: the order of ``renyi_*`` and ``amari``.

    Returns:
      ``loss_fn(q, key) -> (loss, aux)`` for one unbatched ``q`` of any family
      the estimator supports (`EstimatorInfo.families`); ``jax.grad(loss_fn,
      has_aux=True)(q, key)`` returns ``(estimate, aux)``. ``loss`` is a
      consistent, Z-free estimate of the divergence (exactly `divjax.divergence`
      for ``"exact"``). For ``msc`` and ``msc_rb`` each call starts a fresh
      chain (one kernel step from a draw of ``q``); `stateful_surrogate` carries it.

    Raises:
      ValueError: see `check_estimator`, raised here, before any tracing; a
        ``q`` that does not fit (`check_q`) raises when ``loss_fn`` is traced.
    """
    chain = stateful_surrogate(name, estimator, target, num_samples, alpha=alpha)

    def loss_fn(q, key):
        if REGISTRY[(name, estimator)].stateful:
            key_init, key = jax.random.split(key)
            state = chain.init(q, key_init)
        else:
            state = ()
        loss, (aux, _) = chain.loss_fn(q, key, state)
        return loss, aux

    return loss_fn


__all__ = [
    "ESTIMATORS",
    "REGISTRY",
    "EstimatorInfo",
    "Stateful",
    "check_estimator",
    "check_q",
    "estimator_info",
    "estimators_for",
    "min_samples",
    "stateful_surrogate",
    "surrogate",
]
