r"""Monte Carlo gradient estimators, each a surrogate loss whose ``jax.grad`` is the estimate.

``surrogate(name, estimator, target, num_samples)`` returns
``loss_fn(q, key) -> (loss, aux)``; ``jax.grad(loss_fn, has_aux=True)(q, key)``
is the estimate of ``grad_phi D(q_phi)`` as a `Gaussian`, with
``phi = (loc, log_scale)``. Notation: ``x_i ~ q`` (``i = 1..K``), the log-weights
``log w_i = log p~(x_i) - log q(x_i)``, the self-normalized weights
``w_i / sum_j w_j``, and the score ``s(x) = grad_phi log q_phi(x)``.

Every surrogate is written as ``K`` per-sample terms (so ``aux.contributions``,
their per-sample gradients, sum to the estimate) with `jax.lax.stop_gradient`
marking what is held fixed: score-function estimators put stopped coefficients
on ``log q_phi`` at stopped samples (the old optax surrogate
``f(x) * log_prob(x)``); reparameterized ones differentiate through
``q.sample(key, K) = loc + scale * eps`` and, for a callable target, through
``log_p`` itself (autodiff supplies ``grad_x log p~``).

Every estimator works in ``d`` dimensions through this same API: a
d-dimensional `GaussianMixture` target (or a callable ``log p~`` on ``(K, d)``)
with a `DiagGaussian`, `FullRankGaussian` or `MixtureGaussian` ``q``; the
estimators use only ``q.sample`` and ``q.log_prob`` (the control variates take
their scores from ``jax.grad``), ``"exact"`` routes to
`divjax.multivariate`, and a `MixtureGaussian` ``q``, whose component draw
is not reparameterizable, takes the `MIXTURE_ESTIMATORS` only.

Monte Carlo estimators only evaluate ``log p~``: the target may be unnormalized
(mass ``Z``). What each estimator is unbiased or consistent for is stated in
its docstring; in short

=============  =============  ==================================================
divergence     estimator      estimates (unbiased / consistent as K -> inf)
=============  =============  ==================================================
kl_forward     snis           consistent: ``grad KL(p || q)``
kl_forward     snis_dreg      consistent: ``grad KL(p || q)``, mean = ``snis``'s
kl_forward     msc            unbiased at the chain's stationarity (K >= 2)
kl_forward     msc_rb         unbiased at the chain's stationarity (K >= 2)
kl_reverse     reinforce      unbiased: ``grad KL(q || p)``
kl_reverse     reinforce_loo  unbiased: ``grad KL(q || p)`` (K >= 2)
kl_reverse     reparam        unbiased: ``grad KL(q || p)``
kl_reverse     stl            unbiased: ``grad KL(q || p)``
kl_reverse     reinforce_cv   unbiased: ``grad KL(q || p)`` (K >= 2)
kl_reverse     iwae           unbiased: ``-grad L_K`` (= ``grad KL(q || p)`` at K=1)
kl_reverse     iwae_dreg      unbiased: ``-grad L_K`` (= ``grad KL(q || p)`` at K=1)
chi2_forward   snis2          consistent: ``grad log(1 + chi^2(p || q))``
chi2_reverse   score          unbiased: ``grad chi^2(q || p) / Z``
chi2_reverse   score_sn       consistent: ``grad log(1 + chi^2(q || p))``
chi2_reverse   reparam        unbiased: ``grad chi^2(q || p) / Z``
chi2_reverse   score_cv       unbiased: ``grad chi^2(q || p) / Z`` (K >= 2)
=============  =============  ==================================================

``L_K = E[log mean_i w_i]`` is the K-sample importance-weighted bound.
``msc`` and ``msc_rb`` are stateful (Markovian score climbing, `divjax.msc`):
`stateful_surrogate` carries their Markov chain between steps, and `divjax.fit`
and `divjax.sweep` use it for every estimator (a stateless one has state
``()``). Called through plain `surrogate` they run one kernel step from a fresh
start drawn from ``q`` (sampling-importance-resampling, whose mean is ``snis``'s).

Infinite variance. For a Gaussian mixture ``p`` (widest component variance
``s^2``) and ``q = N(mu, sigma^2)``:
``score`` and chi2_reverse ``reparam`` have infinite variance iff
``sigma^2 >= 3 s^2 / 2`` (``E_q[(q/p)^2 s(x)^2]`` diverges), and infinite mean iff
``sigma^2 >= 2 s^2`` (``chi^2(q || p) = inf``). The self-normalized ``snis``,
``snis2`` and ``score_sn`` are convex combinations of scores, so their variance
is finite at every ``K``, but their asymptotic variance ``K Var`` is infinite
(variance decaying slower than 1/K, unreliable standard errors) iff ``sigma^2 <= s^2 / 2``,
``sigma^2 <= 3 s^2 / 4`` and ``sigma^2 >= 3 s^2 / 2`` respectively; where the
chi-square they target is infinite they converge to nothing. `divjax.grad_stats`
reports this as ``infinite_variance``.

Loss values. The value of every Monte Carlo ``loss`` is a consistent, Z-free
estimate of the divergence ``name`` itself (biased at finite ``K``), e.g.
``-mean(log w) + log mean(w)`` for ``kl_reverse``; only its gradient is the
estimator. The ``"exact"`` loss value is `divjax.divergence` (``+inf`` where
infinite). Where ``score`` or chi2_reverse ``reparam`` exceed the float range
(``q/p~`` above ``~1e38`` in float32, e.g. ``q`` far from every mode) the
gradient is ``+-inf``, never NaN, because the common factor ``mean(q/p~)`` is
applied after the per-sample sum (`_scale_grad`); the per-sample
``contributions`` may then hold ``+-inf`` of both signs (summing them gives NaN).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import msc as _msc
from divjax.divergences import check_divergence, divergence, exact_grad
from divjax.families import Gaussian
from divjax.mv_families import MixtureGaussian, MvGaussianMixture
from divjax.targets import GaussianMixture

ESTIMATORS: dict[str, tuple[str, ...]] = {
    "kl_forward": ("exact", "snis", "snis_dreg", "msc", "msc_rb"),
    "kl_reverse": (
        "exact",
        "reinforce",
        "reinforce_loo",
        "reparam",
        "stl",
        "reinforce_cv",
        "iwae",
        "iwae_dreg",
    ),
    "chi2_forward": ("exact", "snis2"),
    "chi2_reverse": ("exact", "score", "score_sn", "reparam", "score_cv"),
}

# A MixtureGaussian q draws its component without a reparameterization, so
# estimators that differentiate through samples miss the logits' gradient; the
# score-function and importance-sampling estimators do not.
MIXTURE_ESTIMATORS = (
    "snis",
    "msc",
    "msc_rb",
    "reinforce",
    "reinforce_loo",
    "reinforce_cv",
    "snis2",
    "score",
    "score_sn",
    "score_cv",
)

_MIN_SAMPLES = {"reinforce_loo": 2, "reinforce_cv": 2, "score_cv": 2, "msc": 2, "msc_rb": 2}

Target = GaussianMixture | MvGaussianMixture | Callable[[jax.Array], jax.Array]
stop = jax.lax.stop_gradient


class SurrogateAux(NamedTuple):
    r"""What one draw of an estimator saw; identical shapes for every estimator.

    Attributes:
      samples: ``(K,)`` the draws ``x_i ~ q`` (stopped); ``(K, d)`` in ``d`` dimensions.
      log_weights: ``(K,)`` ``log p~(x_i) - log q(x_i)``.
      weights: ``(K,)`` self-normalized ``w_i / sum_j w_j`` (sum to one).
      ess: ``()`` effective sample size ``1 / sum_i weights_i^2``, in ``[1, K]``.
      ess_sq: ``()`` ESS of the squared weights ``w_i^2 / sum_j w_j^2`` (the
        weights ``snis2`` uses).
      contributions: ``q``'s pytree with ``(K, ...)`` leaves, sample ``i``'s share of
        the gradient estimate; they sum over ``K`` to the estimate. For
        ``"exact"``: the exact gradient divided by ``K``.
    """

    samples: jax.Array
    log_weights: jax.Array
    weights: jax.Array
    ess: jax.Array
    ess_sq: jax.Array
    contributions: Gaussian


class _Spec(NamedTuple):
    value: jax.Array  # the loss value (stopped)
    terms: Callable[[Gaussian], jax.Array]  # per-sample surrogate terms, (K,)
    log_scale: jax.Array  # gradient = exp(log_scale) * grad sum(terms)


def _log_mean_exp(a: jax.Array) -> jax.Array:
    return logsumexp(a) - math.log(a.shape[0])


@jax.custom_vjp
def _scale_grad(q: Gaussian, log_scale: jax.Array) -> Gaussian:
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


_scale_grad.defvjp(_scale_grad_fwd, _scale_grad_bwd)


# ---------------------------------------------------------------------------
# Estimators: (q, key, x, log_w, log_p) -> _Spec. x and log_w arrive stopped.


def _kl_forward_value(log_w):
    return jnp.sum(jax.nn.softmax(log_w) * log_w) - _log_mean_exp(log_w)


def _kl_reverse_value(log_w):
    return -jnp.mean(log_w) + _log_mean_exp(log_w)


def _chi2_reverse_value(log_w):
    return jnp.expm1(_log_mean_exp(-log_w) + _log_mean_exp(log_w))


def _zero(log_w):
    return jnp.zeros((), log_w.dtype)


def snis(q, key, x, log_w, log_p) -> _Spec:
    r"""Self-normalized importance sampling for ``kl_forward``.

    ``grad KL(p || q) = -E_p[s(x)] ~= -sum_i wbar_i s(x_i)``, with
    ``wbar = softmax(log w)`` on stopped samples from ``q``.

    Consistent for ``grad KL(p || q)`` (a ratio estimator: bias ``O(1/K)``,
    ``-E_q[wn^2 (f - E_p f)] / K`` to first order with ``wn = p/q`` and
    ``f = -s``); invariant to the scale of ``p~``.

    References:
      Bornschein & Bengio (2015), Reweighted wake-sleep, ICLR (the q-update).
      Owen (2013), Monte Carlo theory, methods and examples, ch. 9.
    """
    w = jax.nn.softmax(log_w)
    return _Spec(_kl_forward_value(log_w), lambda q_: -w * q_.log_prob(x), _zero(log_w))


def reinforce(q, key, x, log_w, log_p) -> _Spec:
    r"""Score function (REINFORCE) for ``kl_reverse``.

    ``grad KL(q || p) = -E_q[r(x) s(x)]`` with reward ``r = log p~ - log q``
    (``E_q[s] = 0`` removes both ``log Z`` and the ``grad log q`` term);
    estimate ``-(1/K) sum_i r_i s(x_i)``.

    Unbiased for ``grad KL(q || p)``. Not scale invariant: multiplying ``p~``
    by ``c`` adds ``-log(c) mean_i s(x_i)`` (zero mean, nonzero variance).

    References:
      Williams (1992), Simple statistical gradient-following algorithms for
      connectionist reinforcement learning, Machine Learning 8.
      Ranganath, Gerrish & Blei (2014), Black box variational inference, AISTATS.
    """
    k = x.shape[0]
    return _Spec(_kl_reverse_value(log_w), lambda q_: -log_w * q_.log_prob(x) / k, _zero(log_w))


def reinforce_loo(q, key, x, log_w, log_p) -> _Spec:
    r"""REINFORCE with the leave-one-out baseline (RLOO) for ``kl_reverse``.

    Baseline ``b_i = mean_{j != i} r_j``; estimate
    ``-(1/K) sum_i (r_i - b_i) s(x_i)``. ``b_i`` is independent of ``x_i``, so
    it is unbiased for ``grad KL(q || p)``; needs ``K >= 2``. Invariant to the
    scale of ``p~`` (constants cancel in ``r_i - b_i``).

    References:
      Kool, van Hoof & Welling (2019), Buy 4 REINFORCE samples, get a baseline
      for free!, ICLR workshop DeepRLStructPred.
      Salimans & Knowles (2014), On using control variates with stochastic
      approximation for variational Bayes, arXiv:1401.1022.
    """
    k = x.shape[0]
    baseline = (jnp.sum(log_w) - log_w) / (k - 1)
    centred = log_w - baseline
    return _Spec(_kl_reverse_value(log_w), lambda q_: -centred * q_.log_prob(x) / k, _zero(log_w))


def reparam_kl(q, key, x, log_w, log_p) -> _Spec:
    r"""Reparameterization (pathwise) for ``kl_reverse``.

    ``z_i = loc + scale * eps_i``; estimate
    ``grad (1/K) sum_i [log q_phi(z_i) - log p~(z_i)]``, differentiating
    through ``z`` (``grad_x log p~`` by autodiff).

    Unbiased for ``grad KL(q || p)``; invariant to the scale of ``p~``.

    References:
      Kingma & Welling (2014), Auto-encoding variational Bayes, ICLR.
      Rezende, Mohamed & Wierstra (2014), Stochastic backpropagation and
      approximate inference in deep generative models, ICML.
    """
    k = x.shape[0]

    def terms(q_):
        z = q_.sample(key, k)
        return (q_.log_prob(z) - log_p(z)) / k

    return _Spec(_kl_reverse_value(log_w), terms, _zero(log_w))


def stl(q, key, x, log_w, log_p) -> _Spec:
    r"""Sticking the landing for ``kl_reverse``: ``reparam`` without the score term.

    ``grad (1/K) sum_i [log q_{stop(phi)}(z_i) - log p~(z_i)]`` with
    ``z_i = loc + scale * eps_i``: one `stop_gradient`, on the parameters of
    ``log q``, drops the zero-mean ``s(z_i)`` term.

    Unbiased for ``grad KL(q || p)``; zero variance when ``q = p``; invariant to
    the scale of ``p~``.

    References:
      Roeder, Wu & Duvenaud (2017), Sticking the landing: simple, lower-variance
      gradient estimators for variational inference, NeurIPS.
    """
    k = x.shape[0]

    def terms(q_):
        z = q_.sample(key, k)
        return (stop(q_).log_prob(z) - log_p(z)) / k

    return _Spec(_kl_reverse_value(log_w), terms, _zero(log_w))


def snis2(q, key, x, log_w, log_p) -> _Spec:
    r"""Squared self-normalized weights for ``chi2_forward``.

    ``grad log(1 + chi^2(p || q)) = -E_q[w^2 s] / E_q[w^2]
    ~= -sum_i w2_i s(x_i)`` with ``w2 = softmax(2 log w)``.

    Consistent for ``grad log(1 + chi^2(p || q))``, which is twice the gradient
    of CHIVI's upper bound ``CUBO_2 = log Z + log(1 + chi^2(p || q)) / 2``: with
    an unnormalized target this, not ``grad chi^2(p || q)``, is what can be
    estimated (the two differ by the factor ``1 + chi^2``). Bias ``O(1/K)``;
    invariant to the scale of ``p~``. Needs ``chi^2(p || q) < inf``.

    References:
      Dieng, Tran, Ranganath, Paisley & Blei (2017), Variational inference via
      chi upper bound minimization, NeurIPS.
      Ryu & Boyd (2014), Adaptive importance sampling via stochastic convex
      programming, arXiv:1412.4845.
    """
    w2 = jax.nn.softmax(2.0 * log_w)
    value = jnp.expm1(_log_mean_exp(2.0 * log_w) - 2.0 * _log_mean_exp(log_w))
    return _Spec(value, lambda q_: -w2 * q_.log_prob(x), _zero(log_w))


def score_chi2(q, key, x, log_w, log_p) -> _Spec:
    r"""Score function for ``chi2_reverse`` (the seed page's ``-exp(-r)`` weights).

    ``grad int q^2 / p~ = 2 E_q[(q / p~) s]``; estimate
    ``(2/K) sum_i exp(-log w_i) s(x_i)`` on stopped samples (the pathwise and
    score terms are equal, hence the 2). Written as
    ``mean(q/p~) * score_sn``, the factor applied after the sum (`_scale_grad`).

    Unbiased for ``grad chi^2(q || p) / Z``: for a normalized target (``Z = 1``)
    the gradient itself; multiplying ``p~`` by ``c`` divides it by ``c``.
    Infinite variance iff ``sigma^2 >= 3 s^2 / 2`` (``s^2`` the widest
    component's variance); infinite mean iff ``chi^2(q || p) = inf``.

    References:
      Dieng et al. (2017), Variational inference via chi upper bound
      minimization, NeurIPS (chi-square VI with score-function gradients).
      Ranganath, Gerrish & Blei (2014), Black box variational inference, AISTATS.
    """
    v = jax.nn.softmax(-log_w)
    return _Spec(
        _chi2_reverse_value(log_w), lambda q_: 2.0 * v * q_.log_prob(x), _log_mean_exp(-log_w)
    )


def score_sn(q, key, x, log_w, log_p) -> _Spec:
    r"""Self-normalized score function for ``chi2_reverse``.

    ``grad log(1 + chi^2(q || p)) = 2 E_q[(q/p) s] / E_q[q/p]
    ~= 2 sum_i v_i s(x_i)`` with ``v = softmax(-log w)``.

    Consistent for ``grad log(1 + chi^2(q || p))`` (``= grad D_2(q || p)``, the
    Renyi divergence of order 2), bias ``O(1/K)``; invariant to the scale of
    ``p~``. Equals ``score / mean_i(q/p~)(x_i)``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS
      (the VR bound's self-normalized weights, alpha = 2).
    """
    v = jax.nn.softmax(-log_w)
    return _Spec(_chi2_reverse_value(log_w), lambda q_: 2.0 * v * q_.log_prob(x), _zero(log_w))


def reparam_chi2(q, key, x, log_w, log_p) -> _Spec:
    r"""Reparameterization for ``chi2_reverse``.

    ``int q^2 / p~ = E_eps[q_phi(z) / p~(z)]`` with ``z = loc + scale * eps``;
    estimate ``grad (1/K) sum_i exp(log q_phi(z_i) - log p~(z_i))`` through
    ``z`` and ``q_phi``, the common factor ``mean(q/p~)`` applied after the sum.

    Unbiased for ``grad chi^2(q || p) / Z`` (as ``score``); same infinite-variance
    condition ``sigma^2 >= 3 s^2 / 2``.

    References:
      Kingma & Welling (2014), Auto-encoding variational Bayes, ICLR.
      Dieng et al. (2017), Variational inference via chi upper bound
      minimization, NeurIPS (reparameterized chi-square gradients).
    """
    k = x.shape[0]
    log_scale = _log_mean_exp(-log_w)

    def terms(q_):
        z = q_.sample(key, k)
        return jnp.exp(q_.log_prob(z) - log_p(z) - log_scale) / k

    return _Spec(_chi2_reverse_value(log_w), terms, log_scale)


# --- doubly reparameterized gradients ------------------------------------------


def snis_dreg(q, key, x, log_w, log_p) -> _Spec:
    r"""Doubly reparameterized SNIS for ``kl_forward`` (the RWS wake-phi DReG).

    With ``z_i = loc + scale * eps_i`` and ``wbar = softmax(log w)``, the score
    identity ``E_q[f(z) s(z)] = E_eps[f'(z) dz/dphi]`` applied to ``f = wbar_i``
    as a function of ``z_i`` (others and the ``phi`` inside ``w`` held fixed;
    ``d wbar_i / d z_i = (wbar_i - wbar_i^2) d log w_i / d z_i``) gives
    ``E[sum_i wbar_i s(z_i)] = E[sum_i (wbar_i - wbar_i^2) (d log w_i/dz_i) dz_i/dphi]``.
    Estimate ``-sum_i (wbar_i - wbar_i^2) grad_phi log w_{stop(phi)}(z_i(phi))``:
    ``log w = log p~ - log q`` with ``q``'s parameters stopped, differentiated
    through ``z`` only.

    Its mean equals ``snis``'s at every ``K`` (the identity is exact), so it is
    consistent for ``grad KL(p || q)`` with exactly ``snis``'s ``O(1/K)`` bias
    and changes only the variance; at ``K = 1`` it is zero, as ``snis``'s mean
    is. Invariant to the scale of ``p~``; differentiates ``log p~`` in ``x``.

    References:
      Tucker, Lawson, Gu & Maddison (2019), Doubly reparameterized gradient
      estimators for Monte Carlo objectives, ICLR (the RWS wake-phi update).
    """
    k = x.shape[0]
    w = jax.nn.softmax(log_w)

    def terms(q_):
        z = q_.sample(key, k)
        return -(w - w**2) * (log_p(z) - stop(q_).log_prob(z))

    return _Spec(_kl_forward_value(log_w), terms, _zero(log_w))


def iwae(q, key, x, log_w, log_p) -> _Spec:
    r"""Reparameterized gradient of the negative importance-weighted bound (under ``kl_reverse``).

    ``L_K = E[log (1/K) sum_i w_i]`` with ``z_i = loc + scale * eps_i``; estimate
    ``-grad_phi log mean_i w_i = -sum_i wbar_i grad_phi log w_i`` (the total
    derivative, through ``z_i`` and through ``q_phi``).

    Unbiased for ``-grad L_K``. ``log Z - L_K = KL(qbar_K || pbar_K)``, a reverse
    KL on the extended space (``qbar_K = prod_i q(z_i)``,
    ``pbar_K = (1/K) sum_i p(z_i) prod_{j != i} q(z_j)``), which is
    ``KL(q || p)`` only at ``K = 1`` (where this equals ``reparam``). For
    ``K > 1`` it is not ``grad KL(q || p)``: ``log Z - L_K ~ chi^2(p || q) / (2K)``
    as ``K -> inf``, so the gradient shrinks like ``1/K`` and turns mass-covering.
    `divjax.grad_stats` compares it with ``grad KL(q || p)``; the bias it reports
    for ``K > 1`` is the objective's, not the estimator's. Invariant to the scale
    of ``p~``.

    References:
      Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders, ICLR.
      Domke & Sheldon (2018), Importance weighting and variational inference,
      NeurIPS (the extended-space KL and the ``1/K`` gap).
      Rainforth et al. (2018), Tighter variational bounds are not necessarily
      better, ICML (the inference-network SNR decays with K).
    """
    k = x.shape[0]
    w = jax.nn.softmax(log_w)

    def terms(q_):
        z = q_.sample(key, k)
        return -w * (log_p(z) - q_.log_prob(z))

    return _Spec(_kl_reverse_value(log_w), terms, _zero(log_w))


def iwae_dreg(q, key, x, log_w, log_p) -> _Spec:
    r"""Doubly reparameterized gradient of the negative importance-weighted bound.

    ``grad L_K = E[sum_i wbar_i^2 (d log w_i / d z_i) dz_i/dphi]``: the score
    term of ``iwae`` rewritten by the same identity as in `snis_dreg`. Estimate
    ``-sum_i wbar_i^2 grad_phi log w_{stop(phi)}(z_i(phi))``.

    Unbiased for ``-grad L_K``, the same estimand as ``iwae`` at every ``K``
    (see `iwae`: ``grad KL(q || p)`` at ``K = 1``, where this equals ``stl``;
    for ``K > 1`` the gradient of an extended-space KL that vanishes like
    ``1/K``). Unlike ``iwae`` its SNR does not decay with ``K``. Invariant to
    the scale of ``p~``.

    References:
      Tucker, Lawson, Gu & Maddison (2019), Doubly reparameterized gradient
      estimators for Monte Carlo objectives, ICLR.
    """
    k = x.shape[0]
    w = jax.nn.softmax(log_w)

    def terms(q_):
        z = q_.sample(key, k)
        return -(w**2) * (log_p(z) - stop(q_).log_prob(z))

    return _Spec(_kl_reverse_value(log_w), terms, _zero(log_w))


# --- control variates with a batch-estimated optimal coefficient ---------------


def _column(f: jax.Array, h: jax.Array) -> jax.Array:
    """``(K,)`` ``f`` reshaped to broadcast against ``(K, ...)`` ``h``."""
    return f.reshape(f.shape + (1,) * (h.ndim - 1))


def _loo_coefficient(f: jax.Array, h: jax.Array) -> jax.Array:
    r"""``a_i = sum_{j != i} f_j h_j^2 / sum_{j != i} h_j^2`` per parameter, shape of ``h``.

    The optimal scalar coefficient of the control variate ``h = s_d`` for the
    draw ``f s_d``: ``Cov(f s_d, s_d) / Var(s_d) = E[f s_d^2] / E[s_d^2]``
    (``E_q[s] = 0`` is known, so no centring), estimated without sample ``i``.
    ``f`` is ``(K,)``, ``h`` is ``(K, ...)`` (one column per parameter entry).
    """
    f = _column(f, h)
    h2 = h**2
    num = jnp.sum(f * h2, axis=0) - f * h2
    den = jnp.sum(h2, axis=0) - h2
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _scores(q, x: jax.Array):
    r"""Per-sample scores ``grad_phi log q_phi(x_i)``: ``q``'s pytree with ``(K, ...)`` leaves."""
    return jax.vmap(jax.grad(lambda q_, xi: q_.log_prob(xi)), in_axes=(None, 0))(stop(q), x)


def _linear_terms(coef):
    r"""Per-sample terms ``sum_j coef_ij phi_j``, whose gradient in ``phi`` is ``coef_i``."""

    def terms(q_):
        per_leaf = jax.tree_util.tree_map(
            lambda c, a: jnp.sum((c * a).reshape(c.shape[0], -1), axis=-1), coef, q_
        )
        return sum(jax.tree_util.tree_leaves(per_leaf))

    return terms


def _cv_coefficients(f: jax.Array, scores, factor: float):
    r"""``factor * (f_i - a_{-i,j}) s_j(x_i)`` per sample ``i`` and parameter entry ``j``."""
    return jax.tree_util.tree_map(
        lambda h: factor * (_column(f, h) - _loo_coefficient(f, h)) * h, scores
    )


def reinforce_cv(q, key, x, log_w, log_p) -> _Spec:
    r"""REINFORCE with the score as control variate, optimal coefficient per parameter.

    For each parameter entry ``j`` the draw is ``f_i = r_i s_j(x_i)`` (reward
    ``r = log p~ - log q``) and the control variate ``h_i = s_j(x_i)``
    (``E_q[s] = 0``). The optimal scalar coefficient
    ``a* = Cov(f, h) / Var(h) = E_q[r s_j^2] / E_q[s_j^2]`` is estimated from
    the batch leaving sample ``i`` out (`_loo_coefficient`), giving
    ``-(1/K) sum_i (r_i - a_{-i,j}) s_j(x_i)``: REINFORCE with the
    minimum-variance (per-parameter) baseline. The scores come from
    ``jax.grad`` of ``q.log_prob``, so every family works (in ``d`` dimensions
    one coefficient per entry of ``loc``, ``log_scale``, ``chol``, ``logits``).

    Unbiased for ``grad KL(q || p)``: ``a_{-i}`` is independent of ``x_i`` and
    ``E_q[s] = 0`` (estimating ``a`` with sample ``i`` included would add an
    ``O(1/K)`` bias). Needs ``K >= 2``. Invariant to the scale of ``p~``
    (a constant added to ``r`` shifts ``a`` by the same constant).

    References:
      Mohamed, Rosca, Figurnov & Mnih (2020), Monte Carlo gradient estimation
      in machine learning, JMLR 21 (control variates, optimal coefficient).
      Weaver & Tao (2001), The optimal reward baseline for gradient-based
      reinforcement learning, UAI.
    """
    coef = _cv_coefficients(log_w, _scores(q, x), -1.0 / x.shape[0])
    return _Spec(_kl_reverse_value(log_w), _linear_terms(coef), _zero(log_w))


def score_cv(q, key, x, log_w, log_p) -> _Spec:
    r"""The chi-square score estimator with the score as control variate, optimal coefficient.

    ``score`` averages ``f_i = 2 u_i s_d(x_i)`` with ``u = q / p~``; with the
    control variate ``s_d`` and the leave-one-out optimal coefficient
    ``a_{-i} = sum_{j != i} u_j s_d(x_j)^2 / sum_{j != i} s_d(x_j)^2``, the
    estimate is ``(2/K) sum_i (u_i - a_{-i,d}) s_d(x_i)``, the common factor
    ``mean(q/p~)`` applied after the sum (`_scale_grad`).

    Unbiased for ``grad chi^2(q || p) / Z`` (as ``score``; ``a_{-i}`` is
    independent of ``x_i``); needs ``K >= 2``. The control variate does not
    cure ``score``'s infinite variance for ``sigma^2 >= 3 s^2 / 2``.

    References:
      Mohamed, Rosca, Figurnov & Mnih (2020), Monte Carlo gradient estimation
      in machine learning, JMLR 21 (control variates, optimal coefficient).
      Dieng et al. (2017), Variational inference via chi upper bound
      minimization, NeurIPS.
    """
    coef = _cv_coefficients(jax.nn.softmax(-log_w), _scores(q, x), 2.0)
    return _Spec(_chi2_reverse_value(log_w), _linear_terms(coef), _log_mean_exp(-log_w))


# --- Markovian score climbing (stateful; the kernel is in divjax.msc) ----------


def msc(q, draw: _msc.CISDraw) -> _Spec:
    r"""Markovian score climbing for ``kl_forward``: the score at the resampled particle.

    One CIS step (`divjax.msc.cis_kernel`) from the retained ``z`` gives
    particles ``x`` (``x_0 = z``) and an index ``J``; estimate ``-s(x_J)``.

    At a fixed ``q``, if ``z ~ p`` (the kernel's stationary distribution) then
    ``x_J ~ p``, so the estimate is unbiased for ``grad KL(p || q)`` whatever
    ``K >= 2``; along a fit the chain lags ``q`` and stochastic approximation
    with Markovian noise converges to the forward-KL optimum (Robbins-Monro
    step sizes), not to a ``K``-biased point. Its variance at stationarity is
    ``Var_p(s)`` at every ``K``: ``K`` only speeds up mixing. Invariant to the
    scale of ``p~``.

    References:
      Naesseth, Lindsten & Blei (2020), Markovian score climbing: variational
      inference with KL(p || q), NeurIPS.
    """
    x, log_w = draw.samples, draw.log_weights
    pick = jax.nn.one_hot(draw.index, x.shape[0], dtype=log_w.dtype)
    return _Spec(_kl_forward_value(log_w), lambda q_: -pick * q_.log_prob(x), _zero(log_w))


def msc_rb(q, draw: _msc.CISDraw) -> _Spec:
    r"""Rao-Blackwellized Markovian score climbing for ``kl_forward``.

    ``E[s(x_J) | x] = sum_i wbar_i s(x_i)``: the ``snis`` estimate on the CIS
    particles (the retained one included); the chain still moves to ``x_J``.
    Unbiased for ``grad KL(p || q)`` at the chain's stationarity, like `msc`,
    with lower variance (it shrinks with ``K``). Invariant to the scale of ``p~``.

    References:
      Naesseth, Lindsten & Blei (2020), Markovian score climbing: variational
      inference with KL(p || q), NeurIPS (the Rao-Blackwellized gradient).
    """
    x, log_w = draw.samples, draw.log_weights
    w = jax.nn.softmax(log_w)
    return _Spec(_kl_forward_value(log_w), lambda q_: -w * q_.log_prob(x), _zero(log_w))


def _exact(name, target):
    if isinstance(target, MvGaussianMixture):
        # The d-dimensional exact routes live downstream of this module.
        from divjax.multivariate import exact_fns

        value_fn, grad_fn = exact_fns(name, target)
    else:
        value_fn = functools.partial(divergence, name, target)
        grad_fn = functools.partial(exact_grad, name, target)

    def spec(q, key, x, log_w, log_p) -> _Spec:
        r"""The exact gradient as a linear surrogate ``stop(g) . phi`` (loss = the divergence)."""
        value = stop(value_fn(q))
        inf = jnp.isinf(value)
        k = x.shape[0]
        g = jax.tree_util.tree_map(
            lambda a: jnp.broadcast_to(jnp.where(inf, 1.0, a) / k, (k,) + a.shape),
            stop(grad_fn(q)),
        )
        log_scale = jnp.where(inf, jnp.inf, 0.0).astype(log_w.dtype)
        return _Spec(value, _linear_terms(g), log_scale)

    return spec


_ESTIMATOR_FNS = {
    ("kl_forward", "snis"): snis,
    ("kl_reverse", "reinforce"): reinforce,
    ("kl_reverse", "reinforce_loo"): reinforce_loo,
    ("kl_reverse", "reparam"): reparam_kl,
    ("kl_reverse", "stl"): stl,
    ("chi2_forward", "snis2"): snis2,
    ("chi2_reverse", "score"): score_chi2,
    ("chi2_reverse", "score_sn"): score_sn,
    ("chi2_reverse", "reparam"): reparam_chi2,
    ("kl_forward", "snis_dreg"): snis_dreg,
    ("kl_reverse", "reinforce_cv"): reinforce_cv,
    ("kl_reverse", "iwae"): iwae,
    ("kl_reverse", "iwae_dreg"): iwae_dreg,
    ("chi2_reverse", "score_cv"): score_cv,
}

_STATEFUL_FNS = {("kl_forward", "msc"): msc, ("kl_forward", "msc_rb"): msc_rb}


def min_samples(estimator: str) -> int:
    """The smallest ``num_samples`` the estimator accepts (1 for most, 2 for some)."""
    return _MIN_SAMPLES.get(estimator, 1)


def check_estimator(name: str, estimator: str, target, num_samples) -> None:
    """Raises `ValueError` (naming the valid choices) on any invalid combination."""
    check_divergence(name)
    valid = ESTIMATORS[name]
    if estimator not in valid:
        raise ValueError(
            f"unknown estimator {estimator!r} for divergence {name!r}; "
            f"valid choices: {', '.join(valid)}"
        )
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    need = min_samples(estimator)
    if num_samples < need:
        raise ValueError(f"estimator {estimator!r} needs num_samples >= {need}, got {num_samples}")
    if estimator == "exact" and not _is_mixture(target):
        raise ValueError(
            "estimator 'exact' needs a divjax.GaussianMixture target; a callable "
            f"log density only supports Monte Carlo estimators: "
            f"{', '.join(e for e in valid if e != 'exact')}"
        )
    if not _is_mixture(target) and not callable(target):
        raise ValueError(
            f"target must be a divjax.GaussianMixture or a callable log p~(x), got {target!r}"
        )
    if estimator == "exact" and isinstance(target, MvGaussianMixture):
        from divjax.multivariate import check_exact  # downstream of this module

        check_exact(name, target)


def _is_mixture(target) -> bool:
    return isinstance(target, (GaussianMixture, MvGaussianMixture))


def check_q(estimator: str, target: Target, q, *, pathwise: bool | None = None) -> None:
    r"""Raises `ValueError` where ``q``'s family does not fit the target or the estimator.

    A 1-D `GaussianMixture` takes a `Gaussian` ``q``; a d-dimensional one a
    `DiagGaussian`, `FullRankGaussian` or `MixtureGaussian` of the same ``d``;
    a `MixtureGaussian` only the estimators in `MIXTURE_ESTIMATORS` (or, with
    ``pathwise`` given, those that do not differentiate through samples).
    Shapes and types are static, so this runs at trace time, before any
    computation.
    """
    if pathwise is None:
        pathwise = estimator not in MIXTURE_ESTIMATORS
    one_d = isinstance(q, Gaussian)
    if isinstance(target, GaussianMixture) and not one_d:
        raise ValueError(
            f"a 1-D GaussianMixture target needs a divjax.Gaussian q, got {type(q).__name__}; "
            "give the target (M, d) locs for d dimensions"
        )
    if isinstance(target, MvGaussianMixture):
        if one_d:
            raise ValueError(
                f"a d = {target.dim} GaussianMixture target needs a DiagGaussian, "
                f"FullRankGaussian or MixtureGaussian q, got Gaussian"
            )
        if q.dim != target.dim:
            raise ValueError(f"dimension mismatch: p has d = {target.dim}, q has d = {q.dim}")
    if isinstance(q, MixtureGaussian) and pathwise:
        raise ValueError(
            f"estimator {estimator!r} differentiates through samples, which a MixtureGaussian "
            "q reparameterizes only within components (biased for its logits); use a "
            f"score-function or importance-sampling estimator ({', '.join(MIXTURE_ESTIMATORS)})"
        )


def _assemble(q: Gaussian, spec: _Spec, x: jax.Array, log_w: jax.Array):
    """``(loss, SurrogateAux)`` from a `_Spec` and the (stopped) samples it saw."""
    total = jnp.sum(spec.terms(_scale_grad(q, spec.log_scale)))
    loss = spec.value + (total - stop(total))
    scale = jnp.exp(spec.log_scale)
    per_sample = jax.jacfwd(spec.terms)(stop(q))
    contributions = jax.tree_util.tree_map(lambda c: scale * c, per_sample)
    w = jax.nn.softmax(log_w)
    w2 = jax.nn.softmax(2.0 * log_w)
    aux = SurrogateAux(
        samples=x,
        log_weights=log_w,
        weights=w,
        ess=1.0 / jnp.sum(w**2),
        ess_sq=1.0 / jnp.sum(w2**2),
        contributions=stop(contributions),
    )
    return loss, aux


def _log_p(target: Target) -> Callable[[jax.Array], jax.Array]:
    return target.log_prob if _is_mixture(target) else target


def surrogate(
    name: str, estimator: str, target: Target, num_samples: int
) -> Callable[[Gaussian, jax.Array], tuple[jax.Array, SurrogateAux]]:
    r"""A surrogate loss whose gradient is the ``estimator``'s estimate of ``grad D``.

    Args:
      name: the divergence, one of `divjax.DIVERGENCES`.
      estimator: one of ``ESTIMATORS[name]``; ``"exact"`` routes to
        `divjax.exact_grad` so exact and Monte Carlo runs share one code path.
      target: a `GaussianMixture` (its unnormalized ``log_prob`` is used), in
        1-D or ``d`` dimensions, or a callable ``log_p(x)`` mapping ``(K,)``
        (``(K, d)``) to ``(K,)``, unnormalized and differentiable (``reparam``,
        ``stl`` and the DReG estimators differentiate it).
      num_samples: ``K >= min_samples(estimator)`` draws per estimate; static,
        it fixes shapes. ``"exact"`` still draws ``K`` samples for ``aux``.

    Returns:
      ``loss_fn(q, key) -> (loss, aux)`` for a single (unbatched) ``q``; ``vmap``
      it for batches. ``q`` is a `Gaussian` in 1-D; in ``d`` dimensions a
      `DiagGaussian`, `FullRankGaussian` or `MixtureGaussian` (the last with
      `MIXTURE_ESTIMATORS` only; see `check_q`).
      ``jax.grad(loss_fn, has_aux=True)(q, key)`` returns ``(estimate, aux)``,
      the estimate a pytree like ``q`` and ``aux`` a `SurrogateAux`. ``loss``
      is a consistent Z-free estimate of the divergence (exactly
      `divjax.divergence` for ``"exact"``); see the module docstring.
      Supports first-order reverse-mode differentiation (``jax.grad``). For the
      stateful ``msc`` and ``msc_rb`` each call starts a fresh chain (one
      kernel step from a draw of ``q``); use `stateful_surrogate` to carry it.

    Raises:
      ValueError: unknown divergence or estimator (naming the valid choices),
        ``num_samples`` not an int or too small, ``"exact"`` without a
        `GaussianMixture` or where nothing is exact in the target's dimension
        (`divjax.multivariate.EXACTNESS`). Raised here, before any tracing; a
        ``q`` that does not fit (`check_q`) raises when ``loss_fn`` is traced.
    """
    check_estimator(name, estimator, target, num_samples)
    k = int(num_samples)
    if (name, estimator) in _STATEFUL_FNS:
        chain = stateful_surrogate(name, estimator, target, k)

        def one_step(q: Gaussian, key: jax.Array) -> tuple[jax.Array, SurrogateAux]:
            key_init, key_step = jax.random.split(key)
            loss, (aux, _) = chain.loss_fn(q, key_step, chain.init(q, key_init))
            return loss, aux

        return one_step

    log_p = _log_p(target)
    make = _exact(name, target) if estimator == "exact" else _ESTIMATOR_FNS[(name, estimator)]

    def loss_fn(q: Gaussian, key: jax.Array) -> tuple[jax.Array, SurrogateAux]:
        check_q(estimator, target, q)
        x = stop(q.sample(key, k))
        log_w = stop(log_p(x) - q.log_prob(x))
        return _assemble(q, make(q, key, x, log_w, log_p), x, log_w)

    return loss_fn


# ---------------------------------------------------------------------------
# The estimator-state seam: every estimator is stateful, stateless ones with ().


class Stateful(NamedTuple):
    r"""An estimator whose state is carried between optimizer steps.

    Every estimator has this form; a stateless one has state ``()``. The state
    is a pytree of stopped arrays (`divjax.msc.MSCState` for ``msc``), so
    `divjax.fit` and `divjax.sweep` carry it through ``lax.scan`` and ``vmap``
    in `divjax.fit.FitState.est_state` without knowing what it is.

    Attributes:
      init: ``(q0, key) -> state``.
      loss_fn: ``(q, key, state) -> (loss, (aux, new_state))``;
        ``jax.grad(loss_fn, has_aux=True)(q, key, state)`` returns
        ``(estimate, (aux, new_state))``, ``loss`` and ``aux`` as in `surrogate`.
    """

    init: Callable[[Gaussian, jax.Array], object]
    loss_fn: Callable[[Gaussian, jax.Array, object], tuple[jax.Array, tuple[SurrogateAux, object]]]


def _no_state(q: Gaussian, key: jax.Array) -> tuple[()]:
    return ()


def stateless(loss_fn: Callable[[Gaussian, jax.Array], tuple[jax.Array, SurrogateAux]]) -> Stateful:
    """Wraps a ``loss_fn(q, key) -> (loss, aux)`` as a `Stateful` with state ``()``."""

    def with_state(q, key, state):
        loss, aux = loss_fn(q, key)
        return loss, (aux, state)

    return Stateful(_no_state, with_state)


def stateful_surrogate(name: str, estimator: str, target: Target, num_samples: int) -> Stateful:
    r"""`surrogate` for any estimator, with its state carried explicitly.

    For stateless estimators this is `stateless` of `surrogate` (state ``()``,
    the same numbers for the same keys). For ``msc`` and ``msc_rb`` the state
    is `divjax.msc.MSCState`: ``init`` draws the chain's start from ``q0``, and
    each ``loss_fn`` call applies one CIS kernel step at ``q``
    (`divjax.msc.cis_kernel`), returns the estimate at the new particles and
    the resampled particle as the new state.

    Args and raises: as `surrogate`.
    """
    check_estimator(name, estimator, target, num_samples)
    if (name, estimator) not in _STATEFUL_FNS:
        return stateless(surrogate(name, estimator, target, num_samples))
    log_p = _log_p(target)
    make = _STATEFUL_FNS[(name, estimator)]
    k = int(num_samples)

    def loss_fn(q: Gaussian, key: jax.Array, state: _msc.MSCState):
        check_q(estimator, target, q)
        draw = _msc.cis_kernel(key, q, state, log_p, k)
        loss, aux = _assemble(q, make(q, draw), draw.samples, draw.log_weights)
        return loss, (aux, _msc.MSCState(draw.samples[draw.index]))

    return Stateful(_msc.init, loss_fn)


__all__ = [
    "ESTIMATORS",
    "MIXTURE_ESTIMATORS",
    "Stateful",
    "SurrogateAux",
    "check_estimator",
    "check_q",
    "min_samples",
    "stateful_surrogate",
    "stateless",
    "surrogate",
]
