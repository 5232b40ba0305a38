r"""Gaussian algebra: the closed forms behind every exact divergence, in any dimension.

Notation: ``p = sum_k pi_k N(m_k, A_k)`` with ``A_k = T_k T_k^T``, and
``q = N(mu, Sigma)`` with ``Sigma = L L^T``, seen in its standardized variable
``z`` (``x = mu + L z``). Per component, with ``delta_k = mu - m_k``,
``u_k = T_k^{-1} delta_k`` and ``B_k = T_k^{-1} L``:

- the log-ratio ``r_k(z) = log(pi_k N_k(x) / q(x)) = z^T (I - B_k^T B_k) z / 2
  - (B_k^T u_k)^T z - |u_k|^2 / 2 + c_k``, ``c_k = log pi_k + log det L - log det T_k``,
  so ``log(p / q) = logsumexp_k r_k`` (`log_ratios`). In 1-D ``I - B^T B =
  -expm1(2 log(sigma / s_k))`` keeps ``q`` close to a component accurate.
- the power integrand ``q^a (pi_k N_k)^(1 - a)`` in ``z`` is
  ``(2 pi)^{-d/2} exp(E_k(z))`` with ``E_k = -(z - z_k^*)^T Lambda_k (z - z_k^*) / 2 + G_k``,
  ``Lambda_k = a I + (1 - a) B_k^T B_k`` and
  ``G_k = -a (1 - a) delta_k^T (a A_k + (1 - a) Sigma)^{-1} delta_k / 2 + (1 - a) c_k``
  (`power_terms`). Completing the square this way avoids the cancellation
  between ``|z|^2 / 2`` and ``(1 - a) r_k`` that ruins a direct evaluation where
  ``q^2 / p`` peaks far from ``q``. The integral of one component's term is
  ``exp(G_k) det(Lambda_k)^{-1/2}`` when ``Lambda_k`` is positive definite,
  and ``+inf`` otherwise.

``I(a) = int q^a p^(1 - a)`` is ``+inf`` iff the integrand stops decaying in
some direction (`power_integral_infinite`): in 1-D, with ``s`` the widest
component, iff ``sigma^2 >= a s^2 / (a - 1)`` (``a > 1``) or
``sigma^2 <= -a s^2 / (1 - a)`` (``a < 0``).

Also here: the cross-entropy ``-E_p[log q]`` (closed form in p's moments) and
``log(1 + chi^2(p || q)) = log I(-1)`` as a sum over pairs of components of
Gaussian integrals ``int N_i N_j / q``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import _linalg
from divjax.families import LOG_2PI

_NUM_DIRECTIONS_2D = 720
_LOG2 = math.log(2.0)


# --- numerics shared by every closed form --------------------------------------


def log_max(dtype) -> float:
    """``log`` of the largest finite value of a float type."""
    return math.log(float(jnp.finfo(dtype).max))


def half_difference(a, b):
    """``(a - b) / 2``: never overflows for finite ``a`` and ``b``."""
    return 0.5 * a - 0.5 * b


def safe_log_abs(x):
    """``log|x|`` (``-inf`` at 0) with a zero, not NaN, gradient at 0."""
    nz = x != 0
    return jnp.where(nz, jnp.log(jnp.abs(jnp.where(nz, x, 1.0))), -jnp.inf)


def _log_norm(v):
    """``log ||v||`` over the last axis without overflow (``-inf`` for ``v = 0``)."""
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(v), -1))
    nz = m > 0
    safe = jnp.where(nz, m, 1.0)
    s = jnp.sum((v / safe[..., None]) ** 2, -1)
    return jnp.where(nz, jnp.log(safe) + 0.5 * jnp.log(jnp.where(nz, s, 1.0)), -jnp.inf)


def mul_exp(x, log_s):
    r"""``x * exp(log_s)``: ``+-inf`` where that overflows, ``0`` for ``x = 0`` (never ``0 * inf``).

    Meant for rescaling results (values, gradients) computed at a scale; its
    own derivative is only finite where ``exp(log_s)`` is.
    """
    x = jnp.asarray(x)
    big = log_s > log_max(x.dtype) - 1.0
    plain = x * jnp.exp(jnp.where(big, 0.0, log_s))
    nz = x != 0
    log_x = jnp.log(jnp.abs(jnp.where(nz, x, 1.0)))
    far = jnp.sign(x) * jnp.exp(log_x + jnp.where(big, log_s, 0.0))
    # exp(-inf) * inf: a factor below every float times one above them is taken as 0.
    return jnp.where(big, jnp.where(nz, far, 0.0), jnp.where(log_s == -jnp.inf, 0.0, plain))


def times_exp(x, log_f):
    r"""``x exp(log_f)`` as one exponential, ``sign(x) exp(log|x| + log_f)``.

    Autodiff of a plain product forms the cotangent of ``exp(log_f)`` as
    (cotangent) ``* x``, which overflows (and then meets a zero: NaN) where
    ``x`` is huge even though the result is not; here it is (cotangent) ``*``
    result.
    """
    return jnp.sign(x) * jnp.exp(safe_log_abs(x) + log_f)


def clamp_at_zero(x, sign: float = 1.0):
    r"""``x`` with a rounding-level value of the wrong sign replaced by ``0``.

    ``sign = 1``: ``max(x, 0)``; ``sign = -1``: ``min(x, 0)``. The gradient is
    that of ``x`` (straight through), so hand-derived and automatic gradients
    agree, and ``+-inf`` passes unchanged.
    """
    wrong = x * sign < 0
    return jnp.where(wrong, x - jax.lax.stop_gradient(jnp.where(wrong, x, 0.0)), x)


def _poly(x, coeffs):
    acc = jnp.zeros_like(x) + coeffs[-1]
    for c in coeffs[-2::-1]:
        acc = acc * x + c
    return acc


# Short series below 1e-2, where the direct forms lose 2 eps / |x| relative (float32: 2.4e-5).
_G = tuple(1.0 / math.factorial(n) for n in range(2, 10))  # e^x - 1 - x = x^2 sum x^(n-2) / n!
_H = tuple((-1.0) ** n / n for n in range(2, 11))  # y - log1p(y) = y^2 sum (-y)^(n-2) / n
SERIES_BELOW = 1e-2


def expm1mx(x):
    """``e^x - 1 - x``, accurate near 0 (a series for ``|x| < 1e-2``); ``+inf`` on overflow."""
    small = jnp.abs(x) < SERIES_BELOW
    xs = jnp.where(small, x, 0.0)
    xb = jnp.where(small, 1.0, x)
    return jnp.where(small, xs * xs * _poly(xs, _G), jnp.expm1(xb) - xb)


def log_expm1mx(x):
    """``log(e^x - 1 - x)``, finite for every finite ``x != 0``."""
    big = x > 1.0
    xb = jnp.where(big, x, 2.0)
    xs = jnp.where(big, 1.0, x)
    return jnp.where(big, xb + jnp.log1p(-(1.0 + xb) * jnp.exp(-xb)), jnp.log(expm1mx(xs)))


def ymlog1p(y):
    """``y - log1p(y)`` for ``y > -1``, accurate near 0 (a series for ``|y| < 1e-2``)."""
    small = jnp.abs(y) < SERIES_BELOW
    ys = jnp.where(small, y, 0.0)
    yb = jnp.where(small, 1.0, y)
    return jnp.where(small, ys * ys * _poly(ys, _H), yb - jnp.log1p(yb))


def log1p_from(value, log_value):
    r"""``log(1 + v)`` from ``v`` and ``log v`` (used where ``v`` is large or beyond the range)."""
    big = log_value > 20.0
    lv = jnp.where(big, log_value, 20.0)
    return jnp.where(big, lv + jnp.log1p(jnp.exp(-lv)), jnp.log1p(jnp.where(big, 0.0, value)))


class Frame(NamedTuple):
    """``q`` as an affine map ``x = loc + tril z``, and ``p``'s components seen from it."""

    loc: jax.Array  # (d,)
    tril: jax.Array  # (d, d)
    log_diag: jax.Array  # (d,) log of tril's diagonal
    u: jax.Array  # (M, d) T_k^{-1} (mu - m_k)
    b: jax.Array  # (M, d, d) T_k^{-1} L
    log_rho: jax.Array  # (M,) in 1-D: log(sigma / s_k); unused in d > 1
    c: jax.Array  # (M,) log pi_k + log det L - log det T_k


