r"""Exact divergences, their gradients and where they are infinite, chosen through one table.

All divergences are between the NORMALIZED target ``p = p~ / Z`` and ``q``:

==================  ===============================================  ============
name                definition                                       ``I(a)``
==================  ===============================================  ============
``kl_forward``      ``KL(p || q) = int p log(p / q)``
``kl_reverse``      ``KL(q || p) = int q log(q / p)``
``chi2_forward``    ``chi^2(p || q) = int p^2 / q - 1``              ``a = -1``
``chi2_reverse``    ``chi^2(q || p) = int q^2 / p - 1``              ``a = 2``
``renyi_forward``   ``D_alpha(p || q) = log I(1 - alpha) / (alpha - 1)``  ``1 - alpha``
``renyi_reverse``   ``D_alpha(q || p) = log I(alpha) / (alpha - 1)``      ``alpha``
``amari``           ``(1 - I(1 - alpha)) / (alpha (1 - alpha))``          ``1 - alpha``
``hellinger``       squared: ``1 - I(1/2)``                          ``1/2``
``jensen_shannon``  ``KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``
==================  ===============================================  ============

with ``I(a) = int q^a p^(1 - a)``. Renyi at ``alpha = 1`` and Amari at
``alpha in {0, 1}`` are the KLs; Renyi at ``alpha = 2`` is ``log(1 + chi^2)``.

How (`EXACT`, keyed by (divergence, target kind, family)): ``chi2_forward``
(any ``alpha`` with ``I(-1)``) in closed form in any ``d``; ``kl_forward``'s
gradient in closed form in any ``d`` (its value adds ``E_p[log p]`` by
quadrature, ``d <= 2``); everything else by quadrature in q's standardized
variable (`divjax.kl_integrals`, `divjax.power_integrals`,
`divjax.jensen_shannon`), in ``d <= 2``, or in closed form for a
one-component target. A `divjax.LogDensity` target or a `MixtureGaussian`
``q`` has no exact divergence.

Infinite values are ``inf``, never a made-up number: ``I(a)`` diverges iff
its integrand stops decaying (`divjax.q_frame.power_integral_infinite`;
in 1-D ``chi^2(p || q) = inf`` iff ``sigma^2 <= max_k s_k^2 / 2`` and
``chi^2(q || p) = inf`` iff ``sigma^2 >= 2 max_k s_k^2``). A finite value
beyond the float type's range is ``inf`` too; `infinite_reason` says which,
and `log1p_divergence` gives ``log(1 + D)``, finite there.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from divjax import jensen_shannon, kl_integrals, power_integrals
from divjax._numerics import clamp_at_zero, log1p_from, mul_exp, times_exp
from divjax.closed_forms import cross_entropy, cross_entropy_parts, cross_entropy_terms
from divjax.divergence_table import (
    ALL_DIVERGENCES,
    ALPHA_DIVERGENCES,
    DIVERGENCES,
    EXACT,
    EXACTNESS,
    NEEDS_ALPHA,
    Method,
    check_divergence,
    check_exact_target,
    exact_available,
    exponent,
    lookup,
    reduces_to_kl,
    target_kind,
)
from divjax.line_algebra import gaussian_kl, line
from divjax.q_frame import frame, power_integral_infinite

# --- values -------------------------------------------------------------------


def _kl_values(name, p, q, rule=None):
    """``(value, log(1 + value))`` of a KL; the logarithm stays finite beyond the float range."""
    if name == "kl_reverse":
        if rule is not None:
            value = kl_integrals.kl_reverse(p, q, rule)
            return value, jnp.log1p(value)
        value, log_value = kl_integrals.kl_reverse_values(p, q)
        return value, log1p_from(value, log_value)
    if p.dim == 1 and p.num_components == 1:  # closed form, accurate however small
        ln = line(p, q)
        w = times_exp(ln.half_delta[0], math.log(2.0) - ln.log_scale)
        value, log_value = gaussian_kl(-2.0 * ln.log_rho[0], w)
        return value, log1p_from(value, log_value)
    neg_entropy = kl_integrals.neg_entropy(p)
    value = neg_entropy + cross_entropy(p, q)
    value = clamp_at_zero(value)
    # log(1 + A + B) with B = exp(log_b) the part that can overflow.
    c, log_b = cross_entropy_parts(p, q)
    big = log_b > 20.0
    lb = jnp.where(big, log_b, 20.0)
    log1p = jnp.where(
        big,
        lb + jnp.log1p((1.0 + neg_entropy + c) * jnp.exp(-lb)),
        jnp.log1p(jnp.where(big, 0.0, value)),
    )
    return value, log1p


def _from_log(name: str, alpha, log_i, log_abs_log_i):
    """``(value, log(1 + value))`` of a power divergence from ``log I`` (and ``log|log I|``)."""
    if name.startswith("chi2"):
        return jnp.expm1(log_i), log_i
    if name.startswith("renyi"):
        value = log_i / (alpha - 1.0)
        finite = jnp.isfinite(value)
        # Where log I itself overflowed: log(1 + D) = log|log I| - log|alpha - 1| to rounding.
        far = log_abs_log_i - math.log(abs(alpha - 1.0))
        return value, jnp.where(finite, jnp.log1p(jnp.where(finite, value, 0.0)), far)
    if name == "hellinger":
        value = -jnp.expm1(log_i)
        return value, jnp.log1p(value)
    c = alpha * (alpha - 1.0)  # amari: value = expm1(log I) / c
    value = jnp.expm1(log_i) / c
    if c < 0:
        return value, jnp.log1p(value)
    return value, log_i + jnp.log1p((c - 1.0) * jnp.exp(-log_i)) - math.log(c)


def _values(name: str, alpha, p, q, rule=None):
    """``(value, log(1 + value))`` at ``q`` (no infinity handling); ``rule`` replaces q's."""
    kl = reduces_to_kl(name, alpha)
    if kl is not None:
        return _kl_values(kl, p, q, rule)
    if name == "jensen_shannon":
        value = jensen_shannon.jensen_shannon(p, q, rule)
        return value, jnp.log1p(value)
    a = exponent(name, alpha)
    if rule is None:
        log_i, log_abs = power_integrals.log_power_values(p, q, a)
    else:
        log_i = power_integrals.log_power_integral(p, q, a, rule)
        log_abs = jnp.log(jnp.abs(log_i))
    return _from_log(name, alpha, log_i, log_abs)


