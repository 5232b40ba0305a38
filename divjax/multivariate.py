r"""Divergences, estimators and optima in ``d`` dimensions.

Exact where exactness is possible (``p`` a `MvGaussianMixture`, ``q`` a
`DiagGaussian` or `FullRankGaussian`):

=============  ==============================  =================================
divergence     value                           gradient
=============  ==============================  =================================
kl_forward     d <= 2 (entropy of p by         any d: ``-E_p[grad log q]`` from
               quadrature); any d up to the    p's mean and covariance
               q-independent ``E_p[log p]``    (`cross_entropy`)
chi2_forward   any d, closed form              any d, closed form (autodiff)
kl_reverse     d <= 2 (quadrature)             d <= 2 (quadrature)
chi2_reverse   d <= 2 (quadrature)             d <= 2 (quadrature)
=============  ==============================  =================================

Anything else raises a `ValueError` that repeats this table; Monte Carlo
estimators (`divjax.surrogate`, every one of them) work in any ``d``.
`divjax.divergence` and `divjax.exact_grad` route d-dimensional targets here.
``d = 1`` routes to the 1-D code (`divjax.divergence`), so results are unchanged.

chi2_forward. ``N_i N_j = N(m_i; m_j, A_i + A_j) N(x; c, C)`` with
``C = A_i (A_i + A_j)^{-1} A_j`` and ``c = C (A_i^{-1} m_i + A_j^{-1} m_j)``, and
``int N(x; c, C) / N(x; mu, S) dx = (2 pi)^{d/2} det S det(D)^{-1/2}
exp((c - mu)^T D^{-1} (c - mu) / 2)`` with ``D = S - C`` (the 1-D formula of
`divjax.divergences` with matrices). It is ``+inf`` iff some ``D_ij`` is not
positive definite.

chi2_reverse (d = 2) is ``+inf`` iff for some direction ``v``,
``2 v^T S^{-1} v <= min_k v^T A_k^{-1} v`` (``q^2`` decays no faster than ``p``
along ``v``); checked on 720 directions.

2-D quadrature: a tensor product of per-axis composite 8-point Gauss-Legendre
rules with break points around every anchor (p's components, q, and for
chi2_reverse the centres of ``q^2 / N_k``), under ``stop_gradient`` as in 1-D.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import _linalg
from divjax import estimators as _est
from divjax.divergences import DIVERGENCES, divergence
from divjax.families import Gaussian
from divjax.mv_families import DiagGaussian, FullRankGaussian, MvGaussianMixture
from divjax.targets import GaussianMixture

_LOG_2PI = 1.8378770664093453
EXACTNESS = (
    "exact in d dimensions: chi2_forward (value, gradient) in any d; kl_forward gradient "
    "in any d, its value in d <= 2 (in any d up to the q-independent E_p[log p], see "
    "cross_entropy); kl_reverse and chi2_reverse in d <= 2 (quadrature). Otherwise use "
    "a Monte Carlo estimator (divjax.surrogate)."
)
# Every estimator works in d dimensions through `divjax.surrogate`; these names
# stay for code written against the first d-dimensional release.
MV_ESTIMATORS = _est.ESTIMATORS
MIXTURE_ESTIMATORS = _est.MIXTURE_ESTIMATORS
_GL_T, _GL_W = np.polynomial.legendre.leggauss(8)
_U = np.concatenate([np.arange(-12.0, 12.5, 1.0), [-24.0, -16.0, 16.0, 24.0]])


def _check(name, p, q) -> None:
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; valid choices: {', '.join(DIVERGENCES)}")
    if not isinstance(p, MvGaussianMixture):
        raise ValueError(f"p must be a divjax.MvGaussianMixture, got {type(p).__name__}")
    if not isinstance(q, (DiagGaussian, FullRankGaussian)):
        raise ValueError(
            f"exact divergences need a DiagGaussian or FullRankGaussian q, got {type(q).__name__}"
        )
    if q.dim != p.dim:
        raise ValueError(f"dimension mismatch: p has d = {p.dim}, q has d = {q.dim}")


def _to_1d(p: MvGaussianMixture, q):
    p1 = GaussianMixture._make((p.weights, p.locs[:, 0], jnp.abs(p.scale_trils[:, 0, 0])))
    log_scale = q.log_scale[0] if isinstance(q, DiagGaussian) else q.chol[0, 0]
    return p1, Gaussian._make((q.loc[0], log_scale))


def cross_entropy(p: MvGaussianMixture, q) -> jax.Array:
    r"""``-E_p[log q]``, closed form in p's mean and covariance, any ``d``."""
    tril = q.scale_tril
    diff = p.mean() - q.loc
    second = p.covariance() + diff[:, None] * diff[None, :]
    inv = _linalg.solve_lower(tril, jnp.eye(q.dim, dtype=tril.dtype)).T  # tril^{-1}
    log_det = jnp.sum(jnp.log(jnp.diagonal(tril)))
    return 0.5 * q.dim * _LOG_2PI + log_det + 0.5 * jnp.sum((inv @ second) * inv)