def frame(p, q) -> Frame:
    """The per-component quantities of the module docstring (``d = 1`` for a 1-D pair)."""
    locs, trils = p.mvn()
    loc, tril, log_diag = q.to_mvn()
    log_det_t = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(trils, 0, -2, -1))), -1)
    c = p.log_probs + jnp.sum(log_diag) - log_det_t
    delta = loc - locs
    if loc.shape[-1] == 1:
        s = jnp.abs(trils[:, 0, 0])
        log_rho = log_diag[0] - jnp.log(s)
        u = delta / s[:, None]
        b = jnp.exp(log_rho)[:, None, None]
    else:
        log_rho = jnp.zeros_like(c)
        u = _linalg.solve_lower(trils, delta)
        b = _linalg.solve_lower(trils[:, None], jnp.swapaxes(tril, -1, -2)[None])
        b = jnp.swapaxes(b, -1, -2)
    return Frame(loc, tril, log_diag, u, b, log_rho, c)


def _btb(f: Frame) -> jax.Array:
    return jnp.swapaxes(f.b, -1, -2) @ f.b


def log_ratios(f: Frame, z: jax.Array) -> jax.Array:
    r"""``r_k(z) = log(pi_k N_k(x) / q(x))`` at ``z (N, d)``, shape ``(N, M)``."""
    bu = jnp.einsum("kji,kj->ki", f.b, f.u)  # B_k^T u_k
    const = -0.5 * jnp.sum(f.u**2, -1) + f.c
    if z.shape[-1] == 1:
        alpha = -jnp.expm1(2.0 * f.log_rho)  # 1 - rho^2, accurate near rho = 1
        z1 = z[:, :1]
        return 0.5 * alpha * z1**2 - bu[:, 0] * z1 + const
    a = jnp.eye(z.shape[-1], dtype=z.dtype) - _btb(f)
    quad = jnp.einsum("ni,kij,nj->nk", z, a, z)
    return 0.5 * quad - z @ bu.T + const


