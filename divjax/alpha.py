r"""Alpha-divergences and friends between a 1-D Gaussian mixture ``p`` and ``q = N(mu, sigma^2)``.

Everything reduces to one integral, computed in log space by the quadrature
of `divjax.quadrature` (nodes under ``stop_gradient``, so ``jax.grad`` of a
value is the exact gradient):

``I(a) = int q^a p^(1 - a) dx``  (normalized ``p``; ``I(0) = I(1) = 1``).

- ``renyi_reverse`` ``D_alpha(q || p) = log I(alpha) / (alpha - 1)``
  (Li & Turner 2016's VR bound is ``log Z - D_alpha(q || p)``);
- ``renyi_forward`` ``D_alpha(p || q) = log I(1 - alpha) / (alpha - 1)``;
- ``amari``         ``A_alpha(p || q) = (1 - I(1 - alpha)) / (alpha (1 - alpha))``;
- ``hellinger``     ``H^2(p, q) = 1 - I(1/2) = A_{1/2} / 4`` (squared Hellinger);
- ``jensen_shannon`` ``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``.

Limits (checked in the tests): Renyi ``alpha -> 1`` is the KL in the same
direction and ``alpha = 2`` is ``log(1 + chi^2)``; Amari ``alpha -> 1`` is
``KL(p || q)``, ``alpha -> 0`` is ``KL(q || p)``, ``alpha = 2`` is
``chi^2(p || q) / 2`` and ``alpha = -1`` is ``chi^2(q || p) / 2``. The exact
orders ``alpha = 1`` (Renyi) and ``alpha in {0, 1}`` (Amari) return the KLs.

Infinite regions. With ``s^2`` the widest component's variance, ``p``'s tails
are ``~ exp(-x^2 / (2 s^2))`` and the integrand of ``I(a)`` decays iff
``a / sigma^2 + (1 - a) / s^2 > 0``:

- ``0 <= a <= 1``: always finite;
- ``a > 1``: finite iff ``sigma^2 < a s^2 / (a - 1)`` (``a = 2``: chi2_reverse's
  ``sigma^2 < 2 s^2``);
- ``a < 0``: finite iff ``sigma^2 > -a s^2 / (1 - a)`` (``a = -1``:
  chi2_forward's ``sigma^2 > s^2 / 2``).

Where ``I = inf`` Renyi (order ``alpha > 1``) and Amari are ``+inf`` and so is
every component of their gradient. Quadrature anchors sit at the centres of
``q^a N_k^(1 - a)`` (precision ``a / sigma^2 + (1 - a) / s_k^2``), which bound
the integrand.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import _checks, quadrature
from divjax import estimators as _est
from divjax.divergences import divergence
from divjax.families import Gaussian
from divjax.mv_families import MvGaussianMixture
from divjax.targets import GaussianMixture

ALPHA_DIVERGENCES = ("renyi_forward", "renyi_reverse", "amari", "hellinger", "jensen_shannon")
_NEEDS_ALPHA = ("renyi_forward", "renyi_reverse", "amari")
_LOG2 = math.log(2.0)


def _check(kind: str, alpha, p, q) -> None:
    _checks.check_choice(kind, ALPHA_DIVERGENCES, "alpha-divergence")
    if kind in _NEEDS_ALPHA:
        if alpha is None or not math.isfinite(float(alpha)):
            raise ValueError(f"{kind} needs a finite float alpha, got {alpha!r}")
        if kind.startswith("renyi") and float(alpha) <= 0:
            raise ValueError(f"{kind}: the Renyi order alpha must be > 0, got {alpha}")
    if not isinstance(p, GaussianMixture):
        raise ValueError(f"p must be a divjax.GaussianMixture, got {type(p).__name__}")
    if not isinstance(q, Gaussian):
        raise ValueError(f"q must be a divjax.Gaussian, got {type(q).__name__}")


def _exponent(kind: str, alpha: float) -> float | None:
    """The ``a`` of ``I(a)`` behind ``kind`` (None where no ``I`` is involved)."""
    if kind == "renyi_reverse":
        return alpha
    if kind in ("renyi_forward", "amari"):
        return 1.0 - alpha
    if kind == "hellinger":
        return 0.5
    return None


def integral_is_infinite(p: GaussianMixture, q: Gaussian, a: float) -> jax.Array:
    r"""Whether ``I(a) = int q^a p^(1 - a) = inf`` (see the module docstring)."""
    smax2 = jnp.max(p.scales**2, axis=-1)
    if a > 1:
        return q.variance >= a * smax2 / (a - 1.0)
    if a < 0:
        return q.variance <= -a * smax2 / (1.0 - a)
    return jnp.zeros(jnp.shape(q.loc), dtype=bool)


def _safe(p, q, a):
    # sigma = s_max is inside the finite region for every a (see the docstring).
    inf = integral_is_infinite(p, q, a)
    safe = jnp.log(jnp.max(p.scales, axis=-1))
    return Gaussian._make((q.loc, jnp.where(inf, safe, q.log_scale))), inf


def log_integral(p: GaussianMixture, q: Gaussian, a: float) -> jax.Array:
    r"""``log I(a) = log int q^a p^(1 - a) dx`` (normalized ``p``), ``+inf`` where infinite."""
    q_safe, inf = _safe(p, q, a)
    lam = a / q_safe.variance + (1.0 - a) / p.scales**2
    pos = lam > 0
    safe_lam = jnp.where(pos, lam, 1.0)
    centre = (a * q_safe.loc / q_safe.variance + (1.0 - a) * p.locs / p.scales**2) / safe_lam
    centre = jnp.where(pos, centre, q_safe.loc)
    width = jnp.where(pos, 1.0 / jnp.sqrt(safe_lam), q_safe.scale)
    x, w = quadrature.nodes(p, q_safe, centre, width)
    log_f = a * q_safe.log_prob(x) + (1.0 - a) * p.normalized_log_prob(x)
    return jnp.where(inf, jnp.inf, logsumexp(log_f, b=w))


def _jensen_shannon(p, q):
    x, w = quadrature.nodes(p, q)
    lp, lq = p.normalized_log_prob(x), q.log_prob(x)
    lm = jnp.logaddexp(lp, lq) - _LOG2
    return 0.5 * jnp.sum(w * (jnp.exp(lp) * (lp - lm) + jnp.exp(lq) * (lq - lm)))


def alpha_divergence(kind: str, alpha: float | None, p: GaussianMixture, q: Gaussian) -> jax.Array:
    r"""The exact value of ``kind`` (one of `ALPHA_DIVERGENCES`) at order ``alpha``.

    Args:
      kind: ``renyi_forward`` ``D_alpha(p || q)``, ``renyi_reverse``
        ``D_alpha(q || p)``, ``amari`` ``A_alpha(p || q)``, ``hellinger``
        (squared, ``alpha`` ignored) or ``jensen_shannon`` (``alpha`` ignored).
      alpha: a static Python float; Renyi needs ``alpha > 0``.
      p: the target (normalized internally).
      q: a scalar `Gaussian` (vmap for batches).

    Returns:
      The value; ``+inf`` where infinite (module docstring). Renyi at
      ``alpha = 1`` and Amari at ``alpha in {0, 1}`` are the KLs.
    """
    _check(kind, alpha, p, q)
    if kind == "jensen_shannon":
        return _jensen_shannon(p, q)
    if kind == "renyi_reverse" and alpha == 1:
        return divergence("kl_reverse", p, q)
    if kind == "renyi_forward" and alpha == 1:
        return divergence("kl_forward", p, q)
    if kind == "amari" and alpha in (0, 1):
        return divergence("kl_reverse" if alpha == 0 else "kl_forward", p, q)
    a = _exponent(kind, None if alpha is None else float(alpha))
    log_i = log_integral(p, q, a)
    if kind.startswith("renyi"):
        return log_i / (alpha - 1.0)
    if kind == "hellinger":
        return -jnp.expm1(log_i)
    return -jnp.expm1(log_i) / (alpha * (1.0 - alpha))


def alpha_grad(kind: str, alpha: float | None, p: GaussianMixture, q: Gaussian) -> Gaussian:
    r"""``jax.grad`` of `alpha_divergence` in ``(loc, log_scale)``; ``+inf`` where infinite.

    Amari and Hellinger are differentiated through ``log I`` and rescaled in
    log space (``grad I = I grad log I``), so an ``I`` beyond the float range
    gives ``+-inf``, never NaN.
    """
    _check(kind, alpha, p, q)
    a = _exponent(kind, None if alpha is None else float(alpha))
    if a is None or a in (0.0, 1.0):
        return jax.grad(lambda q_: alpha_divergence(kind, alpha, p, q_))(q)
    inf = integral_is_infinite(p, q, a)

    def log_i(q_):
        return log_integral(p, _safe(p, q_, a)[0], a)

    value, g = jax.value_and_grad(log_i)(q)
    if kind.startswith("renyi"):
        g = jax.tree_util.tree_map(lambda v: v / (alpha - 1.0), g)
    else:
        c = -1.0 if kind == "hellinger" else -1.0 / (alpha * (1.0 - alpha))
        g = jax.tree_util.tree_map(
            lambda v: jnp.sign(c * v) * jnp.exp(value + jnp.log(jnp.abs(c * v))), g
        )
    return jax.tree_util.tree_map(lambda v: jnp.where(inf, jnp.inf, v), g)


# ---------------------------------------------------------------------------
# Monte Carlo surrogates (the `divjax.surrogate` contract)

ALPHA_ESTIMATORS: dict[str, tuple[str, ...]] = {
    "renyi_reverse": ("sn", "reparam"),
    "renyi_forward": ("sn", "reparam"),
    "amari": ("score", "reparam"),
    "hellinger": ("score", "reparam"),
    "jensen_shannon": ("score", "reparam"),
}
# Amari, Hellinger and JS are linear in p: their estimators need a NORMALIZED p.
_NORMALIZED = ("amari", "hellinger", "jensen_shannon")


def _renyi_reverse_value(alpha, log_w):
    lme = _est._log_mean_exp
    if alpha == 1:
        return -jnp.mean(log_w) + lme(log_w)
    return lme((1.0 - alpha) * log_w) / (alpha - 1.0) + lme(log_w)


def _renyi_forward_value(alpha, log_w):
    lme = _est._log_mean_exp
    if alpha == 1:
        return jnp.sum(jax.nn.softmax(log_w) * log_w) - lme(log_w)
    return (lme(alpha * log_w) - alpha * lme(log_w)) / (alpha - 1.0)


def _amari_value(alpha, log_w):
    if alpha == 0:
        return -jnp.mean(log_w)
    if alpha == 1:
        return jnp.mean(jnp.exp(log_w) * log_w)
    return -jnp.expm1(_est._log_mean_exp(alpha * log_w)) / (alpha * (1.0 - alpha))


def _js_terms(log_w):
    r"""``f`` with ``JS = E_q[f(log w)]``: ``(log 2 q/(p+q) + w log 2 p/(p+q)) / 2``."""
    sp = jax.nn.softplus(log_w)
    return 0.5 * (_LOG2 - sp) + 0.5 * jnp.exp(log_w) * (_LOG2 + log_w - sp)


def renyi_reverse_sn(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Self-normalized score function for ``D_alpha(q || p)`` (the VR bound's ``-grad``).

    ``grad D_alpha(q || p) = alpha / (alpha - 1) E_q[(q/p)^(alpha-1) s] / E_q[(q/p)^(alpha-1)]``;
    estimate ``alpha / (alpha - 1) sum_i (v_i - 1/K) s(x_i)``,
    ``v = softmax((1 - alpha) log w)``. The ``- 1/K`` (a zero-mean control
    variate, ``E_q[s] = 0``) gives the ``alpha -> 1`` limit
    ``-(1/K) sum_i (r_i - rbar) s(x_i)``, REINFORCE with the batch-mean baseline,
    used at ``alpha = 1``. ``alpha = 2`` is ``score_sn`` minus that control variate.

    Consistent for ``grad D_alpha(q || p)`` (bias ``O(1/K)``); invariant to the
    scale of ``p~``. Needs ``D_alpha(q || p) < inf``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    k = x.shape[0]
    if alpha == 1:
        coef = -(log_w - jnp.mean(log_w)) / k
    else:
        coef = alpha / (alpha - 1.0) * (jax.nn.softmax((1.0 - alpha) * log_w) - 1.0 / k)
    return _est._Spec(
        _renyi_reverse_value(alpha, log_w), lambda q_: coef * q_.log_prob(x), _est._zero(log_w)
    )


def renyi_reverse_reparam(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Reparameterized VR-bound gradient for ``D_alpha(q || p)`` (Li & Turner's estimator).

    ``-grad_phi (1 / (1 - alpha)) log mean_i w(z_i)^(1 - alpha)`` with
    ``z_i = loc + scale * eps_i``, i.e. ``-sum_i v_i grad_phi log w(z_i)``,
    ``v = softmax((1 - alpha) log w)`` (stopped). ``alpha = 1`` is ``reparam``
    of ``kl_reverse``; ``alpha -> 0`` tends to ``iwae``.

    Consistent for ``grad D_alpha(q || p)`` (it is the exact gradient of the
    ``K``-sample VR bound, biased ``O(1/K)`` for ``alpha != 1``); invariant to
    the scale of ``p~``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    k = x.shape[0]
    v = jax.nn.softmax((1.0 - alpha) * log_w)

    def terms(q_):
        z = q_.sample(key, k)
        return -v * (log_p(z) - q_.log_prob(z))

    return _est._Spec(_renyi_reverse_value(alpha, log_w), terms, _est._zero(log_w))


def renyi_forward_sn(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Self-normalized importance sampling for ``D_alpha(p || q)``.

    ``grad D_alpha(p || q) = -E_q[w^alpha s] / E_q[w^alpha]``; estimate
    ``-sum_i u_i s(x_i)``, ``u = softmax(alpha log w)``: ``snis`` at
    ``alpha = 1``, ``snis2`` at ``alpha = 2``.

    Consistent for ``grad D_alpha(p || q)`` (bias ``O(1/K)``); invariant to
    the scale of ``p~``. Needs ``D_alpha(p || q) < inf``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
      Dieng et al. (2017), Variational inference via chi upper bound
      minimization, NeurIPS (``alpha = 2``).
    """
    u = jax.nn.softmax(alpha * log_w)
    return _est._Spec(
        _renyi_forward_value(alpha, log_w), lambda q_: -u * q_.log_prob(x), _est._zero(log_w)
    )


