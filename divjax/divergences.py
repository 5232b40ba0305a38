r"""Exact divergences between a Gaussian mixture ``p`` and a Gaussian ``q``.

All four are between the NORMALIZED ``p = p~ / Z`` and ``q = N(mu, sigma^2)``:

- ``kl_forward``   ``KL(p || q) = int p log(p / q)``
- ``kl_reverse``   ``KL(q || p) = int q log(q / p)``
- ``chi2_forward`` ``chi^2(p || q) = int p^2 / q - 1``
- ``chi2_reverse`` ``chi^2(q || p) = int q^2 / p - 1``

Methods (the best exact one available for each):

- ``kl_forward``: the cross-entropy ``-E_p[log q]`` is closed form in the
  mixture's mean and variance, so the gradient is closed form; the value adds
  the mixture's negative entropy ``E_p[log p]`` by quadrature (it does not
  depend on ``q``).
- ``chi2_forward``: closed form in any dimension. Each term
  ``int N_i N_j / q`` is a Gaussian integral: with ``C = s_i^2 s_j^2 /
  (s_i^2 + s_j^2)``, ``c = (m_i s_j^2 + m_j s_i^2) / (s_i^2 + s_j^2)`` and
  ``D = sigma^2 - C``,
  ``log int N_i N_j / q = log N(m_i; m_j, s_i^2 + s_j^2) + log(sqrt(2 pi) sigma^2)
  - log(D) / 2 + (c - mu)^2 / (2 D)``.
  It converges only if ``D > 0`` for every pair, i.e. iff
  ``sigma^2 > max_k s_k^2 / 2`` (``C`` is largest for ``i = j = argmax s``):
  otherwise ``p^2 / q ~ exp(x^2 (1/(2 sigma^2) - 1/s^2))`` does not decay
  and the divergence is ``+inf``. (The seed page says no closed form exists;
  that is true for general targets, not for mixtures.)
- ``kl_reverse`` and ``chi2_reverse``: composite Gauss-Legendre quadrature
  (`divjax.quadrature`). ``chi2_reverse`` is ``+inf`` iff
  ``sigma^2 >= 2 max_k s_k^2``: in the tails ``p`` is dominated by its widest
  component, and ``q^2 / N(x; m, s^2) ~ exp(x^2 (1/(2 s^2) - 1/sigma^2))``
  does not decay. The default ``q0 = N(0, 5)`` against the default target
  (``max s^2 = 1``) has ``sigma^2 = 5 >= 2``: infinite. A trapezoid on a
  finite window reports a finite number there; divjax returns ``inf``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import _checks, quadrature
from divjax.families import Gaussian
from divjax.mv_families import MvGaussianMixture
from divjax.targets import GaussianMixture

DIVERGENCES = ("kl_forward", "kl_reverse", "chi2_forward", "chi2_reverse")
_LOG_2PI = 1.8378770664093453


def check_divergence(name: str) -> None:
    """Raises a `ValueError` naming the valid choices if ``name`` is unknown."""
    _checks.check_choice(name, DIVERGENCES, "divergence")


def _check_args(name: str, p, q) -> None:
    check_divergence(name)
    if not isinstance(p, GaussianMixture):
        raise ValueError(f"p must be a 1-D divjax.GaussianMixture, got {type(p).__name__}")
    if not isinstance(q, Gaussian):
        raise ValueError(f"q must be a divjax.Gaussian, got {type(q).__name__}")


# ---------------------------------------------------------------------------
# Infinite regions


def is_infinite(name: str, p: GaussianMixture, q: Gaussian) -> jax.Array:
    r"""Whether the divergence is ``+inf`` at ``q`` (KLs are always finite)."""
    check_divergence(name)
    smax2 = jnp.max(p.scales**2, axis=-1)
    if name == "chi2_forward":
        return q.variance <= 0.5 * smax2
    if name == "chi2_reverse":
        return q.variance >= 2.0 * smax2
    return jnp.zeros(jnp.shape(q.loc), dtype=bool)


def infinite_reason(name: str, p: GaussianMixture, q: Gaussian) -> str | None:
    """A human-readable reason when the divergence is infinite at a concrete ``q``."""
    if not bool(is_infinite(name, p, q)):
        return None
    smax2 = float(jnp.max(p.scales**2))
    var = float(q.variance)
    if name == "chi2_forward":
        return (
            f"chi2(p||q) = inf: q's variance {var:.4g} <= max_k s_k^2 / 2 = {smax2 / 2:.4g}, "
            "so p^2/q does not decay in the tails"
        )
    return (
        f"chi2(q||p) = inf: q's variance {var:.4g} >= 2 max_k s_k^2 = {2 * smax2:.4g}, "
        "so q^2/p does not decay in the tails"
    )


def _safe_q(name: str, p: GaussianMixture, q: Gaussian) -> Gaussian:
    """``q`` with infinite-region points replaced by a finite one (``log s_max``).

    Only the unused branch of the final ``where`` sees the replacement, so
    neither the value nor its autodiff gradient is polluted by NaN there.
    """
    if not name.startswith("chi2"):
        return q
    safe = jnp.log(jnp.max(p.scales, axis=-1))
    return Gaussian._make((q.loc, jnp.where(is_infinite(name, p, q), safe, q.log_scale)))


# ---------------------------------------------------------------------------
# Values


def _cross_entropy(p: GaussianMixture, q: Gaussian) -> jax.Array:
    """``-E_p[log q]``, closed form in the mixture's first two moments."""
    second = p.variance() + (p.mean() - q.loc) ** 2
    return q.log_scale + 0.5 * _LOG_2PI + 0.5 * second / q.variance


