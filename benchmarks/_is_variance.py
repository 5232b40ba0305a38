r"""Closed-form asymptotics of self-normalized importance sampling (``snis``, ``snis2``).

For ``p = sum_k pi_k N(m_k, diag(a_k^2))`` (a `divjax.GaussianMixture` with
diagonal components) and ``q = N(loc, diag(sigma^2))``, divjax's ``snis``
(``r = 1``, kl_forward) and ``snis2`` (``r = 2``, chi2_forward) estimate the
gradient with respect to ``loc_j`` as the ratio

    R_K = sum_i w_i^r g(x_i) / sum_i w_i^r,   x_i ~ q,  w = p / q,
    g(x) = -d/dloc_j log q(x) = -(x_j - loc_j) / sigma_j^2,

consistent for ``mu = E_q[w^r g] / E_q[w^r]`` (``grad KL(p || q)`` for r = 1,
``grad log(1 + chi^2(p || q))`` for r = 2). The delta method gives

    K Var R_K       -> V = E_q[w^{2r} (g - mu)^2] / E_q[w^r]^2,
    K (E R_K - mu)  -> b = -E_q[w^{2r} (g - mu)] / E_q[w^r]^2,

so the mean squared error is ``V / K + b^2 / K^2 + o(1/K^2)``.

Every expectation is ``E_q[w^n h] = int p^n q^{1-n} h dx``. Expanding
``p^n = (sum_k pi_k N_k)^n`` gives ``M^n`` terms, one per index tuple
``(k_1, ..., k_n)``; each factorizes over axes into ``int exp(c - lam x^2 / 2
+ eta x) dx`` with precision ``lam = sum_j 1/a_{k_j}^2 - (n - 1)/sigma^2`` and
``eta = sum_j m_{k_j}/a_{k_j}^2 - (n - 1) loc/sigma^2``. It is finite iff
``lam > 0``; all terms are positive, so one infinite term makes the whole
expectation (and ``V``) infinite. Since ``g`` is linear in ``x_j``, ``h`` only
needs the first two moments of the term's normalized Gaussian on axis ``j``
(mean ``eta/lam``, variance ``1/lam``), and ``E[(g - mu)^2]`` per term is
nonnegative, so ``V`` is one logsumexp over positive terms. Everything is
kept in log space (``V`` grows exponentially in d: 1.2e37 for snis2 in the
d = 50 problem of `bench_exactness`, and past float64 for narrower q or larger d).

References:
  Owen (2013), Monte Carlo theory, methods and examples, chapter 9 (the
  delta-method variance of self-normalized importance sampling).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

_LOG_2PI = math.log(2.0 * math.pi)


class SnisAsymptotics(NamedTuple):
    """Large-K behaviour of ``snis`` (r = 1) or ``snis2`` (r = 2) for one loc coordinate.

    Attributes:
      mean: ``mu``, the limit of the estimator.
      log_var: ``log V`` with ``V = lim K Var``; ``+inf`` where ``V`` is infinite.
      bias: ``b = lim K (E R_K - mu)`` (``nan`` where ``V`` is infinite).
      log_abs_bias: ``log |b|`` (finite where ``b`` itself overflows).
      log_weight_ratio: ``log E_q[w^{2r}] / E_q[w^r]^2``, ``K`` times the
        relative variance of the denominator: the delta method needs
        ``K`` well above it (below it the weights collapse onto a few draws).
    """

    mean: float
    log_var: float
    bias: float
    log_abs_bias: float
    log_weight_ratio: float


def _terms(n, probs, locs, scales, loc, sigma, coord):
    """Per tuple: ``log`` of its share of ``E_q[w^n]`` and the mean/var of ``x_coord`` under it.

    Returns ``(log_c (T,), mean (T,), var (T,))`` with ``T = M^n``, or ``None``
    if some term is infinite (``lam <= 0`` on some axis).
    """
    m = len(probs)
    tuples = np.array(list(itertools.product(range(m), repeat=n)))  # (T, n)
    a2 = scales[tuples] ** 2  # (T, n, d)
    mk = locs[tuples]  # (T, n, d)
    s2 = sigma**2  # (d,)
    lam = np.sum(1.0 / a2, 1) - (n - 1) / s2  # (T, d)
    if np.any(lam <= 0):
        return None
    eta = np.sum(mk / a2, 1) - (n - 1) * loc / s2
    c = np.sum(-0.5 * np.log(2 * np.pi * a2) - 0.5 * mk**2 / a2, 1)
    c = c + 0.5 * (n - 1) * (np.log(2 * np.pi * s2) + loc**2 / s2)
    log_axis = c + 0.5 * eta**2 / lam + 0.5 * (_LOG_2PI - np.log(lam))  # (T, d)
    log_c = np.sum(np.log(probs)[tuples], 1) + np.sum(log_axis, 1)
    return log_c, eta[:, coord] / lam[:, coord], 1.0 / lam[:, coord]


def snis_asymptotics(weights, locs, scales, loc, scale, r=2, coord=0) -> SnisAsymptotics:
    r"""``mu``, ``V`` and ``b`` of the module docstring, exactly (float64 numpy).

    Args:
      weights: ``(M,)`` mixture weights of ``p`` (normalized here; ``R_K`` is
        invariant to the scale of ``p~``).
      locs, scales: ``(M, d)`` component means and standard deviations.
      loc, scale: ``(d,)`` mean and standard deviation of ``q``.
      r: 1 for ``snis`` (kl_forward), 2 for ``snis2`` (chi2_forward).
      coord: which loc coordinate ``j``.
    """
    probs = np.asarray(weights, np.float64)
    probs = probs / probs.sum()
    locs, scales = np.asarray(locs, np.float64), np.asarray(scales, np.float64)
    loc, sigma = np.asarray(loc, np.float64), np.asarray(scale, np.float64)
    args = (probs, locs, scales, loc, sigma, coord)
    first = _terms(r, *args)
    if first is None:  # chi^2(p || q) = inf: snis2 converges to nothing
        return SnisAsymptotics(math.nan, math.inf, math.nan, math.inf, math.inf)
    log_c1, mean1, _ = first
    s2 = sigma[coord] ** 2

    def g_moments(mean, var):  # E[g] and Var[g] under one term, g = -(x - loc) / sigma^2
        return -(mean - loc[coord]) / s2, var / s2**2

    eg1, _ = g_moments(mean1, 0.0)
    log_beta = logsumexp(log_c1)
    mu = float(np.sum(np.exp(log_c1 - log_beta) * eg1))
    second = _terms(2 * r, *args)
    if second is None:
        return SnisAsymptotics(mu, math.inf, math.nan, math.inf, math.inf)
    log_c2, mean2, var2 = second
    eg2, vg2 = g_moments(mean2, var2)
    log_var = logsumexp(log_c2 + np.log(vg2 + (eg2 - mu) ** 2)) - 2 * log_beta
    log_b, sign = logsumexp(log_c2, b=-(eg2 - mu), return_sign=True)
    log_b = log_b - 2 * log_beta
    bias = float(sign * np.exp(log_b)) if log_b < 700 else float(sign * math.inf)
    log_ratio = float(logsumexp(log_c2) - 2 * log_beta)
    return SnisAsymptotics(mu, float(log_var), bias, float(log_b), log_ratio)


def log_k_for_rel_rms(a: SnisAsymptotics, rel: float = 1e-2) -> float:
    r"""``log K`` solving ``V / K + b^2 / K^2 = (rel * mu)^2`` (``+inf`` if ``V`` is)."""
    if math.isinf(a.log_var):
        return math.inf
    log_t = 2.0 * math.log(rel * abs(a.mean))
    ratio = math.exp(min(log_t + 2 * a.log_abs_bias - 2 * a.log_var, 700.0))
    return a.log_var - log_t + math.log((1.0 + math.sqrt(1.0 + 4.0 * ratio)) / 2.0)


__all__ = ["SnisAsymptotics", "log_k_for_rel_rms", "snis_asymptotics"]
