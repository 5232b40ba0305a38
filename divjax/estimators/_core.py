r"""What every estimator shares: the draw, the per-sample surrogate terms, the assembled loss.

An estimator is a pure function ``fn(draw, alpha) -> Spec``. ``Spec.terms(q)``
are ``K`` per-sample surrogate terms whose gradient in ``q``'s parameters,
times ``exp(Spec.log_scale)``, is the estimate; `jax.lax.stop_gradient`
marks what is held fixed. `assemble` turns a `Spec` into ``(loss, aux)``, the
loss's value being ``Spec.value`` (a consistent estimate of the divergence)
and its gradient the estimate.

Notation: ``x_i ~ q`` (``i = 1..K``), ``log w_i = log p~(x_i) - log q(x_i)``,
``wbar = softmax(log w)`` and the score ``s(x) = grad_phi log q_phi(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

stop = jax.lax.stop_gradient


class Draw(NamedTuple):
    """One draw of ``K`` samples from ``q`` (everything but ``q`` stopped).

    Attributes:
      q: the family at which the gradient is taken.
      key: the PRNG key the samples came from (pathwise estimators redraw
        ``q.sample(key, K)`` inside their terms to differentiate through it).
      samples: ``(K,) + event_shape``.
      log_weights: ``(K,)`` ``log p~(x_i) - log q(x_i)``.
      log_p: the target's log density used (``log p~``, or ``log p`` where the
        estimator needs it normalized), ``batch + event_shape -> batch``.
      index: the resampled particle of a CIS kernel (`divjax.estimators.msc`), or None.
    """

    q: Any
    key: jax.Array
    samples: jax.Array
    log_weights: jax.Array
    log_p: Callable[[jax.Array], jax.Array]
    index: jax.Array | None = None

    @property
    def num_samples(self) -> int:
        return self.log_weights.shape[0]


class Spec(NamedTuple):
    value: jax.Array  # the loss value (stopped)
    terms: Callable[[Any], jax.Array]  # per-sample surrogate terms, (K,)
    log_scale: jax.Array  # gradient = exp(log_scale) * grad sum(terms)


class SurrogateAux(NamedTuple):
    r"""What one draw of an estimator saw; the same shapes for every estimator.

    Attributes:
      samples: ``(K,) + event_shape`` the draws ``x_i ~ q`` (stopped).
      log_weights: ``(K,)`` ``log p~(x_i) - log q(x_i)``.
      weights: ``(K,)`` self-normalized ``w_i / sum_j w_j``.
      ess: ``()`` effective sample size ``1 / sum_i weights_i^2``, in ``[1, K]``.
      ess_sq: ``()`` ESS of the squared weights ``w_i^2 / sum_j w_j^2``.
      contributions: ``q``'s pytree with ``(K, ...)`` leaves: sample ``i``'s share
        of the estimate (they sum over ``K`` to it). For ``"exact"``: the exact
        gradient divided by ``K``. None when not requested (inside fits).
    """

    samples: jax.Array
    log_weights: jax.Array
    weights: jax.Array
    ess: jax.Array
    ess_sq: jax.Array
    contributions: Any


def log_mean_exp(a: jax.Array) -> jax.Array:
    return logsumexp(a) - math.log(a.shape[0])


def zero(log_w: jax.Array) -> jax.Array:
    return jnp.zeros((), log_w.dtype)


def kl_forward_value(log_w):
    return jnp.sum(jax.nn.softmax(log_w) * log_w) - log_mean_exp(log_w)


def kl_reverse_value(log_w):
    return -jnp.mean(log_w) + log_mean_exp(log_w)


def chi2_reverse_value(log_w):
    return jnp.expm1(log_mean_exp(-log_w) + log_mean_exp(log_w))


@jax.custom_vjp
def scale_grad(q, log_scale: jax.Array):
    """Identity on ``q`` whose backward pass multiplies the gradient by ``exp(log_scale)``.

    The factor is applied after the per-sample terms have been summed, so a
    product beyond the float range is ``+-inf`` rather than ``inf - inf = NaN``.
    """
    return q


def _scale_grad_fwd(q, log_scale):
    return q, log_scale


def _scale_grad_bwd(log_scale, ct):
    scale = jnp.exp(log_scale)
    return jax.tree_util.tree_map(lambda c: scale * c, ct), jnp.zeros_like(log_scale)


scale_grad.defvjp(_scale_grad_fwd, _scale_grad_bwd)


def score_terms(coef: jax.Array, draw: Draw) -> Callable:
    """``coef_i log q_phi(x_i)`` at the stopped samples: the score-function surrogate."""
    return lambda q_: coef * q_.log_prob(draw.samples)


def redraw(q_, draw: Draw) -> jax.Array:
    """The same samples as ``draw``, differentiable in ``q_`` (reparameterization)."""
    return q_.sample(draw.key, draw.num_samples)


def linear_terms(coef) -> Callable:
    r"""Per-sample terms ``sum_j coef_ij phi_j``, whose gradient in ``phi`` is ``coef_i``."""

    def terms(q_):
        per_leaf = jax.tree_util.tree_map(
            lambda c, a: jnp.sum((c * a).reshape(c.shape[0], -1), axis=-1), coef, q_
        )
        return sum(jax.tree_util.tree_leaves(per_leaf))

    return terms


def assemble(q, spec: Spec, draw: Draw, contributions: bool = True):
    """``(loss, SurrogateAux)`` from a `Spec` and the (stopped) draw it saw.

    ``contributions=False`` leaves ``aux.contributions`` as None: fits never
    read them, and not tracing their Jacobian saves compile time.
    """
    total = jnp.sum(spec.terms(scale_grad(q, spec.log_scale)))
    loss = spec.value + (total - stop(total))
    per_sample = None
    if contributions:
        scale = jnp.exp(spec.log_scale)
        per_sample = jax.jacfwd(spec.terms)(stop(q))
        per_sample = jax.tree_util.tree_map(lambda c: scale * c, per_sample)
    log_w = draw.log_weights
    w = jax.nn.softmax(log_w)
    w2 = jax.nn.softmax(2.0 * log_w)
    aux = SurrogateAux(
        samples=draw.samples,
        log_weights=log_w,
        weights=w,
        ess=1.0 / jnp.sum(w**2),
        ess_sq=1.0 / jnp.sum(w2**2),
        contributions=stop(per_sample),
    )
    return loss, aux