# --- infinity -----------------------------------------------------------------


def _safe_log_scale(p, a: float) -> jax.Array:
    r"""An isotropic log scale where ``I(a) < inf`` for every ``p`` (bounds from p's factors)."""
    _, trils = p.mvn()
    d = trils.shape[-1]
    if a < 0:  # wider than every component in every direction
        return 0.5 * jnp.log(jnp.max(jnp.sum(trils**2, axis=(-2, -1))))
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(trils, 0, -2, -1))), -1)
    frob = 0.5 * jnp.log(jnp.sum(trils**2, axis=(-2, -1)))
    return jnp.min(log_det - (d - 1) * frob)  # <= log of the smallest singular value


def is_infinite(name: str, p, q, *, alpha=None) -> jax.Array:
    r"""Whether the divergence is mathematically ``+inf`` at ``q`` (the KLs never are)."""
    alpha = check_divergence(name, alpha)
    # Known wherever the gradient is exact: kl_forward in d > 2 (never infinite) included.
    lookup(name, p, q, alpha, what="gradient")
    a = exponent(name, alpha)
    if a is None or reduces_to_kl(name, alpha):
        return jnp.zeros(jnp.shape(q.loc)[: q.loc.ndim - len(q.event_shape)], bool)
    return _infinite(a, p, q)


@functools.partial(jax.jit, static_argnums=0)
def _infinite(a, p, q):
    return power_integral_infinite(frame(p, q), a)


def _guard(name, alpha, p, q):
    """``(q_used, infinite)``: ``q`` moved to a finite point where the divergence is infinite.

    Only the discarded branch of the final ``where`` sees the moved ``q``, so
    neither values nor gradients are polluted by NaN from the infinite region.
    """
    a = exponent(name, alpha)
    if a is None or 0.0 <= a <= 1.0 or reduces_to_kl(name, alpha):
        return q, jnp.zeros((), bool)
    inf = power_integral_infinite(frame(p, q), a)
    safe = jax.lax.stop_gradient(q.isotropic(_safe_log_scale(p, a)))
    return jax.tree_util.tree_map(lambda s, x: jnp.where(inf, s, x), safe, q), inf