def _chi2_forward_log1p(p: MvGaussianMixture, q):
    # Batched over pairs of components: plain-jnp linear algebra (divjax._linalg).
    a = p.covs
    ai, aj = a[:, None], a[None, :]
    mi, mj = p.locs[:, None], p.locs[None, :]
    s_sum = ai + aj
    s_inv = _linalg.inv_spd(s_sum)
    cmat = ai @ s_inv @ aj
    cmat = 0.5 * (cmat + jnp.swapaxes(cmat, -1, -2))
    centre = jnp.einsum("...ij,...j->...i", aj @ s_inv, mi) + jnp.einsum(
        "...ij,...j->...i", ai @ s_inv, mj
    )
    dm = mi - mj
    log_n = -0.5 * (_linalg.logdet_spd(s_sum) + p.dim * _LOG_2PI) - 0.5 * jnp.einsum(
        "...i,...ij,...j->...", dm, s_inv, dm
    )
    sq = q.cov
    dmat = sq - cmat
    pd = jax.lax.stop_gradient(_linalg.is_positive_definite(dmat))
    dmat = jnp.where(pd[..., None, None], dmat, jnp.eye(p.dim, dtype=dmat.dtype))
    diff = centre - q.loc
    quad = jnp.sum(diff * _linalg.solve_spd(dmat, diff), -1)
    log_det_q = 2.0 * jnp.sum(jnp.log(jnp.diagonal(q.scale_tril)))
    log_int = log_n + 0.5 * p.dim * _LOG_2PI + log_det_q - 0.5 * _linalg.logdet_spd(dmat)
    log_pi = jnp.log(p.probs)
    log_terms = log_pi[:, None] + log_pi[None, :] + log_int + 0.5 * quad
    return jnp.where(jnp.all(pd), logsumexp(log_terms), jnp.inf)


def _axis_rule(locs, sds):
    """Composite Gauss-Legendre nodes/weights on one axis around the anchors."""
    breaks = jnp.sort((locs[:, None] + sds[:, None] * jnp.asarray(_U, locs.dtype)).ravel())
    lo, hi = breaks[:-1], breaks[1:]
    half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
    t, w = jnp.asarray(_GL_T, locs.dtype), jnp.asarray(_GL_W, locs.dtype)
    return (mid[:, None] + half[:, None] * t).ravel(), (half[:, None] * w).ravel()


def grid_nodes(p: MvGaussianMixture, q, extra_locs=None, extra_covs=None):
    r"""2-D tensor-product quadrature ``(x (N, 2), w (N,))`` (stopped; see module docstring)."""
    locs = [p.locs, q.loc[None]]
    covs = [p.covs, q.cov[None]]
    if extra_locs is not None:
        locs.append(extra_locs)
        covs.append(extra_covs)
    locs = jax.lax.stop_gradient(jnp.concatenate(locs))
    sds = jax.lax.stop_gradient(jnp.sqrt(jnp.diagonal(jnp.concatenate(covs), axis1=-2, axis2=-1)))
    (x0, w0), (x1, w1) = (_axis_rule(locs[:, j], sds[:, j]) for j in range(2))
    x = jnp.stack(jnp.meshgrid(x0, x1, indexing="ij"), -1).reshape(-1, 2)
    return x, (w0[:, None] * w1[None, :]).ravel()


def _chi2_reverse_anchors(p, q):
    s_inv = _linalg.inv_spd(q.cov)
    a_inv = _linalg.inv_spd(p.covs)
    lam = 2.0 * s_inv - a_inv
    pd = _linalg.is_positive_definite(lam)
    lam = jnp.where(pd[:, None, None], lam, s_inv)
    cov = _linalg.inv_spd(lam)
    rhs = 2.0 * s_inv @ q.loc - jnp.einsum("kij,kj->ki", a_inv, p.locs)
    centre = jnp.where(pd[:, None], jnp.einsum("kij,kj->ki", cov, rhs), q.loc)
    return centre, cov


def chi2_reverse_is_infinite(p: MvGaussianMixture, q) -> jax.Array:
    """``chi^2(q || p) = inf`` in d = 2 (the direction test of the module docstring)."""
    th = jnp.linspace(0.0, math.pi, 720, endpoint=False, dtype=p.locs.dtype)
    v = jnp.stack([jnp.cos(th), jnp.sin(th)], -1)
    qf = jnp.einsum("ni,ij,nj->n", v, _linalg.inv_spd(q.cov), v)
    pf = jnp.einsum("ni,kij,nj->kn", v, _linalg.inv_spd(p.covs), v)
    return jnp.any(2.0 * qf <= jnp.min(pf, 0))