class PowerTerms(NamedTuple):
    """``E_k`` of the module docstring for one exponent ``a`` (leading axis: components)."""

    prec: jax.Array  # (M, d, d) Lambda_k
    centre: jax.Array  # (M, d) z_k^* (meaningless where not pd)
    log_peak: jax.Array  # (M,) G_k
    pd: jax.Array  # (M,) Lambda_k positive definite
    h: jax.Array  # (M, d) -(1 - a) B_k^T u_k
    plain: jax.Array  # (M,) (1 - a) (c_k - |u_k|^2 / 2)


def power_terms(f: Frame, a: float) -> PowerTerms:
    """The completed squares ``E_k`` of ``q^a (pi_k N_k)^(1 - a)`` in q's frame."""
    d = f.loc.shape[-1]
    eye = jnp.eye(d, dtype=f.u.dtype)
    h = -(1.0 - a) * jnp.einsum("kji,kj->ki", f.b, f.u)
    if d == 1:
        lam = a + (1.0 - a) * jnp.exp(2.0 * f.log_rho)
        pd = lam > 0
        safe = jnp.where(pd, lam, 1.0)
        centre = h / safe[:, None]
        quad_u = f.u[:, 0] ** 2 / safe
        prec = lam[:, None, None]
    else:
        prec = a * eye + (1.0 - a) * _btb(f)
        pd = _linalg.is_positive_definite(prec)
        safe = jnp.where(pd[:, None, None], prec, eye)
        centre = _linalg.solve_spd(safe, h)
        w = a * eye + (1.0 - a) * f.b @ jnp.swapaxes(f.b, -1, -2)
        w = jnp.where(pd[:, None, None], w, eye)
        quad_u = jnp.sum(f.u * _linalg.solve_spd(w, f.u), -1)
    log_peak = -0.5 * a * (1.0 - a) * quad_u + (1.0 - a) * f.c
    plain = (1.0 - a) * (f.c - 0.5 * jnp.sum(f.u**2, -1))
    return PowerTerms(prec, centre, log_peak, pd, h, plain)


def power_exponents(t: PowerTerms, z: jax.Array) -> jax.Array:
    """``E_k(z)`` at ``z (N, d)``, shape ``(N, M)``: completed square where ``Lambda_k`` is pd."""
    # Each branch sees zeros where the other is used: no inf - inf, hence no NaN cotangent.
    pd = t.pd[None, :, None]
    dz = jnp.where(pd, z[:, None, :] - t.centre, 0.0)
    zp = jnp.where(pd, 0.0, z[:, None, :])
    completed = -0.5 * jnp.einsum("nki,kij,nkj->nk", dz, t.prec, dz) + t.log_peak
    plain = -0.5 * jnp.einsum("nki,kij,nkj->nk", zp, t.prec, zp)
    plain = plain + jnp.einsum("nki,ki->nk", zp, t.h) + t.plain
    return jnp.where(t.pd, completed, plain)


