r"""The exact integrals that have no closed form, by quadrature in the right frame.

Every integral is taken in a variable in which the part of the integrand that
matters is resolved, and every quantity that can overflow is kept as a
logarithm, so values stay accurate however narrow (``sigma = 1e-30``), wide or
far (``|mu| = 1e30``) ``q`` is, and a value beyond the float range comes out as
``inf`` with a finite logarithm.

- ``KL(q || p)`` (`kl_reverse_values`): ``-E_q[log(p / q)]`` in q's
  standardized variable ``z`` (``x = mu + L z``), centred on the component
  that dominates ``q``'s bulk: ``KL = -E_q[r_*] - E_q[log sum_k exp(r_k - r_*)]``
  with ``r_k = log(pi_k N_k / q)``. ``E_q[r_*]`` is closed form, so a ``q``
  1e5 away costs no digits (and no digits of its gradient); in 1-D all terms
  are divided by a scale ``S`` where they would overflow.
- ``I(a) = int q^a p^(1 - a)``, ``a > 1`` (chi-square reverse, Renyi
  ``alpha > 1``): in ``z``, with the peaks of the Gaussian-shaped bounds
  ``q^a N_k^(1 - a)`` as anchors (`q_rule`).
- ``I(a)``, ``a < 1`` (Hellinger, Renyi ``alpha < 1``, Amari, Renyi forward)
  and Jensen-Shannon in 1-D: the line is shared among *claims*
  (`divjax.quadrature.claims_rule`) -- the bounds' peaks, or ``q`` and the
  components -- each part integrated in its owner's variable, so a component
  1e-10 as wide as ``q`` and 1e8 of its widths away is still resolved.
- Once ``|log I|`` exceeds ``100 / eps`` it is the largest (smallest) of the
  single-component closed forms to rounding (`divjax.closed_forms.asymptotic_log_power`);
  the quadrature is then evaluated at a harmless ``q`` and discarded.
- ``E_p[log p]`` (`neg_entropy`, for ``KL(p || q)``) is integrated in ``x``
  around p's components.

2-D: the same in ``z`` with a tensor-product rule (Jensen-Shannon's p-part as
``p``'s mass outside q's window); ``d > 2`` has no quadrature.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from divjax import _linalg, quadrature
from divjax.closed_forms import (
    Frame,
    asymptotic_log_power,
    chi2_forward_log1p,
    clamp_at_zero,
    frame,
    gaussian_kl,
    half_difference,
    line,
    log_max,
    log_power_integrand,
    log_ratios,
    mul_exp,
    peaks,
    pick,
    power_integral_infinite,
    power_singles,
    power_terms,
    safe_log_abs,
    scaled_w2,
    single_log_power_grad,
    single_log_power_integral,
    times_exp,
)
from divjax.families import LOG_2PI

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * LOG_2PI
# Terms are divided by S = exp(log A - _SCALE_AT) once their size A exceeds exp(_SCALE_AT).
_SCALE_AT = 40.0
stop = jax.lax.stop_gradient


def _big(dtype) -> float:
    return 0.125 * float(jnp.finfo(dtype).max)


def _ucap(dtype) -> float:
    """A standardized distance whose square is still finite: beyond it a density is 0."""
    return 1e-3 * math.sqrt(float(jnp.finfo(dtype).max))


def _divide(num, log_den, cap):
    r"""``num / exp(log_den)`` clipped to ``+-cap``, with finite gradients everywhere.

    A multiplication by ``exp(-log_den)`` (a division's derivative would form
    ``den^2``, which underflows for ``den = 1e-30`` in float32).
    """
    lm = log_max(jnp.result_type(num)) - 1.0
    inv = jnp.exp(-jnp.clip(log_den, -lm, lm))
    ok = jnp.abs(num) * inv < cap
    return jnp.where(ok, jnp.where(ok, num, 0.0) * inv, jnp.sign(num) * cap)


# --- rules in q's frame -------------------------------------------------------


def _component_anchors(f: Frame, p) -> tuple[jax.Array, jax.Array]:
    """Centres and per-axis extents of p's components in q's frame, ``(M, d)`` each."""
    locs, trils = p.mvn()
    if f.loc.shape[-1] == 1:
        ln_big = math.log(_ucap(f.u.dtype))
        log_c = safe_log_abs(half_difference(f.loc[0], locs[:, 0])) + _LOG2 - f.log_diag[0]
        centre = -jnp.sign(f.loc[0] - locs[:, 0]) * jnp.exp(jnp.minimum(log_c, ln_big))
        width = jnp.exp(jnp.minimum(-f.log_rho, ln_big))
        return centre[:, None], width[:, None]
    centre = _linalg.solve_lower(f.tril, locs - f.loc)
    v = _linalg.solve_lower(f.tril, jnp.swapaxes(trils, -1, -2))  # rows: L^{-1} T_k columns
    return centre, jnp.sqrt(jnp.sum(v**2, axis=-2))


def q_rule(p, f: Frame, terms=None) -> tuple[jax.Array, jax.Array]:
    r"""Nodes ``z (N, d)`` and weights ``(N,)`` for ``int g(z) dz`` in q's frame.

    ``terms`` (`divjax.closed_forms.PowerTerms`) adds the peaks of the power
    integrand's per-component bounds as anchors and to the window.
    """
    d = f.loc.shape[-1]
    dtype = f.u.dtype
    centres = [jnp.zeros((1, d), dtype)]
    widths = [jnp.ones((1, d), dtype)]
    if terms is not None:
        eye = jnp.eye(d, dtype=dtype)
        cov = _linalg.inv_spd(jnp.where(terms.pd[:, None, None], terms.prec, eye))
        ok = terms.pd[:, None] & jnp.all(jnp.isfinite(terms.centre), -1, keepdims=True)
        far = _ucap(dtype)  # a peak farther out is in the asymptotic regime (log I > 1e30)
        centres.append(jnp.clip(jnp.where(ok, terms.centre, 0.0), -far, far))
        widths.append(jnp.clip(jnp.sqrt(jnp.diagonal(cov, 0, -2, -1)), 0.0, far))
    lo, hi = quadrature.window(jnp.concatenate(centres), jnp.concatenate(widths))
    comp_c, comp_w = _component_anchors(f, p)
    centres, widths = jnp.concatenate(centres + [comp_c]), jnp.concatenate(widths + [comp_w])
    if d == 2:
        return quadrature.rule_2d(centres, widths, lo, hi)
    locs, trils = p.mvn()
    x_c, kappa = quadrature.mixture_crossings(p.log_probs, locs[:, 0], trils[:, 0, 0])
    crossings = _crossings_in(x_c, kappa, f.loc[0], f.log_diag[0])
    z, w = quadrature.rule_1d(centres[:, 0], widths[:, 0], lo[0], hi[0], crossings)
    return z[:, None], w


def _crossings_in(x_c, kappa, centre, log_width):
    """Crossings ``(t, kappa_t)`` in the variable ``t = (x - centre) / width``, clipped."""
    big = _ucap(jnp.result_type(x_c))
    log_t = safe_log_abs(half_difference(x_c, centre)) + _LOG2 - log_width
    t = jnp.sign(x_c - centre) * jnp.exp(jnp.minimum(log_t, math.log(big)))
    k = jnp.exp(jnp.clip(jnp.log(kappa) + log_width, -math.log(big), math.log(big)))
    return t, k


def _log_std_normal(z: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(z**2, -1) - 0.5 * z.shape[-1] * LOG_2PI


def _check_dim(p) -> None:
    if p.dim > 2:
        raise ValueError(f"quadrature needs d <= 2, got d = {p.dim}")


# --- KL(q || p) -----------------------------------------------------------------


def _dominant(expected_r):
    """The component with the largest ``E_q[r_k]`` (stop-gradient)."""
    return stop(jnp.argmax(jnp.where(jnp.isnan(expected_r), -jnp.inf, expected_r)))


def _kl_reverse_centred(p, q, rule=None) -> jax.Array:
    r"""``KL(q || p)`` in q's frame (``d <= 2``): ``-E_q[r_*] - E_q[log sum_k exp(r_k - r_*)]``."""
    _check_dim(p)
    f = frame(p, q)
    z, w = q_rule(p, f) if rule is None else rule
    d = z.shape[-1]
    btb = jnp.swapaxes(f.b, -1, -2) @ f.b
    tr = d - jnp.trace(btb, axis1=-2, axis2=-1)
    expected_r = 0.5 * tr - 0.5 * jnp.sum(f.u**2, -1) + f.c  # E_q[r_k]
    k = _dominant(expected_r)
    r = log_ratios(f, z)
    sp = logsumexp(r - r[:, k][:, None], axis=-1)
    return -expected_r[k] - quadrature.weighted_sum(w * jnp.exp(_log_std_normal(z)), sp)


