r"""The score as a control variate, with a leave-one-out optimal coefficient per parameter.

For each parameter entry ``j`` the draw is ``f_i s_j(x_i)`` and the control
variate ``s_j(x_i)`` (``E_q[s] = 0`` is known, so no centring). The optimal
coefficient ``a_j = E_q[f s_j^2] / E_q[s_j^2]`` is estimated from the batch
leaving sample ``i`` out, which keeps the estimator unbiased. The scores come
from ``jax.grad`` of ``q.log_prob``, so every family works (one coefficient per
entry of ``loc``, ``log_scale``, ``chol``, ``logits``...).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from divjax.estimators._core import (
    Draw,
    Spec,
    chi2_reverse_value,
    kl_reverse_value,
    linear_terms,
    log_mean_exp,
    stop,
    zero,
)


def _column(f: jax.Array, h: jax.Array) -> jax.Array:
    """``(K,)`` ``f`` reshaped to broadcast against ``(K, ...)`` ``h``."""
    return f.reshape(f.shape + (1,) * (h.ndim - 1))


def loo_coefficient(f: jax.Array, h: jax.Array) -> jax.Array:
    r"""``a_i = sum_{j != i} f_j h_j^2 / sum_{j != i} h_j^2`` per parameter, shape of ``h``."""
    f = _column(f, h)
    h2 = h**2
    num = jnp.sum(f * h2, axis=0) - f * h2
    den = jnp.sum(h2, axis=0) - h2
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def scores(q, x: jax.Array):
    r"""Per-sample scores ``grad_phi log q_phi(x_i)``: ``q``'s pytree with ``(K, ...)`` leaves."""
    return jax.vmap(jax.grad(lambda q_, xi: q_.log_prob(xi)), in_axes=(None, 0))(stop(q), x)


def _coefficients(f: jax.Array, draw: Draw, factor: float):
    r"""``factor * (f_i - a_{-i,j}) s_j(x_i)`` per sample ``i`` and parameter entry ``j``."""
    return jax.tree_util.tree_map(
        lambda h: factor * (_column(f, h) - loo_coefficient(f, h)) * h, scores(draw.q, draw.samples)
    )


def reinforce_cv(draw: Draw, alpha=None) -> Spec:
    r"""REINFORCE with the score as control variate: ``-(1/K) sum_i (r_i - a_{-i,j}) s_j(x_i)``.

    Unbiased for ``grad KL(q || p)`` (``a_{-i}`` is independent of ``x_i``);
    ``K >= 2``; invariant to the scale of ``p~``.

    References:
      Mohamed, Rosca, Figurnov & Mnih (2020), Monte Carlo gradient estimation
      in machine learning, JMLR 21 (control variates, optimal coefficient).
      Weaver & Tao (2001), The optimal reward baseline for gradient-based
      reinforcement learning, UAI.
    """
    log_w = draw.log_weights
    coef = _coefficients(log_w, draw, -1.0 / draw.num_samples)
    return Spec(kl_reverse_value(log_w), linear_terms(coef), zero(log_w))


def score_cv(draw: Draw, alpha=None) -> Spec:
    r"""The chi-square score estimator with the score as control variate, optimal coefficient.

    ``(2/K) sum_i (u_i - a_{-i,j}) s_j(x_i)``, ``u = q / p~`` normalized, the
    common factor ``mean(q/p~)`` applied after the sum. Unbiased for
    ``grad chi^2(q || p) / Z``; ``K >= 2``. It does not cure ``score``'s
    infinite variance.

    References:
      Mohamed, Rosca, Figurnov & Mnih (2020), Monte Carlo gradient estimation
      in machine learning, JMLR 21.
      Dieng et al. (2017), Variational inference via chi upper bound
      minimization, NeurIPS.
    """
    log_w = draw.log_weights
    coef = _coefficients(jax.nn.softmax(-log_w), draw, 2.0)
    return Spec(chi2_reverse_value(log_w), linear_terms(coef), log_mean_exp(-log_w))