def neg_entropy(p: GaussianMixture) -> jax.Array:
    """``E_p[log p]`` for the normalized mixture, by quadrature."""
    x, w = quadrature.nodes(p)
    log_p = p.normalized_log_prob(x)
    return jnp.sum(w * jnp.exp(log_p) * log_p)


def _kl_forward(p, q):
    return neg_entropy(p) + _cross_entropy(p, q)


def _kl_reverse(p, q):
    x, w = quadrature.nodes(p, q)
    log_q = q.log_prob(x)
    e_log_p = jnp.sum(w * jnp.exp(log_q) * p.normalized_log_prob(x))
    return -q.entropy() - e_log_p


def _chi2_forward_terms(p: GaussianMixture, q: Gaussian):
    """Per-pair log-masses ``log pi_i pi_j int N_i N_j / q`` and their pieces."""
    a = p.scales**2
    ai, aj = a[:, None], a[None, :]
    mi, mj = p.locs[:, None], p.locs[None, :]
    cov = ai * aj / (ai + aj)
    centre = (mi * aj + mj * ai) / (ai + aj)
    var_sum = ai + aj
    log_n = -0.5 * (jnp.log(var_sum) + _LOG_2PI) - 0.5 * (mi - mj) ** 2 / var_sum
    s2 = q.variance
    d = s2 - cov
    diff = centre - q.loc
    log_pi = jnp.log(p.probs)
    log_int = log_n + 0.5 * _LOG_2PI + 2.0 * q.log_scale - 0.5 * jnp.log(d) + 0.5 * diff**2 / d
    log_terms = log_pi[:, None] + log_pi[None, :] + log_int
    return log_terms, diff, d, s2


def _log1p_chi2_forward(p, q):
    log_terms, *_ = _chi2_forward_terms(p, q)
    return logsumexp(log_terms)


def _chi2_reverse_nodes(p: GaussianMixture, q: Gaussian):
    # Anchors at the centres of q^2 / N_k, which bound q^2 / p from above.
    lam = 2.0 / q.variance - 1.0 / p.scales**2
    pos = lam > 0
    safe_lam = jnp.where(pos, lam, 1.0)
    centre = (2.0 * q.loc / q.variance - p.locs / p.scales**2) / safe_lam
    width = jnp.where(pos, 1.0 / jnp.sqrt(safe_lam), q.scale)
    centre = jnp.where(pos, centre, q.loc)
    return quadrature.nodes(p, q, centre, width)


def _chi2_reverse_log_terms(p, q):
    x, w = _chi2_reverse_nodes(p, q)
    return x, w, 2.0 * q.log_prob(x) - p.normalized_log_prob(x)


def _log1p_chi2_reverse(p, q):
    _, w, log_f = _chi2_reverse_log_terms(p, q)
    return logsumexp(log_f, b=w)


# Chi-squares are computed as log(1 + chi^2), which never overflows.
_LOG1P_CHI2 = {"chi2_forward": _log1p_chi2_forward, "chi2_reverse": _log1p_chi2_reverse}
_VALUES = {
    "kl_forward": _kl_forward,
    "kl_reverse": _kl_reverse,
    "chi2_forward": lambda p, q: jnp.expm1(_log1p_chi2_forward(p, q)),
    "chi2_reverse": lambda p, q: jnp.expm1(_log1p_chi2_reverse(p, q)),
}


def divergence(name: str, p: GaussianMixture, q: Gaussian) -> jax.Array:
    r"""The exact divergence ``name`` between normalized ``p`` and ``q``.

    Args:
      name: one of `DIVERGENCES`.
      p: the target (weights need not be normalized; ``p / Z`` is used).
      q: the Gaussian; a scalar ``q`` gives a scalar (vmap for batches).

    Returns:
      The value, ``+inf`` where the divergence is infinite (chi-squares; see
      the module docstring for the conditions).

    A d-dimensional target (and a `DiagGaussian` or `FullRankGaussian` ``q``)
    routes to `divjax.multivariate.mv_divergence`, which says which divergences
    are exact in which dimension.
    """
    if isinstance(p, MvGaussianMixture):
        from divjax.multivariate import mv_divergence  # downstream: it routes d = 1 here

        return mv_divergence(name, p, q)
    _check_args(name, p, q)
    value = _VALUES[name](p, _safe_q(name, p, q))
    if name.startswith("chi2"):
        value = jnp.where(is_infinite(name, p, q), jnp.inf, value)
    return value