def _kl_line_terms(p, q):
    r"""The pieces of ``KL(q || p)`` for a 1-D mixture, divided by ``S`` (`kl_reverse_scaled`)."""
    ln = line(p, q)
    dtype = ln.log_scale.dtype
    log_u = safe_log_abs(ln.half_delta) + _LOG2 - ln.log_s
    log_a = jnp.logaddexp(2.0 * log_u, 2.0 * ln.log_rho) - _LOG2  # (u^2 + rho^2) / 2
    c = ln.log_pi + ln.log_rho
    small = log_a < 60.0
    score = c + 0.5 - jnp.exp(jnp.minimum(log_a, 60.0))  # E_q[r_k]
    k = stop(
        jnp.where(jnp.any(small), jnp.argmax(jnp.where(small, score, -jnp.inf)), jnp.argmin(log_a))
    )
    log_s = stop(jnp.maximum(log_a[k] - _SCALE_AT, 0.0))
    inv_s = jnp.exp(-log_s)
    lam = jnp.maximum(log_u, ln.log_rho)
    # Components far larger than the scale are negligible spikes or far-away tails.
    keep = stop(2.0 * lam - log_s < log_max(dtype) - 20.0)
    us = jnp.where(
        keep, 2.0 * ln.half_delta * jnp.exp(jnp.where(keep, -ln.log_s - 0.5 * log_s, 0.0)), 0.0
    )
    rs = jnp.where(keep, jnp.exp(jnp.where(keep, ln.log_rho - 0.5 * log_s, 0.0)), 0.0)
    f = frame(p, q)
    z, w = q_rule(p, f)
    z = z[:, 0]
    mass = w * jnp.exp(-0.5 * z * z - _HALF_LOG_2PI)
    v = us + rs * z[:, None]  # (u_k + rho_k z) / sqrt(S)
    r = jnp.where(keep, (c + 0.5 * z[:, None] ** 2) * inv_s - 0.5 * v * v, -jnp.inf)
    gap = (r - r[:, k][:, None]) * jnp.exp(jnp.minimum(log_s, 60.0))
    gap = jnp.where(keep, gap, -jnp.inf)
    return ln, k, log_s, inv_s, us, rs, z, mass, v, gap, c