def log_power_integrand(t: PowerTerms, z: jax.Array, a: float) -> jax.Array:
    r"""``log(q^a p^(1 - a))`` per unit ``z``-volume, ``(N,)``: ``(1 - a) lse_k(E_k / (1 - a))``."""
    d = z.shape[-1]
    e = power_exponents(t, z)
    # Shift by the extreme term before scaling: exp((e_k - m) / (1 - a)) <= 1 for every k.
    m = jax.lax.stop_gradient(jnp.max(e, -1) if a < 1 else jnp.min(e, -1))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    s = jnp.sum(jnp.exp((e - m[:, None]) / (1.0 - a)), axis=-1)
    return m + (1.0 - a) * jnp.log(s) - 0.5 * d * LOG_2PI


def single_log_power_integral(t: PowerTerms) -> jax.Array:
    """``log I(a)`` for a one-component target: ``G - log det(Lambda) / 2`` (``inf`` if not pd)."""
    eye = jnp.eye(t.prec.shape[-1], dtype=t.prec.dtype)
    logdet = _linalg.logdet_spd(jnp.where(t.pd[:, None, None], t.prec, eye))
    return jnp.where(t.pd[0], t.log_peak[0] - 0.5 * logdet[0], jnp.inf)


def power_integral_infinite(f: Frame, a: float) -> jax.Array:
    r"""Whether ``I(a) = int q^a p^(1 - a) = inf`` (see the module docstring)."""
    if 0.0 <= a <= 1.0:
        return jnp.zeros((), bool)
    t = power_terms(f, a)
    if a < 0:  # every component's term must decay in every direction
        return ~jnp.all(t.pd)
    d = f.loc.shape[-1]
    if d == 1:  # the widest component dominates p in both tails
        return jnp.max(t.prec[:, 0, 0]) <= 0
    # p's tail along v is its slowest-decaying component's: need max_k v^T Lambda_k v > 0.
    v = _directions(d, f.u.dtype)
    forms = jnp.einsum("ni,kij,nj->nk", v, t.prec, v)
    return jnp.any(jnp.max(forms, axis=-1) <= 0)


def _directions(d: int, dtype) -> jax.Array:
    if d == 2:
        th = np.linspace(0.0, math.pi, _NUM_DIRECTIONS_2D, endpoint=False)
        v = np.stack([np.cos(th), np.sin(th)], -1)
    else:  # a fixed quasi-exhaustive set: the axes, their diagonals and random directions
        rng = np.random.default_rng(0)
        v = np.concatenate([np.eye(d), rng.standard_normal((4096, d))])
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return jnp.asarray(v, dtype)


# --- one dimension: closed forms that neither overflow nor cancel ---------------


class Line(NamedTuple):
    r"""A 1-D pair ``(p, q)`` with everything that can overflow kept as a logarithm."""

    loc: jax.Array  # () mu
    log_scale: jax.Array  # () log sigma
    locs: jax.Array  # (M,) m_k
    log_s: jax.Array  # (M,) log s_k
    log_pi: jax.Array  # (M,) log pi_k (normalized)
    half_delta: jax.Array  # (M,) (mu - m_k) / 2, never overflows
    log_rho: jax.Array  # (M,) log(sigma / s_k)


def line(p, q) -> Line:
    """The `Line` of a 1-D mixture and a 1-D `Gaussian`."""
    locs = jnp.reshape(p.locs, (-1,))
    log_s = jnp.log(jnp.abs(jnp.reshape(p.scale_trils, (-1,))))
    loc, log_scale = jnp.asarray(q.loc), jnp.asarray(q.log_scale)
    return Line(
        loc, log_scale, locs, log_s, p.log_probs, half_difference(loc, locs), log_scale - log_s
    )


def gaussian_kl(two_t, w) -> tuple[jax.Array, jax.Array]:
    r"""``(v, log v)`` for ``v = (e^{2t} - 1 - 2t + w^2) / 2``.

    ``KL(N(m1, s1^2) || N(m0, s0^2))`` with ``2t = 2 log(s1 / s0)`` and
    ``w = (m1 - m0) / s0``: both pieces are non-negative and accurate near 0 (a
    series), so a divergence of 1e-30 keeps its relative accuracy; ``log v``
    stays finite where ``v`` overflows.
    """
    value = 0.5 * (expm1mx(two_t) + w * w)
    log_value = jnp.logaddexp(log_expm1mx(two_t), 2.0 * safe_log_abs(w)) - _LOG2
    return value, log_value