# ---------------------------------------------------------------------------
# Hand-derived gradients


def _grad_kl_forward(p, q):
    # -E_p[grad log q] with E_p[x] and E_p[(x - mu)^2] in closed form.
    second = p.variance() + (p.mean() - q.loc) ** 2
    return Gaussian._make((-(p.mean() - q.loc) / q.variance, 1.0 - second / q.variance))


def _grad_kl_reverse(p, q):
    # grad_mu = -E_q[d/dx log p],  grad_log_sigma = -1 - E_q[(x - mu) d/dx log p].
    x, w = quadrature.nodes(p, q)
    wq = w * jnp.exp(q.log_prob(x))
    g = p.grad_log_prob(x)
    return Gaussian._make((-jnp.sum(wq * g), -1.0 - jnp.sum(wq * (x - q.loc) * g)))


def _grad_chi2_forward(p, q):
    log_terms, diff, d, s2 = _chi2_forward_terms(p, q)
    lse = logsumexp(log_terms)
    r = jnp.exp(log_terms - lse)
    d_loc = -diff / d
    d_log_scale = 2.0 - s2 / d - s2 * diff**2 / d**2
    # (1 + chi^2) * E_r[d log I]; in log space so an overflowing (finite but
    # > 1e308) chi-square gives +-inf, never inf * 0 = NaN.
    return Gaussian._make(tuple(_scaled(lse, jnp.sum(r * d)) for d in (d_loc, d_log_scale)))


def _scaled(log_scale, x):
    """``exp(log_scale) * x`` without forming ``inf * 0``."""
    return jnp.sign(x) * jnp.exp(log_scale + jnp.log(jnp.abs(x)))


def _grad_chi2_reverse(p, q):
    # 2 E_q[(q / p) grad_phi log q] = 2 int (q^2 / p) grad_phi log q.
    x, w, log_f = _chi2_reverse_log_terms(p, q)
    score = q.score(x)
    out = []
    for s in score:
        val, sign = logsumexp(log_f, b=w * s, return_sign=True)
        out.append(2.0 * sign * jnp.exp(val))
    return Gaussian._make(out)


_GRADS = {
    "kl_forward": _grad_kl_forward,
    "kl_reverse": _grad_kl_reverse,
    "chi2_forward": _grad_chi2_forward,
    "chi2_reverse": _grad_chi2_reverse,
}


def _mark_infinite(name, p, q, grad: Gaussian) -> Gaussian:
    if not name.startswith("chi2"):
        return grad
    inf = is_infinite(name, p, q)
    return jax.tree_util.tree_map(lambda g: jnp.where(inf, jnp.inf, g), grad)


def exact_grad(name: str, p: GaussianMixture, q: Gaussian) -> Gaussian:
    r"""The hand-derived exact gradient with respect to ``(loc, log_scale)``.

    - ``kl_forward``: ``-E_p[grad log q]`` from the mixture's mean and variance.
    - ``kl_reverse``: ``(-E_q[d/dx log p], -1 - E_q[(x - mu) d/dx log p])`` by
      quadrature (the seed page's formula, reparameterized).
    - ``chi2_forward``: closed form (derivative of the pairwise Gaussian integrals).
    - ``chi2_reverse``: ``2 E_q[(q / p) grad log q]`` by quadrature.

    Where the divergence is infinite there is no gradient: every component is
    returned as ``+inf`` (never a made-up finite number, never NaN).

    A d-dimensional target routes to `divjax.multivariate.mv_exact_grad`.
    """
    if isinstance(p, MvGaussianMixture):
        from divjax.multivariate import mv_exact_grad  # downstream: it routes d = 1 here

        return mv_exact_grad(name, p, q)
    _check_args(name, p, q)
    return _mark_infinite(name, p, q, _GRADS[name](p, _safe_q(name, p, q)))


def autodiff_grad(name: str, p: GaussianMixture, q: Gaussian) -> Gaussian:
    """``jax.grad`` of `divergence` with respect to ``q`` (``+inf`` where infinite).

    Chi-squares are differentiated through ``log(1 + chi^2)`` and rescaled by
    ``1 + chi^2`` in log space, so a finite chi-square too large for the float
    type gives a gradient of ``+-inf``, not NaN.
    """
    _check_args(name, p, q)
    if name in _LOG1P_CHI2:
        # grad chi^2 = (1 + chi^2) grad log(1 + chi^2), rescaled in log space.
        log1p, grad = jax.value_and_grad(lambda q_: _LOG1P_CHI2[name](p, _safe_q(name, p, q_)))(q)
        grad = jax.tree_util.tree_map(lambda g: _scaled(log1p, g), grad)
    else:
        grad = jax.grad(lambda q_: _VALUES[name](p, q_))(q)
    return _mark_infinite(name, p, q, grad)


__all__ = [
    "DIVERGENCES",
    "divergence",
    "exact_grad",
    "autodiff_grad",
    "is_infinite",
    "infinite_reason",
    "neg_entropy",
    "check_divergence",
]
