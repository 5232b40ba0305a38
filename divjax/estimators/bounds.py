r"""Importance-weighted bounds and doubly reparameterized gradients (DReG).

The DReG estimators rewrite a score term ``E_q[f(z) s(z)]`` as a pathwise one
by the identity ``E_q[f(z) s(z)] = E_eps[f'(z) dz/dphi]`` and differentiate
``log w`` with ``q``'s parameters stopped (through ``z`` only).
"""

from __future__ import annotations

import jax

from divjax.estimators._core import Draw, Spec, kl_forward_value, kl_reverse_value, zero
from divjax.estimators.pathwise import _log_w


def snis_dreg(draw: Draw, alpha=None) -> Spec:
    r"""Doubly reparameterized SNIS for ``kl_forward`` (the RWS wake-phi DReG).

    ``-sum_i (wbar_i - wbar_i^2) grad_phi log w_{stop(phi)}(z_i(phi))``. Its
    mean equals ``snis``'s at every ``K`` (the identity is exact), so it is
    consistent for ``grad KL(p || q)`` with ``snis``'s ``O(1/K)`` bias and
    changes only the variance; zero at ``K = 1``. Differentiates ``log p~``.

    References:
      Tucker, Lawson, Gu & Maddison (2019), Doubly reparameterized gradient
      estimators for Monte Carlo objectives, ICLR (the RWS wake-phi update).
    """
    log_w = draw.log_weights
    w = jax.nn.softmax(log_w)
    return Spec(
        kl_forward_value(log_w), lambda q_: -(w - w**2) * _log_w(q_, draw, True), zero(log_w)
    )


def iwae(draw: Draw, alpha=None) -> Spec:
    r"""Reparameterized gradient of the negative importance-weighted bound (under ``kl_reverse``).

    ``-grad_phi log mean_i w_i = -sum_i wbar_i grad_phi log w_i`` (through
    ``z_i`` and ``q_phi``). Unbiased for ``-grad L_K``,
    ``L_K = E[log mean_i w_i]``; ``log Z - L_K`` is a reverse KL on an
    extended space that equals ``KL(q || p)`` only at ``K = 1`` (where this is
    ``reparam``) and shrinks like ``chi^2(p || q) / (2K)``, turning
    mass-covering: `divjax.grad_stats`'s bias for ``K > 1`` is the bound's gap.

    References:
      Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders, ICLR.
      Domke & Sheldon (2018), Importance weighting and variational inference, NeurIPS.
      Rainforth et al. (2018), Tighter variational bounds are not necessarily
      better, ICML (the inference-network SNR decays with K).
    """
    log_w = draw.log_weights
    w = jax.nn.softmax(log_w)
    return Spec(kl_reverse_value(log_w), lambda q_: -w * _log_w(q_, draw), zero(log_w))


def iwae_dreg(draw: Draw, alpha=None) -> Spec:
    r"""Doubly reparameterized gradient of the negative importance-weighted bound.

    ``-sum_i wbar_i^2 grad_phi log w_{stop(phi)}(z_i(phi))``. Unbiased for
    ``-grad L_K`` (as `iwae`; ``stl`` at ``K = 1``); unlike ``iwae`` its SNR
    does not decay with ``K``.

    References:
      Tucker, Lawson, Gu & Maddison (2019), Doubly reparameterized gradient
      estimators for Monte Carlo objectives, ICLR.
    """
    log_w = draw.log_weights
    w = jax.nn.softmax(log_w)
    return Spec(kl_reverse_value(log_w), lambda q_: -(w**2) * _log_w(q_, draw, True), zero(log_w))