def log_lambda(a: float, log_rho):
    r"""``(log(a + (1 - a) rho^2), positive)``: the precision of ``q^a N^(1 - a)`` in q's units.

    Accurate near ``rho = 1`` (``log1p((1 - a) expm1(2 log rho))``) and free of
    overflow for any ``log rho``; ``0`` where it is not positive.
    """
    b = 1.0 - a
    two = 2.0 * log_rho
    near = jnp.abs(two) < 1.0
    up = ~near & (two > 0)
    tn = jnp.where(near, two, 0.0)
    tp = jnp.where(up, two, 1.0)
    tm = jnp.where(near | up, -1.0, two)
    y_near = b * jnp.expm1(tn)  # a + b rho^2 = 1 + y
    y_up = b + a * jnp.exp(-tp)  # a + b rho^2 = rho^2 (b + a / rho^2)
    y_down = a + b * jnp.exp(tm)
    pos = jnp.where(near, y_near > -1.0, jnp.where(up, y_up > 0, y_down > 0))
    lv = jnp.where(
        near,
        jnp.log1p(jnp.where(pos, y_near, 0.0)),
        jnp.where(
            up, tp + jnp.log(jnp.where(pos, y_up, 1.0)), jnp.log(jnp.where(pos, y_down, 1.0))
        ),
    )
    return jnp.where(pos, lv, 0.0), pos


class PowerSingles(NamedTuple):
    r"""``log int q^a (pi_k N_k)^(1 - a) dx = rest_k - a b w_k^2 / 2`` for each component."""

    pd: jax.Array  # (M,) the integral is finite
    rest: jax.Array  # (M,) b log pi_k + b t_k - log(lambda_k) / 2 (accurate near t_k = 0)
    log_abs_w: jax.Array  # (M,) log |w_k|, always finite (or -inf at w = 0)


def power_singles(ln: Line, a: float) -> PowerSingles:
    r"""The single-component integrals of ``q^a p^(1 - a)``, in closed form.

    With ``b = 1 - a``, ``t = log(sigma / s)``, ``V = a s^2 + b sigma^2`` and
    ``w = (mu - m) / sqrt(V)``: ``log int N(mu, sigma^2)^a N(m, s^2)^b = b t
    - log(V / s^2) / 2 - a b w^2 / 2``; near ``t = 0`` the first two terms are
    ``(h(b E) - b g(2t)) / 2`` with ``E = expm1(2t)``, ``h(y) = y - log1p(y)``,
    ``g(x) = e^x - 1 - x``, so that ``q`` close to ``p`` keeps full relative accuracy.
    """
    b = 1.0 - a
    lv, pd = log_lambda(a, ln.log_rho)
    two = 2.0 * ln.log_rho
    near = jnp.abs(two) < 1.0
    tn = jnp.where(near, two, 0.0)
    var_near = 0.5 * (ymlog1p(b * jnp.expm1(tn)) - b * expm1mx(tn))
    var = jnp.where(near, var_near, b * ln.log_rho - 0.5 * lv)
    log_abs_w = safe_log_abs(ln.half_delta) + _LOG2 - ln.log_s - 0.5 * lv
    return PowerSingles(pd, b * ln.log_pi + var, log_abs_w)


def asymptotic_log_power(ps: PowerSingles, a: float):
    r"""``(onehot_k, log I_k)``: the single-component integral that ``log I`` tends to, and which.

    ``I`` lies within a factor ``M^|1 - a|`` of the largest (``a < 1``) or the
    smallest (``a > 1``) ``I_k = int q^a (pi_k N_k)^(1 - a)``, so once
    ``|log I|`` is beyond ``100 / eps`` this is exact to rounding (and for one
    component it is exact). ``log I_k = rest_k - a b w_k^2 / 2`` is ``+-inf``
    where it overflows, with ``log|log I| = log(|a b| / 2) + 2 log|w_k|`` still finite.
    """
    b = 1.0 - a
    sq = jnp.exp(jnp.minimum(2.0 * ps.log_abs_w, log_max(ps.rest.dtype) - 1.0))
    singles = jax.lax.stop_gradient(ps.rest - 0.5 * a * b * sq)
    if a > 1:
        k = jnp.argmin(jnp.where(ps.pd, singles, jnp.inf))
    else:
        k = jnp.argmax(singles)
    onehot = jnp.arange(singles.shape[-1]) == k
    rest = jnp.sum(jnp.where(onehot, ps.rest, 0.0))
    log_w = jnp.sum(jnp.where(onehot, ps.log_abs_w, 0.0))
    return onehot, rest - 0.5 * a * b * jnp.exp(2.0 * log_w)


