r"""``log I(a) = log int q^a p^(1 - a)`` where it has no closed form, by quadrature.

- ``a > 1`` (chi-square reverse, Renyi ``alpha > 1``): in q's standardized
  variable ``z``, with the peaks of the Gaussian-shaped bounds
  ``q^a N_k^(1 - a)`` as anchors (`divjax.pair_rules.q_rule`).
- ``a < 1`` (Hellinger, Renyi ``alpha < 1``, Amari, Renyi forward) in 1-D:
  the line is shared among *claims* (`divjax.quadrature.claims_rule`), the
  bounds' peaks, each part integrated in its owner's variable, so a component
  1e-10 as wide as ``q`` and 1e8 of its widths away is still resolved.
- ``a = -1``: closed form (`divjax.closed_forms.chi2_forward_log1p`); one
  component: closed form.
- Once ``|log I|`` exceeds ``100 / eps`` it is the largest (smallest) of the
  single-component closed forms to rounding
  (`divjax.line_algebra.asymptotic_log_power`); the quadrature is then
  evaluated at a harmless ``q`` and discarded. `power_pieces` keeps every piece
  finite with a finite derivative, so ``grad log I`` is never NaN.

2-D: the same in ``z`` with a tensor-product rule; ``d > 2`` has no quadrature.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import quadrature
from divjax._numerics import clamp_at_zero, half_difference, mul_exp, safe_log_abs
from divjax.closed_forms import chi2_forward_log1p
from divjax.line_algebra import (
    asymptotic_log_power,
    line,
    peaks,
    pick,
    power_singles,
    scaled_w2,
    single_log_power_grad,
)
from divjax.pair_rules import check_dim, claim_crossings, claim_u, q_rule, ucap
from divjax.q_frame import (
    frame,
    log_power_integrand,
    power_integral_infinite,
    power_terms,
    single_log_power_integral,
)

stop = jax.lax.stop_gradient


def asymptotic_threshold(dtype) -> float:
    """``|log I|`` beyond which the single-component closed forms are exact to rounding."""
    return 100.0 / float(jnp.finfo(dtype).eps)


def safe_q(p, q, a: float, use):
    """A 1-D ``q`` moved to a harmless point where ``use`` (only a discarded branch sees it)."""
    s = jnp.abs(jnp.reshape(p.scale_trils, (-1,)))
    dtype = jnp.result_type(q.loc)
    log_scale = jnp.log(jnp.max(s) if a < 1 else jnp.min(s)).astype(dtype)
    safe = (jnp.reshape(p.locs, (-1,))[0].astype(dtype), log_scale)
    return type(q)._make(tuple(jnp.where(use, stop(s_), x) for s_, x in zip(safe, q)))


def _claims_power(p, q, a: float) -> jax.Array:
    r"""``log I(a)`` for a 1-D mixture and ``a < 1``, on the claims of the bounds' peaks."""
    ln = line(p, q)
    pk = peaks(ln, a)
    b = 1.0 - a
    base = jnp.where(pk.base_q, ln.loc, ln.locs)
    half_diff = half_difference(base[:, None], base[None, :]) + 0.5 * (
        pk.offset[:, None] - pk.offset[None, :]
    )
    lw = pk.log_width
    cross = claim_crossings(p, ln, base, pk.offset, lw)
    t, w = quadrature.claims_rule(half_diff, lw, cross)
    u = claim_u(half_diff, lw, t, ucap(lw.dtype))
    e = pk.log_peak - 0.5 * u * u
    log_f = lw[:, None] + b * logsumexp(e / b, axis=-1)
    return logsumexp(log_f.ravel(), b=w.ravel())


def _q_frame_power(p, q, a: float, rule=None) -> jax.Array:
    f = frame(p, q)
    terms = power_terms(f, a)
    z, w = q_rule(p, f, terms) if rule is None else rule
    return logsumexp(log_power_integrand(terms, z, a), b=w)


class PowerPieces(NamedTuple):
    r"""``log I = where(use, rest - a b w2 exp(log_scale) / 2, value)`` (see `power_pieces`)."""

    use: jax.Array  # the single-component limit (exact to rounding there)
    value: jax.Array  # the quadrature or pairwise closed form (meaningless where use)
    rest: jax.Array  # rest_k of the selected component
    w2: jax.Array  # w_k^2 at a power-of-two scale (finite)
    log_scale: jax.Array  # w_k^2 = w2 exp(log_scale), a constant
    log_w: jax.Array  # log|w_k|
    infinite: jax.Array  # I(a) = inf


