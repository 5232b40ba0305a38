r"""Score-function and self-normalized importance-sampling estimators.

Each puts stopped coefficients on ``log q_phi`` at stopped samples
(`divjax.estimators._core.score_terms`), the old optax surrogate
``f(x) * log_prob(x)``; none differentiates the target, so they work for
every family, the `MixtureGaussian` included.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from divjax.estimators._core import (
    Draw,
    Spec,
    chi2_reverse_value,
    kl_forward_value,
    kl_reverse_value,
    log_mean_exp,
    score_terms,
    zero,
)

LOG2 = math.log(2.0)


def snis(draw: Draw, alpha=None) -> Spec:
    r"""Self-normalized importance sampling for ``kl_forward``.

    ``grad KL(p || q) = -E_p[s(x)] ~= -sum_i wbar_i s(x_i)`` on stopped samples.
    Consistent for ``grad KL(p || q)`` (bias ``O(1/K)``); invariant to the
    scale of ``p~``.

    References:
      Bornschein & Bengio (2015), Reweighted wake-sleep, ICLR (the q-update).
      Owen (2013), Monte Carlo theory, methods and examples, ch. 9.
    """
    log_w = draw.log_weights
    return Spec(kl_forward_value(log_w), score_terms(-jax.nn.softmax(log_w), draw), zero(log_w))


def reinforce(draw: Draw, alpha=None) -> Spec:
    r"""Score function (REINFORCE) for ``kl_reverse``: ``-(1/K) sum_i r_i s(x_i)``, ``r = log w``.

    Unbiased for ``grad KL(q || p)`` (``E_q[s] = 0`` removes ``log Z``). Not
    scale invariant: multiplying ``p~`` by ``c`` adds a zero-mean
    ``-log(c) mean_i s(x_i)``.

    References:
      Williams (1992), Simple statistical gradient-following algorithms for
      connectionist reinforcement learning, Machine Learning 8.
      Ranganath, Gerrish & Blei (2014), Black box variational inference, AISTATS.
    """
    log_w = draw.log_weights
    coef = -log_w / draw.num_samples
    return Spec(kl_reverse_value(log_w), score_terms(coef, draw), zero(log_w))


def reinforce_loo(draw: Draw, alpha=None) -> Spec:
    r"""REINFORCE with the leave-one-out baseline (RLOO) for ``kl_reverse``.

    ``-(1/K) sum_i (r_i - b_i) s(x_i)`` with ``b_i = mean_{j != i} r_j``,
    independent of ``x_i``: unbiased for ``grad KL(q || p)``, ``K >= 2``,
    invariant to the scale of ``p~``.

    References:
      Kool, van Hoof & Welling (2019), Buy 4 REINFORCE samples, get a baseline
      for free!, ICLR workshop DeepRLStructPred.
      Salimans & Knowles (2014), On using control variates with stochastic
      approximation for variational Bayes, arXiv:1401.1022.
    """
    log_w, k = draw.log_weights, draw.num_samples
    baseline = (jnp.sum(log_w) - log_w) / (k - 1)
    return Spec(kl_reverse_value(log_w), score_terms(-(log_w - baseline) / k, draw), zero(log_w))


def snis2(draw: Draw, alpha=None) -> Spec:
    r"""Squared self-normalized weights for ``chi2_forward``: ``-sum_i w2_i s(x_i)``.

    ``w2 = softmax(2 log w)``. Consistent for ``grad log(1 + chi^2(p || q))``,
    twice the gradient of CHIVI's upper bound ``CUBO_2 = log Z + log(1 +
    chi^2) / 2``: with an unnormalized target this, not ``grad chi^2``, is what
    can be estimated. Bias ``O(1/K)``; needs ``chi^2(p || q) < inf``.

    References:
      Dieng, Tran, Ranganath, Paisley & Blei (2017), Variational inference via
      chi upper bound minimization, NeurIPS.
      Ryu & Boyd (2014), Adaptive importance sampling via stochastic convex
      programming, arXiv:1412.4845.
    """
    log_w = draw.log_weights
    value = jnp.expm1(log_mean_exp(2.0 * log_w) - 2.0 * log_mean_exp(log_w))
    return Spec(value, score_terms(-jax.nn.softmax(2.0 * log_w), draw), zero(log_w))


def score_chi2(draw: Draw, alpha=None) -> Spec:
    r"""Score function for ``chi2_reverse``: ``(2/K) sum_i (q/p~)(x_i) s(x_i)``.

    ``grad int q^2 / p~ = 2 E_q[(q / p~) s]`` (pathwise and score terms are
    equal, hence the 2), written as ``mean(q/p~) * score_sn`` with the common
    factor applied after the sum. Unbiased for ``grad chi^2(q || p) / Z``;
    infinite variance iff ``I(3) = inf`` (1-D: ``sigma^2 >= 3 s^2 / 2``). The
    per-sample contributions are signed: they push ``q`` both ways.

    References:
      Dieng et al. (2017), Variational inference via chi upper bound
      minimization, NeurIPS.
      Ranganath, Gerrish & Blei (2014), Black box variational inference, AISTATS.
    """
    log_w = draw.log_weights
    coef = 2.0 * jax.nn.softmax(-log_w)
    return Spec(chi2_reverse_value(log_w), score_terms(coef, draw), log_mean_exp(-log_w))


def score_sn(draw: Draw, alpha=None) -> Spec:
    r"""Self-normalized score function for ``chi2_reverse``: ``2 sum_i v_i s(x_i)``,
    ``v = softmax(-log w)``.

    Consistent for ``grad log(1 + chi^2(q || p))`` (the Renyi divergence of
    order 2), bias ``O(1/K)``; invariant to the scale of ``p~``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    log_w = draw.log_weights
    coef = 2.0 * jax.nn.softmax(-log_w)
    return Spec(chi2_reverse_value(log_w), score_terms(coef, draw), zero(log_w))