def kl_reverse_scaled(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``(K, log S)`` with ``KL(q || p) = K S`` (``log S`` a constant, ``0`` unless huge).

    1-D mixtures: the centred form of the module docstring with every term
    divided by ``S = exp(max(0, log A_* - 40))``, ``A_* = (u_*^2 + rho_*^2) / 2``
    the dominant component's size. One component: closed form. 2-D: the
    centred form in q's frame (``S = 1``).
    """
    if p.dim == 1 and p.num_components == 1:
        ln = line(p, q)
        w = 2.0 * ln.half_delta[0] * jnp.exp(-ln.log_s[0])
        value, _ = gaussian_kl(2.0 * ln.log_rho[0], w)
        return value, jnp.zeros_like(value)
    if p.dim != 1:
        value = _kl_reverse_centred(p, q)
        value = clamp_at_zero(value)
        return value, jnp.zeros_like(value)
    ln, k, log_s, inv_s, us, rs, z, mass, v, gap, c = _kl_line_terms(p, q)
    expected = (c[k] + 0.5) * inv_s - 0.5 * (us[k] ** 2 + rs[k] ** 2)
    sp = logsumexp(gap, axis=-1)  # >= 0: the k-th gap is 0
    scaled = -expected - inv_s * jnp.sum(mass * sp)
    scaled = clamp_at_zero(scaled)  # no rounding-level negative
    return scaled, log_s


def kl_reverse_values(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``(KL(q || p), log KL(q || p))``; the logarithm is finite where the value overflows."""
    if p.dim == 1 and p.num_components == 1:
        ln = line(p, q)
        w = 2.0 * ln.half_delta[0] * jnp.exp(-ln.log_s[0])
        return gaussian_kl(2.0 * ln.log_rho[0], w)
    scaled, log_s = kl_reverse_scaled(p, q)
    return mul_exp(scaled, log_s), jnp.log(scaled) + log_s


def kl_reverse_line_grad(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``d KL(q || p) / d(mu, log sigma)`` for a 1-D mixture, from the centred form.

    ``d(-E_q[r_*]) = (u_* / s_*, rho_*^2 - 1)`` in closed form, and
    ``d E_q[log sum_k exp(r_k - r_*)] = E_q[sum_k resp_k (dr_k - dr_*)]`` with
    ``dr_k / dmu = -(u_k + rho_k z) / s_k``,
    ``dr_k / dlog sigma = 1 - (u_k + rho_k z) rho_k z``; far from ``p`` every
    ``resp_k``, ``k != *``, vanishes and the gradient is the closed form alone.
    """
    ln, k, log_s, inv_s, us, rs, z, mass, v, gap, c = _kl_line_terms(p, q)
    resp = jax.nn.softmax(gap, axis=-1)
    inv_sk = jnp.exp(-ln.log_s - 0.5 * log_s)  # 1 / (s_k sqrt(S))
    d_loc = -v * inv_sk  # (dr_k / dmu) / S
    d_ls = inv_s - v * rs * z[:, None]  # (dr_k / dlog sigma) / S
    g_loc = us[k] * inv_sk[k] - jnp.sum(mass * jnp.sum(resp * (d_loc - d_loc[:, k][:, None]), -1))
    g_ls = rs[k] ** 2 - inv_s - jnp.sum(mass * jnp.sum(resp * (d_ls - d_ls[:, k][:, None]), -1))
    return mul_exp(g_loc, log_s), mul_exp(g_ls, log_s)


def kl_reverse(p, q, rule=None) -> jax.Array:
    r"""``KL(q || p) = -E_q[log(p / q)]``, in q's frame (``rule``: a fixed ``(z, w)`` instead)."""
    if rule is None:
        return kl_reverse_values(p, q)[0]
    return _kl_reverse_centred(p, q, rule)


# --- I(a) ---------------------------------------------------------------------


def _threshold(dtype) -> float:
    """``|log I|`` beyond which the single-component closed forms are exact to rounding."""
    return 100.0 / float(jnp.finfo(dtype).eps)


def _safe_q(p, q, a: float, use):
    """A 1-D ``q`` moved to a harmless point where ``use`` (only a discarded branch sees it)."""
    s = jnp.abs(jnp.reshape(p.scale_trils, (-1,)))
    dtype = jnp.result_type(q.loc)
    log_scale = jnp.log(jnp.max(s) if a < 1 else jnp.min(s)).astype(dtype)
    safe = (jnp.reshape(p.locs, (-1,))[0].astype(dtype), log_scale)
    return type(q)._make(tuple(jnp.where(use, stop(s_), x) for s_, x in zip(safe, q)))


def _claim_u(half_diff, lw, t, cap):
    r"""``u[o, n, j] = (x_n - c_j) / w_j`` at the nodes ``t (J, N)`` of every frame ``o``.

    ``x_n - c_j = (c_o - c_j) + w_o t_n`` is formed at a power-of-two scale
    (``2^-8`` in frames wider than 1), so it never overflows and two huge
    terms never cancel into a false zero; exactly ``t`` for ``j = o``.
    """
    f_log = jnp.where(lw > 0, -8.0 * _LOG2, 0.0)
    num = half_diff[:, None, :] * (2.0 * jnp.exp(f_log))[:, None, None] + (
        jnp.exp(lw + f_log)[:, None, None] * t[:, :, None]
    )
    u = _divide(num, lw[None, None, :] + f_log[:, None, None], cap)
    own = jnp.eye(lw.shape[0], dtype=bool)[:, None, :]
    return jnp.where(own, t[:, :, None], u)


def _claim_crossings(p, ln, base, offset, lw):
    """The mixture's crossings in every claim's variable: ``(t (J, C), width (J, C))``."""
    big = _big(ln.log_scale.dtype)
    x_c, kappa = quadrature.mixture_crossings(p.log_probs, ln.locs, jnp.exp(ln.log_s))
    rel = jnp.clip(2.0 * half_difference(x_c[None, :], base[:, None]), -big, big)
    rel = jnp.clip(rel - offset[:, None], -big, big)
    t, k = _crossings_in(rel, kappa[None, :], 0.0, lw[:, None])
    return t, 1.0 / k


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
    cross = _claim_crossings(p, ln, base, pk.offset, lw)
    t, w = quadrature.claims_rule(half_diff, lw, cross)
    u = _claim_u(half_diff, lw, t, _ucap(lw.dtype))
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
    ``d rest - a b exp(log_scale) d w2 / 2`` (`divjax.closed_forms.mul_exp`)
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
        use = stop(~(jnp.abs(asym) <= _threshold(dtype)))
        q_used = _safe_q(p, q, a, use | infinite)
    else:
        _check_dim(p)
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
    (`divjax.closed_forms.single_log_power_grad`): autodiff would have to
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


# --- Jensen-Shannon -----------------------------------------------------------

# N(tau) = (1 + tau) log(1 + tau) + (1 - tau) log(1 - tau) = sum_n tau^(2n) / (n (2n - 1)).
_JS = tuple(1.0 / (n * (2 * n - 1)) for n in range(1, 6))


def _js_generator(y):
    r"""``F(-y)``, ``y = |log(p / q)|``: the Jensen-Shannon integrand is ``max(p, q) F(-y) / 2``.

    ``F(L) = e^L log(2 e^L / (1 + e^L)) + log(2 / (1 + e^L)) >= 0``; for small
    ``y`` it is ``N(tau) / (1 - tau)``, ``tau = -tanh(y / 2)``, from a series,
    so that ``q`` close to ``p`` keeps relative accuracy (the direct form
    loses ``2 eps / y`` relative, so it takes over from ``y = 0.02``).
    """
    near = y < 0.02
    yn = jnp.where(near, y, 0.0)
    tau = -jnp.tanh(0.5 * yn)
    t2 = tau * tau
    acc = jnp.zeros_like(t2) + _JS[-1]
    for c in _JS[-2::-1]:
        acc = acc * t2 + c
    series = t2 * acc / (1.0 - tau)
    yf = jnp.where(near, 1.0, y)
    e = jnp.exp(-yf)
    l1 = jnp.log1p(e)
    direct = e * (_LOG2 - yf - l1) + _LOG2 - l1
    return jnp.where(near, series, direct)


def _js_line(p, q) -> jax.Array:
    r"""Jensen-Shannon for a 1-D mixture: claims ``q`` and the components, one integral."""
    ln = line(p, q)
    centres = jnp.concatenate([ln.loc[None], ln.locs])
    lw = jnp.concatenate([ln.log_scale[None], ln.log_s])
    half_diff = half_difference(centres[:, None], centres[None, :])
    cross = _claim_crossings(p, ln, centres, jnp.zeros_like(centres), lw)
    t, w = quadrature.claims_rule(half_diff, lw, cross)
    u = _claim_u(half_diff, lw, t, _ucap(lw.dtype))  # (J, N, 1 + M)
    log_n = -0.5 * u * u - lw - _HALF_LOG_2PI + lw[:, None, None]  # per unit t of frame o
    log_q = log_n[..., 0]
    log_p = logsumexp(log_n[..., 1:] + ln.log_pi, axis=-1)
    # Where q is close to a component, log(p / q) from the differences themselves:
    # log(N_k / q) = log(sigma / s_k) + (u_q - u_k)(u_q + u_k) / 2 with
    # u_q - u_k = -u_q expm1(log(sigma / s_k)) - (mu - m_k) / s_k (no cancellation).
    uq, uk = u[..., :1], u[..., 1:]
    log_u0 = safe_log_abs(ln.half_delta) + _LOG2 - ln.log_s
    close = (log_u0 < 8.0) & (jnp.abs(ln.log_rho) < 1.0)  # (M,)
    moderate = close & (jnp.abs(uq) < 1e3) & (jnp.abs(uk) < 1e3)
    u0 = times_exp(jnp.where(close, ln.half_delta, 0.0), _LOG2 - ln.log_s)  # (mu - m_k) / s_k
    d = -uq * jnp.expm1(jnp.where(close, ln.log_rho, 0.0)) - u0
    r_near = ln.log_pi + ln.log_rho + 0.5 * d * (uq + uk)
    ell_near = logsumexp(jnp.where(moderate, r_near, -jnp.inf), axis=-1)
    use_near = jnp.all(moderate, axis=-1)
    ell = jnp.where(use_near, jnp.where(use_near, ell_near, 0.0), log_p - log_q)
    terms = jnp.exp(jnp.maximum(log_p, log_q)) * _js_generator(jnp.abs(ell))
    return 0.5 * jnp.sum(w * terms)


def _js_q_frame(p, q, rule=None) -> jax.Array:
    r"""Jensen-Shannon in q's frame (any ``d <= 2``): the window's integral plus ``log 2 / 2`` times
    p's mass outside it (where ``q`` is below ``exp(-800)``)."""
    _check_dim(p)
    f = frame(p, q)
    z, w = q_rule(p, f) if rule is None else rule
    ell = logsumexp(log_ratios(f, z), axis=-1)
    log_q = _log_std_normal(z)
    log_p = log_q + ell
    inside = jnp.sum(w * jnp.exp(jnp.maximum(log_p, log_q)) * _js_generator(jnp.abs(ell)))
    outside = jnp.maximum(1.0 - jnp.sum(w * jnp.exp(log_p)), 0.0)
    return 0.5 * inside + 0.5 * _LOG2 * outside


def jensen_shannon(p, q, rule=None) -> jax.Array:
    r"""``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``, as one non-negative integral.

    ``JS = int max(p, q) F(-|log(p / q)|) / 2`` (`_js_generator`): no
    cancellation between the halves, so a tiny JS keeps its relative accuracy.
    """
    if p.dim == 1 and rule is None:
        return _js_line(p, q)
    return _js_q_frame(p, q, rule)


# --- expectations under p -------------------------------------------------------


def p_rule(p) -> tuple[jax.Array, jax.Array]:
    r"""Nodes ``x (N, d)`` and weights for ``int g(x) dx`` where ``p`` has its mass."""
    _check_dim(p)
    locs, trils = p.mvn()
    sds = jnp.sqrt(jnp.sum(trils**2, axis=-1))
    lo, hi = quadrature.window(locs, sds)
    if p.dim == 2:
        return quadrature.rule_2d(locs, sds, lo, hi)
    crossings = quadrature.mixture_crossings(p.log_probs, locs[:, 0], sds[:, 0])
    x, w = quadrature.rule_1d(locs[:, 0], sds[:, 0], lo[0], hi[0], crossings)
    return x[:, None], w


def _at(p, x: jax.Array) -> jax.Array:
    """``log p`` at ``x (N, d)`` (``(N,)`` points for a 1-D target)."""
    return p.log_prob(x[:, 0] if p.event_shape == () else x)


def neg_entropy(p) -> jax.Array:
    r"""``E_p[log p]`` of the normalized mixture, by quadrature around its components."""
    x, w = p_rule(jax.lax.stop_gradient(p))
    log_p = _at(p, x)
    return quadrature.weighted_sum(w * jnp.exp(log_p), log_p)


__all__ = [
    "jensen_shannon",
    "kl_reverse",
    "kl_reverse_line_grad",
    "kl_reverse_scaled",
    "kl_reverse_values",
    "log_power_grad",
    "log_power_integral",
    "power_pieces",
    "log_power_values",
    "neg_entropy",
    "p_rule",
    "q_rule",
]