def _values_2d(name, p, q):
    if name == "chi2_reverse":
        x, w = grid_nodes(p, q, *_chi2_reverse_anchors(p, q))
    else:
        x, w = grid_nodes(p, q)
    lp, lq = p.normalized_log_prob(x), q.log_prob(x)
    if name == "kl_forward":
        return jnp.sum(w * jnp.exp(lp) * lp) + cross_entropy(p, q)
    if name == "kl_reverse":
        return jnp.sum(w * jnp.exp(lq) * (lq - lp))
    if name == "chi2_forward":  # the closed form is used; this is its quadrature check
        return jnp.expm1(logsumexp(2.0 * lp - lq, b=w))
    value = jnp.expm1(logsumexp(2.0 * lq - lp, b=w))
    return jnp.where(chi2_reverse_is_infinite(p, q), jnp.inf, value)


def quadrature_2d(name: str, p: MvGaussianMixture, q) -> jax.Array:
    """Any of the four divergences in d = 2 by grid quadrature (a check on the closed forms)."""
    _check(name, p, q)
    if p.dim != 2:
        raise ValueError(f"quadrature_2d needs d = 2, got d = {p.dim}")
    return _values_2d(name, p, q)


def _unsupported(name, p, what):
    return ValueError(f"{name} {what} is not exact in d = {p.dim}. {EXACTNESS}")


def mv_divergence(name: str, p: MvGaussianMixture, q) -> jax.Array:
    r"""The exact divergence in ``d`` dimensions where it is available (see the table).

    Raises:
      ValueError: unknown name, wrong types, mismatched ``d``, or a divergence
        not exact in this ``d`` (the message lists what is exact where).
    """
    _check(name, p, q)
    if p.dim == 1:
        return divergence(name, *_to_1d(p, q))
    if name == "chi2_forward":
        return jnp.expm1(_chi2_forward_log1p(p, q))
    if p.dim == 2:
        return _values_2d(name, p, q)
    raise _unsupported(name, p, "value")


def mv_exact_grad(name: str, p: MvGaussianMixture, q):
    r"""The exact gradient with respect to ``q``'s parameters (same pytree as ``q``).

    ``kl_forward``: ``jax.grad`` of `cross_entropy` (any d); ``chi2_forward``:
    of the closed form through ``log(1 + chi^2)``, rescaled; ``d = 2``
    reverse divergences: of the quadrature. ``+inf`` where infinite.
    """
    _check(name, p, q)
    if name == "kl_forward" and p.dim > 1:
        return jax.grad(lambda q_: cross_entropy(p, q_))(q)
    if name == "chi2_forward" and p.dim > 1:
        log1p, g = jax.value_and_grad(lambda q_: _chi2_forward_log1p(p, q_))(q)
        return jax.tree_util.tree_map(
            lambda v: jnp.where(jnp.isinf(log1p), jnp.inf, jnp.exp(log1p) * v), g
        )
    if p.dim > 2:
        raise _unsupported(name, p, "gradient")
    value, g = jax.value_and_grad(lambda q_: mv_divergence(name, p, q_))(q)
    return jax.tree_util.tree_map(lambda v: jnp.where(jnp.isinf(value), jnp.inf, v), g)


def check_exact(name: str, p: MvGaussianMixture) -> None:
    """Raises a `ValueError` (quoting `EXACTNESS`) where ``name`` has no exact gradient."""
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; valid choices: {', '.join(DIVERGENCES)}")
    if name in ("kl_reverse", "chi2_reverse") and p.dim > 2:
        raise _unsupported(name, p, "gradient")


def exact_fns(name: str, p: MvGaussianMixture):
    r"""``(value_fn, grad_fn)`` of ``q`` for the ``"exact"`` estimator in ``d`` dimensions.

    The value is `mv_divergence`, except for ``kl_forward`` in ``d > 2`` where
    it is `cross_entropy` (the divergence up to the q-independent ``E_p[log p]``).
    """
    check_exact(name, p)
    if name == "kl_forward" and p.dim > 2:
        return functools.partial(cross_entropy, p), functools.partial(mv_exact_grad, name, p)
    return functools.partial(mv_divergence, name, p), functools.partial(mv_exact_grad, name, p)


def mv_surrogate(name: str, estimator: str, target, num_samples: int):
    r"""`divjax.surrogate`, which takes d-dimensional targets and families itself.

    Kept for code written against the first d-dimensional release: the same
    function with the same checks (``"exact"`` uses `mv_exact_grad`; for
    ``kl_forward`` in ``d > 2`` its loss value is the cross-entropy).
    """
    return _est.surrogate(name, estimator, target, num_samples)


__all__ = [
    "EXACTNESS",
    "check_exact",
    "exact_fns",
    "MIXTURE_ESTIMATORS",
    "MV_ESTIMATORS",
    "chi2_reverse_is_infinite",
    "cross_entropy",
    "grid_nodes",
    "mv_divergence",
    "mv_exact_grad",
    "mv_surrogate",
    "quadrature_2d",
]