def pick(x, onehot):
    """``x[k]`` for a one-hot ``k`` (no gather)."""
    return jnp.sum(jnp.where(onehot, x, 0.0), -1)


def scaled_w2(ln: Line, a: float, k):
    r"""``(w_k^2 4^-j, 2 j log 2)``, ``w_k = (mu - m_k) / sqrt(V_k)``, at a power-of-two scale.

    ``j >= 0`` (a constant) is the smallest that keeps the scaled value finite.
    """
    lv, _ = log_lambda(a, pick(ln.log_rho, k))
    log_w = safe_log_abs(pick(ln.half_delta, k)) + _LOG2 - pick(ln.log_s, k) - 0.5 * lv
    j = jax.lax.stop_gradient(
        jnp.maximum(0.0, jnp.ceil((log_w - 0.5 * log_max(lv.dtype) + 4.0) / _LOG2))
    )
    # One exponential: a product of a huge difference and a small factor would overflow
    # in the reverse pass (its cotangent is the product of the two) even where w^2 does not.
    log_w2 = 2.0 * (safe_log_abs(pick(ln.half_delta, k)) + (1.0 - j) * _LOG2 - pick(ln.log_s, k) - 0.5 * lv)
    return jnp.exp(log_w2), 2.0 * j * _LOG2


def single_log_power_grad(ln: Line, a: float, k):
    r"""``d log int q^a (pi_k N_k)^(1 - a) / d(mu, log sigma)``, closed form in log space.

    With ``u = (mu - m) / s``, ``rho = sigma / s``, ``lambda = a + b rho^2``:
    ``(-a b u / (s lambda), -a b expm1(2 log rho) / lambda + a b^2 (u rho / lambda)^2)``;
    ``u rho`` is formed as one logarithm, so neither ``u^2`` overflowing nor
    ``rho^2`` underflowing loses it.
    """
    b = 1.0 - a
    lv, _ = log_lambda(a, pick(ln.log_rho, k))
    log_u = safe_log_abs(pick(ln.half_delta, k)) + _LOG2 - pick(ln.log_s, k)
    sign = jnp.sign(pick(ln.half_delta, k))
    g_loc = -a * b * sign * jnp.exp(log_u - pick(ln.log_s, k) - lv)
    cross = jnp.exp(2.0 * (log_u + pick(ln.log_rho, k) - lv))
    g_ls = -a * b * jnp.expm1(2.0 * pick(ln.log_rho, k)) * jnp.exp(-lv) + a * b * b * cross
    return g_loc, g_ls


class Peaks(NamedTuple):
    r"""The Gaussian-shaped bounds ``q^a (pi_k N_k)^(1 - a)`` of a 1-D pair, in ``x``."""

    pd: jax.Array  # (M,) the bound decays (Lambda_k > 0)
    log_width: jax.Array  # (M,) log Lambda_k^{-1/2}
    base_q: jax.Array  # (M,) x*_k is measured from mu (else from m_k)
    offset: jax.Array  # (M,) x*_k - base, computed in closed form
    log_peak: jax.Array  # (M,) E_k(x*_k), the log of the bound's peak per unit x


def peaks(ln: Line, a: float) -> Peaks:
    r"""Centres, widths and heights of the bounds ``E_k`` (completed squares in ``x``).

    ``E_k(x) = -Lambda_k (x - x*_k)^2 / 2 + E_k(x*_k)``,
    ``Lambda_k = a / sigma^2 + b / s_k^2``,
    ``x*_k - m_k = a (mu - m_k) s_k^2 / V_k`` and ``x*_k - mu = -b (mu - m_k) sigma^2 / V_k``
    (the nearer of the two is kept, so a peak sitting on ``q`` or on a
    component is placed to that density's precision), with ``V_k = a s_k^2 + b sigma^2``.
    """
    b = 1.0 - a
    lv, pd = log_lambda(a, ln.log_rho)
    w2 = jnp.exp(2.0 * (safe_log_abs(ln.half_delta) + _LOG2 - ln.log_s - 0.5 * lv))
    log_peak = -0.5 * a * b * w2 - a * ln.log_scale - b * ln.log_s - 0.5 * LOG_2PI + b * ln.log_pi
    log_width = ln.log_scale - 0.5 * lv
    base_q = 2.0 * ln.log_rho + math.log(abs(b)) < math.log(abs(a))
    big = 0.25 * float(jnp.finfo(lv.dtype).max)
    delta = jnp.clip(2.0 * ln.half_delta, -big, big)
    off_m = a * delta * jnp.exp(-lv)
    off_q = -b * delta * jnp.exp(2.0 * ln.log_rho - lv)
    offset = jnp.clip(jnp.where(base_q, off_q, off_m), -big, big)
    return Peaks(pd, log_width, base_q, offset, log_peak)


