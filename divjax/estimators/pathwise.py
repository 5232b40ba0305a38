r"""Pathwise (reparameterization) estimators: differentiate through ``z = loc + L eps``.

Each redraws the step's samples inside its terms (`divjax.estimators._core.redraw`,
same key, so the same points) and differentiates through them and through the
target's ``log p~`` (autodiff supplies ``grad_x log p~``). They need a
reparameterized family (not `MixtureGaussian`) and a differentiable target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from divjax.estimators._core import (
    Draw,
    Spec,
    chi2_reverse_value,
    kl_reverse_value,
    log_mean_exp,
    redraw,
    stop,
    zero,
)
from divjax.estimators.score_function import (
    amari_value,
    js_terms,
    renyi_forward_value,
    renyi_reverse_value,
)


def _log_w(q_, draw: Draw, params_stopped: bool = False) -> jax.Array:
    """``log p~(z_i) - log q(z_i)`` at ``z = redraw(q_)``, ``q``'s density optionally stopped."""
    z = redraw(q_, draw)
    log_q = (stop(q_) if params_stopped else q_).log_prob(z)
    return draw.log_p(z) - log_q


def reparam_kl(draw: Draw, alpha=None) -> Spec:
    r"""Reparameterization for ``kl_reverse``: ``grad (1/K) sum_i [log q_phi(z_i) - log p~(z_i)]``.

    Unbiased for ``grad KL(q || p)``; invariant to the scale of ``p~``.

    References:
      Kingma & Welling (2014), Auto-encoding variational Bayes, ICLR.
      Rezende, Mohamed & Wierstra (2014), Stochastic backpropagation and
      approximate inference in deep generative models, ICML.
    """
    log_w, k = draw.log_weights, draw.num_samples
    return Spec(kl_reverse_value(log_w), lambda q_: -_log_w(q_, draw) / k, zero(log_w))


def stl(draw: Draw, alpha=None) -> Spec:
    r"""Sticking the landing for ``kl_reverse``: ``reparam`` with ``log q``'s parameters stopped.

    One `stop_gradient` drops the zero-mean score term ``s(z_i)``. Unbiased
    for ``grad KL(q || p)``; zero variance when ``q = p``.

    References:
      Roeder, Wu & Duvenaud (2017), Sticking the landing: simple, lower-variance
      gradient estimators for variational inference, NeurIPS.
    """
    log_w, k = draw.log_weights, draw.num_samples
    return Spec(kl_reverse_value(log_w), lambda q_: -_log_w(q_, draw, True) / k, zero(log_w))


def reparam_chi2(draw: Draw, alpha=None) -> Spec:
    r"""Reparameterization for ``chi2_reverse``: ``grad (1/K) sum_i (q_phi / p~)(z_i)``.

    The common factor ``mean(q/p~)`` is applied after the sum. Unbiased for
    ``grad chi^2(q || p) / Z``; infinite variance iff ``I(3) = inf``.

    References:
      Kingma & Welling (2014), Auto-encoding variational Bayes, ICLR.
      Dieng et al. (2017), Variational inference via chi upper bound
      minimization, NeurIPS.
    """
    log_w, k = draw.log_weights, draw.num_samples
    log_scale = log_mean_exp(-log_w)
    return Spec(
        chi2_reverse_value(log_w),
        lambda q_: jnp.exp(-_log_w(q_, draw) - log_scale) / k,
        log_scale,
    )


def renyi_reverse_reparam(draw: Draw, alpha) -> Spec:
    r"""Reparameterized VR-bound gradient for ``D_alpha(q || p)``: ``-sum_i v_i grad log w(z_i)``.

    ``v = softmax((1 - alpha) log w)`` (stopped). Consistent for
    ``grad D_alpha(q || p)``; ``alpha = 1`` is ``reparam``, ``alpha -> 0`` tends to ``iwae``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    log_w = draw.log_weights
    v = jax.nn.softmax((1.0 - alpha) * log_w)
    return Spec(renyi_reverse_value(alpha, log_w), lambda q_: -v * _log_w(q_, draw), zero(log_w))


def renyi_forward_reparam(draw: Draw, alpha) -> Spec:
    r"""Reparameterized gradient of ``D_alpha(p || q)``:
    ``alpha/(alpha-1) sum_i u_i grad log w(z_i)``.

    ``u = softmax(alpha log w)``. Consistent for ``grad D_alpha(p || q)``;
    undefined at ``alpha = 1``.

    References:
      Li & Turner (2016), Renyi divergence variational inference, NeurIPS.
    """
    log_w = draw.log_weights
    u = alpha / (alpha - 1.0) * jax.nn.softmax(alpha * log_w)
    return Spec(renyi_forward_value(alpha, log_w), lambda q_: u * _log_w(q_, draw), zero(log_w))


def amari_reparam(draw: Draw, alpha) -> Spec:
    r"""Reparameterization for Amari's ``A_alpha(p || q)`` (normalized ``p``).

    ``-(1/K) sum_i w_i^alpha grad log w(z_i) / (1 - alpha)``; undefined at
    ``alpha = 1``. Unbiased when ``log p`` is normalized.

    References:
      Hernandez-Lobato et al. (2016), Black-box alpha divergence minimization, ICML.
    """
    log_w, k = draw.log_weights, draw.num_samples
    wa = jnp.exp(alpha * log_w) / ((1.0 - alpha) * k)
    return Spec(amari_value(alpha, log_w), lambda q_: -wa * _log_w(q_, draw), zero(log_w))


def hellinger_reparam(draw: Draw, alpha=None) -> Spec:
    r"""Reparameterization for the squared Hellinger distance: `amari_reparam` at 1/2, over 4."""
    s = amari_reparam(draw, 0.5)
    return Spec(0.25 * s.value, lambda q_: 0.25 * s.terms(q_), s.log_scale)


def js_reparam(draw: Draw, alpha=None) -> Spec:
    r"""Reparameterization for Jensen-Shannon: ``grad (1/K) sum_i f(log w(z_i))``.

    ``JS = E_q[f(log w)]`` with ``f`` of `js_terms`. Unbiased when ``log p`` is normalized.
    """
    log_w, k = draw.log_weights, draw.num_samples
    return Spec(jnp.mean(js_terms(log_w)), lambda q_: js_terms(_log_w(q_, draw)) / k, zero(log_w))