def _checked_values(name, p, q, alpha, rule=None):
    alpha = check_divergence(name, alpha)
    lookup(name, p, q, alpha)
    return _guarded_values(name, alpha, p, q, rule)


# The public functions validate on Python types, then run one compiled program
# per (name, alpha, shapes): called eagerly they do not dispatch op by op.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _guarded_values(name, alpha, p, q, rule):
    q_used, inf = _guard(name, alpha, p, q)
    value, log1p = _values(name, alpha, p, q_used, rule)
    return jnp.where(inf, jnp.inf, value), jnp.where(inf, jnp.inf, log1p)


def objective(name: str, p, q, *, alpha=None, rule=None) -> jax.Array:
    r"""What `divjax.optimal_q` minimizes: ``D`` for the KLs and JS, ``log(1 + D)`` otherwise.

    Both have the same minima; the logarithm tames the chi-squares' range.
    ``rule`` (a fixed ``(z, w)`` in q's frame) replaces the adaptive quadrature.
    """
    value, log1p = _checked_values(name, p, q, alpha, rule)
    return value if reduces_to_kl(name, alpha) or name == "jensen_shannon" else log1p


def divergence(name: str, p, q, *, alpha=None) -> jax.Array:
    r"""The exact divergence ``name`` between the normalized ``p`` and ``q``.

    Args:
      name: one of `DIVERGENCES` or `ALPHA_DIVERGENCES`.
      p: a `divjax.GaussianMixture` (weights need not be normalized).
      q: a single (unbatched) `Gaussian`, `DiagGaussian` or `FullRankGaussian`
        of ``p``'s dimension; ``vmap`` for batches.
      alpha: the order of ``renyi_forward``, ``renyi_reverse`` and ``amari``.

    Returns:
      The value: ``+inf`` where the divergence is infinite, and where it is
      finite but beyond the float type's range (`infinite_reason` tells which).

    Raises:
      ValueError: an unknown name, a bad ``alpha``, or no exact method for
        this target, family and dimension (the message says what is exact).
    """
    return _checked_values(name, p, q, alpha)[0]


def log1p_divergence(name: str, p, q, *, alpha=None) -> jax.Array:
    r"""``log(1 + D)``: finite wherever ``D`` is, even beyond the float range.

    For the chi-squares this is ``log I(a)``, computed directly (never through
    ``D``); ``log(1 + chi^2(p || q))`` is the CHIVI upper bound's shape.
    """
    return _checked_values(name, p, q, alpha)[1]


def infinite_reason(name: str, p, q, *, alpha=None) -> str | None:
    """Why the divergence is ``inf`` at a concrete ``q``, or None where it is finite."""
    alpha = check_divergence(name, alpha)
    value, log1p = (float(v) for v in _checked_values(name, p, q, alpha))
    if math.isfinite(value):
        return None
    if bool(is_infinite(name, p, q, alpha=alpha)):
        a = exponent(name, alpha)
        grow = "q^a p^(1-a)" if a not in (-1.0, 2.0) else ("p^2/q" if a == -1.0 else "q^2/p")
        return (
            f"{name} = inf: the integrand {grow} (a = {a:g}) does not decay in the tails "
            f"for this q's covariance {np.asarray(q.covariance()).tolist()}"
        )
    dtype = jnp.result_type(q.loc)
    big = float(jnp.finfo(dtype).max)
    if math.isfinite(log1p):
        size = f"about 10^{log1p / math.log(10):.4g}"
        how = f"log1p_divergence gives log(1 + D) = {log1p:.6g}"
    else:
        size, how = "beyond even log space", "its logarithm overflows too"
    return (
        f"{name} is finite ({size}) but beyond {jnp.dtype(dtype).name}'s range "
        f"(max {big:.3g}); {how}"
    )


# --- gradients ----------------------------------------------------------------


def _mark_infinite(grad, inf):
    return jax.tree_util.tree_map(lambda g: jnp.where(inf, jnp.inf, g), grad)