def power_pieces(p, q, a: float) -> PowerPieces:
    r"""The pieces of ``log I(a)``, each finite with a finite derivative.

    In 1-D ``use`` where ``|log I_k| > 100 / eps`` (always, for one component);
    the quadrature is then evaluated at a harmless ``q`` and discarded.
    Differentiating ``rest`` and ``w2`` and recombining as
    ``d rest - a b exp(log_scale) d w2 / 2`` (`divjax._numerics.mul_exp`)
    gives ``d log I`` where ``log I`` overflows.
    """
    f = frame(p, q)
    infinite = power_integral_infinite(f, a)
    dtype = jnp.result_type(q.loc)
    if p.dim == 1:
        ln = line(p, q)
        ps = power_singles(ln, a)
        k, asym = asymptotic_log_power(ps, a)
        w2, log_scale = scaled_w2(ln, a, k)
        rest, log_w = pick(ps.rest, k), pick(ps.log_abs_w, k)
        if p.num_components == 1:
            zero = jnp.zeros((), dtype)
            return PowerPieces(jnp.ones((), bool), zero, rest, w2, log_scale, log_w, infinite)
        use = stop(~(jnp.abs(asym) <= asymptotic_threshold(dtype)))
        q_used = safe_q(p, q, a, use | infinite)
    else:  # no asymptotic branch; quadrature (d <= 2) only where no closed form exists
        use, q_used = jnp.zeros((), bool), q
        rest, w2, log_scale = (jnp.zeros((), dtype) for _ in range(3))
        log_w = jnp.full((), -jnp.inf, dtype)
    if a == -1.0:
        value = chi2_forward_log1p(p, q_used)
    elif p.dim == 1 and a < 1:
        value = _claims_power(p, q_used, a)
    elif p.num_components == 1:
        value = single_log_power_integral(power_terms(frame(p, q_used), a))
    else:
        check_dim(p)
        value = _q_frame_power(p, q_used, a)
    return PowerPieces(use, value, rest, w2, log_scale, log_w, infinite)


def _log_i(pc: PowerPieces, a: float):
    """``log I`` from its pieces (clamped to its sign, ``+inf`` where infinite)."""
    ab = a * (1.0 - a)
    asym = pc.rest - 0.5 * ab * mul_exp(pc.w2, pc.log_scale)
    log_i = jnp.where(pc.use, asym, pc.value)
    return clamp_at_zero(jnp.where(pc.infinite, jnp.inf, log_i), _sign(a))


def log_power_values(p, q, a: float) -> tuple[jax.Array, jax.Array]:
    r"""``(log I(a), log|log I(a)|)`` (normalized ``p``); ``log I = +inf`` where infinite.

    ``log|log I|`` is what the Renyi divergences need where ``log I`` itself
    is beyond the float range (it is finite there).
    """
    if a in (0.0, 1.0):
        zero = jnp.zeros((), jnp.result_type(q.loc))
        return zero, jnp.full_like(zero, -jnp.inf)
    pc = power_pieces(p, q, a)
    log_i = _log_i(pc, a)
    far = math.log(0.5 * abs(a * (1.0 - a))) + 2.0 * pc.log_w
    log_abs = jnp.where(jnp.isfinite(log_i), safe_log_abs(log_i), far)
    return log_i, jnp.where(pc.infinite, jnp.inf, log_abs)


def log_power_grad(p, q, a: float):
    r"""``(grad log I(a), log I(a))`` by autodiff of `power_pieces`, never NaN.

    Where even ``w_k^2`` overflows (``log I`` beyond the float range) the
    single-component limit's derivative is taken in closed form
    (`divjax.line_algebra.single_log_power_grad`): autodiff would have to
    multiply an overflowing ``u^2`` by an underflowing ``rho^2``.
    """
    ab = a * (1.0 - a)

    def selected(q_):  # only the branch in use is differentiated (one backward pass)
        pc = power_pieces(p, q_, a)
        return jnp.where(pc.use, pc.rest - 0.5 * ab * pc.w2, pc.value), pc

    g, pc = jax.grad(selected, has_aux=True)(q)
    log_i = _log_i(pc, a)
    if p.dim != 1:
        return g, log_i
    ln = line(p, q)
    k, _ = asymptotic_log_power(power_singles(ln, a), a)
    g_far = type(q)._make(single_log_power_grad(ln, a, k))
    far = pc.use & (pc.log_scale > 0)
    return jax.tree_util.tree_map(lambda gi, gf: jnp.where(far, gf, gi), g, g_far), log_i


def _sign(a: float) -> float:
    """The sign of ``log I(a)`` (Jensen): ``-1`` for ``0 < a < 1``, ``+1`` otherwise."""
    return -1.0 if 0 < a < 1 else 1.0


def log_power_integral(p, q, a: float, rule=None) -> jax.Array:
    r"""``log I(a) = log int q^a p^(1 - a) dx`` (normalized ``p``), ``+inf`` where infinite.

    Closed form for ``a in {0, 1}`` (zero), ``a = -1`` (`chi2_forward_log1p`)
    and a one-component ``p``; quadrature otherwise (see the module
    docstring; ``rule``: a fixed ``(z, w)`` in q's frame instead).
    """
    if rule is None:
        return log_power_values(p, q, a)[0]
    if a in (0.0, 1.0):
        return jnp.zeros((), jnp.result_type(q.loc))
    if a == -1.0:
        return chi2_forward_log1p(p, q)
    f = frame(p, q)
    value = _q_frame_power(p, q, a, rule)
    return jnp.where(power_integral_infinite(f, a), jnp.inf, value)


__all__ = [
    "PowerPieces",
    "asymptotic_threshold",
    "log_power_grad",
    "log_power_integral",
    "log_power_values",
    "power_pieces",
    "safe_q",
]