def cross_entropy_parts(p, q) -> tuple[jax.Array, jax.Array]:
    r"""``(C, log B)`` with ``-E_p[log q] = C + B``, both finite for every finite ``q``.

    ``C = d log(2 pi) / 2 + log det L`` and ``B = tr(L^{-1} E_p[(x - mu)(x - mu)^T] L^{-T}) / 2``,
    the part that grows without bound as ``q`` narrows or moves away. ``log B``
    stays finite where ``B`` itself is beyond the float range.
    """
    loc, tril, log_diag = q.to_mvn()
    d = loc.shape[-1]
    mean = jnp.reshape(p.mean(), (d,))
    cov = jnp.reshape(p.covariance(), (d, d))
    diff = half_difference(mean, loc)  # (mean - loc) / 2: never overflows
    if d == 1:
        log_t1 = jnp.log(cov[0, 0]) - 2.0 * log_diag[0]
        log_t2 = 2.0 * (safe_log_abs(diff[0]) + _LOG2 - log_diag[0])
        return 0.5 * LOG_2PI + log_diag[0], jnp.logaddexp(log_t1, log_t2) - _LOG2
    c = jax.lax.stop_gradient(jnp.max(log_diag))
    inv = _linalg.solve_lower(tril * jnp.exp(-c), jnp.eye(d, dtype=tril.dtype)).T
    v = inv @ diff  # L~^{-1} (mean - loc) / 2, with L~ = L e^{-c}
    t1 = jnp.sum((inv @ cov) * inv)
    log_t2 = 2.0 * (_log_norm(v) + _LOG2)
    log_b = jnp.logaddexp(jnp.log(t1), log_t2) - _LOG2 - 2.0 * c
    return 0.5 * d * LOG_2PI + jnp.sum(log_diag), log_b