def _cross_entropy_grad(p, q):
    """``grad -E_p[log q]``, rescaled after differentiation (``+-inf``, never NaN, beyond range)."""
    g_c = jax.grad(lambda q_: cross_entropy_terms(p, q_)[0])(q)
    log_f = jax.lax.stop_gradient(cross_entropy_terms(p, q)[2])
    g_q = jax.grad(lambda q_: cross_entropy_terms(p, q_)[1])(q)
    return jax.tree_util.tree_map(lambda a, b: a + mul_exp(b, log_f), g_c, g_q)


def _autodiff(name, alpha, p, q):
    kl = reduces_to_kl(name, alpha)
    if kl == "kl_reverse":
        g, log_s = jax.grad(lambda q_: kl_integrals.kl_reverse_scaled(p, q_), has_aux=True)(q)
        return jax.tree_util.tree_map(lambda v: mul_exp(v, log_s), g)
    if kl == "kl_forward":
        return _cross_entropy_grad(p, q)  # E_p[log p] does not depend on q
    if kl is not None or name == "jensen_shannon":
        return jax.grad(lambda q_: _values(name, alpha, p, q_)[0])(q)
    a = exponent(name, alpha)
    # grad log I from pieces that stay finite where log I overflows: never NaN.
    g, log_i = power_integrals.log_power_grad(p, q, a)
    if name.startswith("renyi"):
        return jax.tree_util.tree_map(lambda v: v / (alpha - 1.0), g)
    # value = c expm1(log I): chi-squares c = 1, Hellinger -1, Amari 1 / (alpha (alpha - 1)).
    c = {"hellinger": -1.0, "amari": 1.0 / (alpha * (alpha - 1.0)) if alpha else 1.0}.get(name, 1.0)
    return jax.tree_util.tree_map(lambda v: mul_exp(c * v, log_i), g)


def autodiff_grad(name: str, p, q, *, alpha=None):
    r"""``jax.grad`` of `divergence` with respect to ``q``'s parameters (``+inf`` where infinite).

    Power divergences are differentiated through ``log I`` and rescaled in log
    space, so a value beyond the float range gives ``+-inf``, never NaN.
    """
    alpha = check_divergence(name, alpha)
    lookup(name, p, q, alpha, what="gradient")
    return _guarded_autodiff(name, alpha, p, q)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _guarded_autodiff(name, alpha, p, q):
    q_used, inf = _guard(name, alpha, p, q)
    return _mark_infinite(_autodiff(name, alpha, p, q_used), inf)


def exact_grad(name: str, p, q, *, alpha=None):
    r"""The exact gradient with respect to ``q``'s parameters (a pytree like ``q``).

    Hand-derived formulas (`divjax.gradients_1d`) for the four KL and
    chi-square divergences and a 1-D `Gaussian`; `autodiff_grad` otherwise.
    ``kl_forward``'s gradient is closed form in any ``d``. Where the divergence
    is infinite every component is ``+inf`` (never a made-up number, never NaN).
    """
    alpha = check_divergence(name, alpha)
    lookup(name, p, q, alpha, what="gradient")
    return _guarded_exact_grad(name, alpha, p, q)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _guarded_exact_grad(name, alpha, p, q):
    method = lookup(name, p, q, alpha, what="gradient")
    q_used, inf = _guard(name, alpha, p, q)
    if method.hand_grad is not None and reduces_to_kl(name, alpha) in (None, name):
        grad = method.hand_grad(p, q_used)
    elif reduces_to_kl(name, alpha) == "kl_forward":
        grad = _cross_entropy_grad(p, q_used)
    else:
        grad = _autodiff(name, alpha, p, q_used)
    return _mark_infinite(grad, inf)


__all__ = [
    "ALL_DIVERGENCES",
    "ALPHA_DIVERGENCES",
    "DIVERGENCES",
    "EXACT",
    "EXACTNESS",
    "NEEDS_ALPHA",
    "Method",
    "autodiff_grad",
    "check_divergence",
    "check_exact_target",
    "divergence",
    "exact_available",
    "exact_grad",
    "exponent",
    "infinite_reason",
    "is_infinite",
    "log1p_divergence",
    "lookup",
    "objective",
    "reduces_to_kl",
    "target_kind",
]