def renyi_forward_reparam(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Reparameterized gradient for ``D_alpha(p || q)``.

    It differentiates ``log mean_i w(z_i)^alpha / (alpha - 1)``.

    ``alpha / (alpha - 1) sum_i u_i grad_phi log w(z_i)``, ``u = softmax(alpha log w)``,
    through ``z_i = loc + scale * eps_i`` and ``q_phi``. Consistent for
    ``grad D_alpha(p || q)``; undefined at ``alpha = 1`` (``E_q[w] = 1`` for
    every ``q``); invariant to the scale of ``p~``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    k = x.shape[0]
    u = jax.nn.softmax(alpha * log_w)

    def terms(q_):
        z = q_.sample(key, k)
        return alpha / (alpha - 1.0) * u * (log_p(z) - q_.log_prob(z))

    return _est._Spec(_renyi_forward_value(alpha, log_w), terms, _est._zero(log_w))


def amari_score(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Score function for Amari's ``A_alpha(p || q)`` (normalized ``p``).

    ``grad A_alpha = -E_q[w^alpha s] / alpha = -E_q[((w^alpha - 1) / alpha) s]``;
    estimate ``-(1/K) sum_i expm1(alpha log w_i) / alpha s(x_i)`` (the ``- 1``
    a zero-mean control variate that gives the ``alpha -> 0`` limit,
    REINFORCE ``-(1/K) sum_i log w_i s(x_i)``, used at ``alpha = 0``).

    Unbiased for ``grad A_alpha(p || q)`` when ``log_p`` is normalized (a
    `GaussianMixture` target is normalized here; a callable must be).
    The Hellinger estimator is this at ``alpha = 1/2`` divided by 4.

    References:
      Amari (1985), Differential-geometrical methods in statistics, Springer.
      Ranganath, Gerrish & Blei (2014), Black box variational inference, AISTATS.
    """
    k = x.shape[0]
    coef = -log_w / k if alpha == 0 else -jnp.expm1(alpha * log_w) / (alpha * k)
    return _est._Spec(
        _amari_value(alpha, log_w), lambda q_: coef * q_.log_prob(x), _est._zero(log_w)
    )


def amari_reparam(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Reparameterization for Amari's ``A_alpha(p || q)`` (normalized ``p``).

    ``A_alpha = (1 - E_eps[w(z)^alpha]) / (alpha (1 - alpha))``; estimate
    ``-(1/K) sum_i w_i^alpha grad_phi log w(z_i) / (1 - alpha)`` through
    ``z_i = loc + scale * eps_i`` and ``q_phi``. ``alpha = 0`` is ``reparam`` of
    ``kl_reverse``; undefined at ``alpha = 1``.

    Unbiased for ``grad A_alpha(p || q)`` when ``log_p`` is normalized.

    References:
      Kingma & Welling (2014), Auto-encoding variational Bayes, ICLR.
      Hernandez-Lobato et al. (2016), Black-box alpha divergence minimization, ICML.
    """
    k = x.shape[0]
    wa = jnp.exp(alpha * log_w)

    def terms(q_):
        z = q_.sample(key, k)
        return -wa * (log_p(z) - q_.log_prob(z)) / ((1.0 - alpha) * k)

    return _est._Spec(_amari_value(alpha, log_w), terms, _est._zero(log_w))


def js_score(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Score function for Jensen-Shannon (normalized ``p``).

    ``grad JS = E_q[s log(2q / (p + q))] / 2``; estimate
    ``(1/2K) sum_i (log 2 - softplus(log w_i)) s(x_i)``. Unbiased when
    ``log_p`` is normalized.

    References:
      Lin (1991), Divergence measures based on the Shannon entropy, IEEE TIT.
    """
    k = x.shape[0]
    coef = 0.5 * (_LOG2 - jax.nn.softplus(log_w)) / k
    return _est._Spec(
        jnp.mean(_js_terms(log_w)), lambda q_: coef * q_.log_prob(x), _est._zero(log_w)
    )


def js_reparam(alpha, q, key, x, log_w, log_p) -> _est._Spec:
    r"""Reparameterization for Jensen-Shannon: ``grad (1/K) sum_i f(log w(z_i))``.

    ``JS = E_q[f(log w)]`` with ``f(l) = (log 2 - softplus(l) + e^l (log 2 + l -
    softplus(l))) / 2``, differentiated through ``z_i = loc + scale * eps_i``
    and ``q_phi``. Unbiased when ``log_p`` is normalized.
    """
    k = x.shape[0]

    def terms(q_):
        z = q_.sample(key, k)
        return _js_terms(log_p(z) - q_.log_prob(z)) / k

    return _est._Spec(jnp.mean(_js_terms(log_w)), terms, _est._zero(log_w))


def _scaled_spec(fn, c):
    def spec(*args):
        s = fn(*args)
        return _est._Spec(c * s.value, lambda q_: c * s.terms(q_), s.log_scale)

    return spec


_ALPHA_FNS = {
    ("renyi_reverse", "sn"): renyi_reverse_sn,
    ("renyi_reverse", "reparam"): renyi_reverse_reparam,
    ("renyi_forward", "sn"): renyi_forward_sn,
    ("renyi_forward", "reparam"): renyi_forward_reparam,
    ("amari", "score"): amari_score,
    ("amari", "reparam"): amari_reparam,
    ("hellinger", "score"): _scaled_spec(amari_score, 0.25),
    ("hellinger", "reparam"): _scaled_spec(amari_reparam, 0.25),
    ("jensen_shannon", "score"): js_score,
    ("jensen_shannon", "reparam"): js_reparam,
}


def alpha_surrogate(kind: str, alpha: float | None, estimator: str, target, num_samples: int):
    r"""A surrogate loss whose ``jax.grad`` estimates ``grad`` of the alpha-divergence ``kind``.

    Same contract as `divjax.surrogate`: returns ``loss_fn(q, key) -> (loss, aux)``
    with ``aux`` a `divjax.SurrogateAux`. The estimators only use ``q.sample``
    and ``q.log_prob``, so they work in ``d`` dimensions too: a d-dimensional
    `GaussianMixture` target with a `DiagGaussian`, `FullRankGaussian` or
    `MixtureGaussian` ``q`` (the last with the non-pathwise ``sn`` and
    ``score`` only; see `divjax.estimators.check_q`).

    Args:
      kind: one of `ALPHA_DIVERGENCES`.
      alpha: static float order (ignored, may be None, for ``hellinger`` and
        ``jensen_shannon``, which use ``alpha = 1/2`` and none).
      estimator: one of ``ALPHA_ESTIMATORS[kind]``.
      target: a `GaussianMixture` (1-D or d-dimensional) or a callable
        ``log p(x)``. Renyi needs only ``log p~``; ``amari``, ``hellinger``
        and ``jensen_shannon`` are linear in ``p`` and need it normalized (a
        `GaussianMixture` is normalized here).
      num_samples: ``K`` draws (static).

    Raises:
      ValueError: unknown kind/estimator, missing alpha, ``reparam`` at an
        order where it is undefined (``renyi_forward`` and ``amari`` at
        ``alpha = 1``).
    """
    _checks.check_choice(kind, ALPHA_DIVERGENCES, "alpha-divergence")
    valid = ALPHA_ESTIMATORS[kind]
    if estimator not in valid:
        raise ValueError(
            f"unknown estimator {estimator!r} for {kind!r}; valid choices: {', '.join(valid)}"
        )
    if kind in _NEEDS_ALPHA:
        if alpha is None or not math.isfinite(float(alpha)):
            raise ValueError(f"{kind} needs a finite float alpha, got {alpha!r}")
        alpha = float(alpha)
    if kind == "hellinger":
        alpha = 0.5
    if estimator == "reparam" and kind in ("renyi_forward", "amari") and alpha == 1:
        raise ValueError(f"{kind} 'reparam' is undefined at alpha = 1; use 'sn' or 'score'")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if isinstance(target, (GaussianMixture, MvGaussianMixture)):
        log_p = target.normalized_log_prob if kind in _NORMALIZED else target.log_prob
    elif callable(target):
        log_p = target
    else:
        raise ValueError(f"target must be a GaussianMixture or a callable, got {target!r}")
    make = _ALPHA_FNS[(kind, estimator)]
    k = num_samples

    def loss_fn(q, key):
        _est.check_q(estimator, target, q, pathwise=estimator == "reparam")
        x = _est.stop(q.sample(key, k))
        log_w = _est.stop(log_p(x) - q.log_prob(x))
        return _est._assemble(q, make(alpha, q, key, x, log_w, log_p), x, log_w)

    return loss_fn


__all__ = [
    "ALPHA_DIVERGENCES",
    "ALPHA_ESTIMATORS",
    "alpha_surrogate",
    "alpha_divergence",
    "alpha_grad",
    "integral_is_infinite",
    "log_integral",
]