# --- the alpha family ------------------------------------------------------------


def renyi_reverse_value(alpha, log_w):
    if alpha == 1:
        return kl_reverse_value(log_w)
    return log_mean_exp((1.0 - alpha) * log_w) / (alpha - 1.0) + log_mean_exp(log_w)


def renyi_forward_value(alpha, log_w):
    if alpha == 1:
        return kl_forward_value(log_w)
    return (log_mean_exp(alpha * log_w) - alpha * log_mean_exp(log_w)) / (alpha - 1.0)


def amari_value(alpha, log_w):
    if alpha == 0:
        return -jnp.mean(log_w)
    if alpha == 1:
        return jnp.mean(jnp.exp(log_w) * log_w)
    return -jnp.expm1(log_mean_exp(alpha * log_w)) / (alpha * (1.0 - alpha))


def js_terms(log_w):
    r"""``f`` with ``JS = E_q[f(log w)]``: ``(log 2 q/(p+q) + w log 2 p/(p+q)) / 2``."""
    sp = jax.nn.softplus(log_w)
    return 0.5 * (LOG2 - sp) + 0.5 * jnp.exp(log_w) * (LOG2 + log_w - sp)


def renyi_reverse_sn(draw: Draw, alpha) -> Spec:
    r"""Self-normalized score function for ``D_alpha(q || p)`` (the VR bound's ``-grad``).

    ``alpha / (alpha - 1) sum_i (v_i - 1/K) s(x_i)``, ``v = softmax((1 - alpha) log w)``;
    the ``- 1/K`` (zero-mean, ``E_q[s] = 0``) gives the ``alpha -> 1`` limit,
    REINFORCE with the batch-mean baseline, used at ``alpha = 1``. Consistent
    for ``grad D_alpha(q || p)``; invariant to the scale of ``p~``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    log_w, k = draw.log_weights, draw.num_samples
    if alpha == 1:
        coef = -(log_w - jnp.mean(log_w)) / k
    else:
        coef = alpha / (alpha - 1.0) * (jax.nn.softmax((1.0 - alpha) * log_w) - 1.0 / k)
    return Spec(renyi_reverse_value(alpha, log_w), score_terms(coef, draw), zero(log_w))


def renyi_forward_sn(draw: Draw, alpha) -> Spec:
    r"""Self-normalized importance sampling for ``D_alpha(p || q)``: ``-sum_i u_i s(x_i)``.

    ``u = softmax(alpha log w)``: ``snis`` at ``alpha = 1``, ``snis2`` at
    ``alpha = 2``. Consistent for ``grad D_alpha(p || q)``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    log_w = draw.log_weights
    coef = -jax.nn.softmax(alpha * log_w)
    return Spec(renyi_forward_value(alpha, log_w), score_terms(coef, draw), zero(log_w))


def amari_score(draw: Draw, alpha) -> Spec:
    r"""Score function for Amari's ``A_alpha(p || q)`` (normalized ``p``).

    ``-(1/K) sum_i expm1(alpha log w_i) / alpha s(x_i)`` (the ``- 1`` a
    zero-mean control variate giving the ``alpha -> 0`` limit, REINFORCE).
    Unbiased for ``grad A_alpha(p || q)`` when ``log p`` is normalized.

    References:
      Amari (1985), Differential-geometrical methods in statistics, Springer.
      Ranganath, Gerrish & Blei (2014), Black box variational inference, AISTATS.
    """
    log_w, k = draw.log_weights, draw.num_samples
    coef = -log_w / k if alpha == 0 else -jnp.expm1(alpha * log_w) / (alpha * k)
    return Spec(amari_value(alpha, log_w), score_terms(coef, draw), zero(log_w))


def hellinger_score(draw: Draw, alpha=None) -> Spec:
    r"""Score function for the squared Hellinger distance: `amari_score` at alpha = 1/2, / 4."""
    s = amari_score(draw, 0.5)
    return Spec(0.25 * s.value, lambda q_: 0.25 * s.terms(q_), s.log_scale)


def js_score(draw: Draw, alpha=None) -> Spec:
    r"""Score function for Jensen-Shannon: ``(1/2K) sum_i (log 2 - softplus(log w_i)) s(x_i)``.

    Unbiased when ``log p`` is normalized.

    References:
      Lin (1991), Divergence measures based on the Shannon entropy, IEEE TIT.
    """
    log_w, k = draw.log_weights, draw.num_samples
    coef = 0.5 * (LOG2 - jax.nn.softplus(log_w)) / k
    return Spec(jnp.mean(js_terms(log_w)), score_terms(coef, draw), zero(log_w))