def cross_entropy_terms(p, q) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``(C, Q, log_f)`` with ``-E_p[log q] = C + Q exp(log_f)``; ``log_f`` is a constant.

    In 1-D ``Q = (Var_p + (E_p x - mu)^2) / (2 sigma^2 F)``, with ``F = 1``
    unless that nears the float range: autodiff never forms ``0 * inf`` nor
    overflows on the way. In ``d`` dimensions ``L`` is first divided by its largest diagonal entry
    ``exp(c)`` and ``log_f = -2 c`` (stop-gradient), so ``Q`` stays in range.
    """
    loc, tril, log_diag = q.to_mvn()
    d = loc.shape[-1]
    mean = jnp.reshape(p.mean(), (d,))
    cov = jnp.reshape(p.covariance(), (d, d))
    if d == 1:
        # Scale by F = exp(log_f) once B nears the range, so that Q and every
        # intermediate of its derivative stay finite.
        _, log_b = cross_entropy_parts(p, q)
        log_f = jax.lax.stop_gradient(jnp.maximum(0.0, log_b - 0.5 * log_max(log_b.dtype)))
        diff = times_exp(half_difference(mean[0], loc[0]), _LOG2 - log_diag[0] - 0.5 * log_f)
        var = jnp.exp(jnp.log(cov[0, 0]) - 2.0 * log_diag[0] - log_f)
        return 0.5 * LOG_2PI + log_diag[0], 0.5 * (var + diff * diff), log_f
    c = jax.lax.stop_gradient(jnp.max(log_diag))
    inv = _linalg.solve_lower(tril * jnp.exp(-c), jnp.eye(d, dtype=tril.dtype)).T
    v = inv @ (2.0 * half_difference(mean, loc))
    quad = 0.5 * (jnp.sum((inv @ cov) * inv) + jnp.sum(v * v))
    return 0.5 * d * LOG_2PI + jnp.sum(log_diag), quad, -2.0 * c


def cross_entropy(p, q) -> jax.Array:
    r"""``-E_p[log q]``, closed form in p's mean and covariance, any ``d``.

    ``+inf`` where it is beyond the float range (see `cross_entropy_terms`).
    """
    c, quad, log_f = cross_entropy_terms(p, q)
    return c + mul_exp(quad, log_f)


class PairTerms(NamedTuple):
    """``log pi_i pi_j int N_i N_j / q`` and its pieces, over pairs ``(M, M)``."""

    log_terms: jax.Array  # (M, M)
    diff: jax.Array  # (M, M, d) c_ij - mu
    dmat: jax.Array  # (M, M, d, d) Sigma - C_ij (identity where not pd; unused in 1-D)
    pd: jax.Array  # (M, M)
    cmat: jax.Array  # (M, M, d, d) C_ij


def chi2_forward_pairs(p, q) -> PairTerms:
    r"""The pairs of ``p^2 / q``: ``N_i N_j = N(m_i; m_j, A_i + A_j) N(x; c_ij, C_ij)``.

    ``int N(x; c, C) / N(x; mu, Sigma) = (2 pi)^{d/2} det Sigma det(D)^{-1/2}
    exp((c - mu)^T D^{-1} (c - mu) / 2)`` with ``D = Sigma - C``, finite iff
    ``D`` is positive definite. In 1-D ``D = sigma^2 (1 - C / sigma^2)`` is
    kept in that form (``sigma^2`` may overflow where the value does not).
    """
    locs, trils = p.mvn()
    loc, tril, log_diag = q.to_mvn()
    d = loc.shape[-1]
    a = trils @ jnp.swapaxes(trils, -1, -2)
    ai, aj = a[:, None], a[None, :]
    mi, mj = locs[:, None], locs[None, :]
    s_sum = ai + aj
    s_inv = _linalg.inv_spd(s_sum)
    cmat = ai @ s_inv @ aj
    cmat = 0.5 * (cmat + jnp.swapaxes(cmat, -1, -2))
    centre = jnp.einsum("...ij,...j->...i", aj @ s_inv, mi) + jnp.einsum(
        "...ij,...j->...i", ai @ s_inv, mj
    )
    dm = mi - mj
    log_n = -0.5 * (_linalg.logdet_spd(s_sum) + d * LOG_2PI) - 0.5 * jnp.einsum(
        "...i,...ij,...j->...", dm, s_inv, dm
    )
    log_pi = p.log_probs
    if d == 1:
        ratio = cmat[..., 0, 0] * jnp.exp(-2.0 * log_diag[0])  # C / sigma^2
        pd = jax.lax.stop_gradient(ratio < 1.0)
        one_minus = jnp.where(pd, 1.0 - ratio, 1.0)
        diff = 2.0 * half_difference(centre, loc)
        scaled = times_exp(diff[..., 0], -log_diag[0])  # (c - mu) / sigma
        quad = scaled * scaled / one_minus
        log_int = log_n + 0.5 * LOG_2PI + log_diag[0] - 0.5 * jnp.log(one_minus)
        log_terms = log_pi[:, None] + log_pi[None, :] + log_int + 0.5 * quad
        dmat = jnp.ones_like(cmat)
        return PairTerms(log_terms, diff, dmat, pd, cmat)
    dmat = tril @ tril.T - cmat
    pd = jax.lax.stop_gradient(_linalg.is_positive_definite(dmat))
    dmat = jnp.where(pd[..., None, None], dmat, jnp.eye(d, dtype=dmat.dtype))
    diff = centre - loc
    quad = jnp.sum(diff * _linalg.solve_spd(dmat, diff), -1)
    log_int = log_n + 0.5 * d * LOG_2PI + 2.0 * jnp.sum(log_diag) - 0.5 * _linalg.logdet_spd(dmat)
    log_terms = log_pi[:, None] + log_pi[None, :] + log_int + 0.5 * quad
    return PairTerms(log_terms, diff, dmat, pd, cmat)


def chi2_forward_log1p(p, q) -> jax.Array:
    r"""``log(1 + chi^2(p || q)) = log I(-1)``, closed form, ``+inf`` where infinite."""
    t = chi2_forward_pairs(p, q)
    return jnp.where(jnp.all(t.pd), logsumexp(t.log_terms), jnp.inf)


__all__ = [
    "Frame",
    "PairTerms",
    "PowerTerms",
    "chi2_forward_log1p",
    "chi2_forward_pairs",
    "cross_entropy",
    "frame",
    "log_power_integrand",
    "log_ratios",
    "power_exponents",
    "power_integral_infinite",
    "power_terms",
    "single_log_power_integral",
]
