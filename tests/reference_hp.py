r"""Independent high-precision reference values of divergences between a 1-D
Gaussian mixture ``p`` and a Gaussian ``q = N(mu, sigma^2)``.

Only numpy, scipy and (for the slow path) mpmath are used; nothing here knows
the library it checks.

Target ``p = sum_k (w_k / Z) N(x; m_k, s_k^2)`` (weights positive, possibly
unnormalized). With ``I(a) = int q^a p^(1 - a) dx`` (``b = 1 - a`` below):

==================  =============================================
``kl_forward``      ``KL(p || q)``
``kl_reverse``      ``KL(q || p)``
``chi2_forward``    ``I(-1) - 1 = int p^2 / q - 1``
``chi2_reverse``    ``I(2) - 1 = int q^2 / p - 1``
``renyi_reverse``   ``log I(alpha) / (alpha - 1)`` (``alpha = 1``: KL(q||p))
``renyi_forward``   ``log I(1 - alpha) / (alpha - 1)`` (``alpha = 1``: KL(p||q))
``amari``           ``(1 - I(1 - alpha)) / (alpha (1 - alpha))`` (0: KL(q||p), 1: KL(p||q))
``hellinger``       ``1 - I(1/2)`` (squared Hellinger)
``jensen_shannon``  ``KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``
==================  =============================================

Method (`reference`, float64, scipy ``quad``)
--------------------------------------------
* **Frames.** Every point is written as ``x = c_o + w_o t`` in the variable of
  an *owner* density ``o`` (``q`` or one component). The real line is cut at
  the mid-points between the densities' centres and each cell is owned by the
  density whose centre is nearest, so every standardized variable
  ``u_j = (x - c_j) / w_j = (c_o - c_j) / w_j + (w_o / w_j) t`` is computed
  without cancellation (relative error <= 4 eps): no ``x`` is ever formed, so
  ``sigma = 1e-300`` next to ``mu = 1e9`` loses nothing.
* **log p - log q** per component is ``(u_q - u_k)(u_q + u_k) / 2 + log(sigma / s_k)``
  with ``u_q - u_k = u_q (s_k - sigma) / s_k + (m_k - mu) / s_k``: exact
  differences, so ``q ~ p`` (KL ~ 1e-20) keeps full relative accuracy.
* **Integrands without cancellation.** Each divergence is ``int q psi(L)``
  with ``L = log(p / q)`` and ``psi >= 0`` (``psi(0) = psi'(0) = 0``):
  ``KL(q||p)``: ``e^L - 1 - L``; ``KL(p||q)``: ``1 + (L - 1) e^L``; JS:
  ``e^y (y sinh y - cosh y log cosh y)``, ``y = L / 2``; ``I(a) - 1``:
  ``e^{bL} - 1 - b (e^L - 1)`` (``<= 0`` for ``0 < a < 1``). ``psi`` is
  evaluated by its Taylor series near ``L = 0`` and in log space elsewhere
  (factoring out ``p`` where ``p >> q``). ``log I`` itself is integrated
  directly as ``exp(a log q + b log p)``, where ``a log q + b log(pi_k N_k)``
  and the pairwise ``log(pi_j N_j / pi_k N_k)`` are quadratics whose
  coefficients are formed in exact rational arithmetic and evaluated in
  vertex form, the huge constant kept apart: no cancellation when ``q`` is
  far out or ``I`` is close to divergence (peak ~1e5 widths out). The
  ``psi`` form gives ``I - 1`` whenever ``|log I| < 1``.
* **Peaks first.** Candidate features are ``q``, every component, every
  Gaussian-shaped bound ``q^a N_k^b`` (centre and width in closed form, when
  its precision ``a / sigma^2 + b / s_k^2 > 0``) and every sharp dominance
  crossing of two components. From each, the log-integrand is maximized
  (coarse grid, then ``fminbound``, repeated at the measured scale in the
  frame that holds the peak) and its local width measured (the 2-nat drop).
  Around every feature and peak, break points at ``0, +-1/2, 2, 8, 32``
  widths; window ``+-64`` widths (``exp(-2048)``), checked at the ends.
* ``quad`` (``epsrel = 1e-13``) on every interval between break points, each
  on ``exp(log f - S_i)`` with its own log scale ``S_i`` (raised on overflow),
  summed in log space: values beyond float64 still give a finite ``log``, and
  a 1e-300-wide spike and a unit-width bulk can share one cell. Intervals
  whose error is not negligible after a 10-subdivision pass are redone with
  ``epsabs`` set from the total.

`mp_reference` evaluates the plain textbook integrands (``q log(q/p)``,
``p log(p/q)``, ``exp(a log q + b log p)``, ...) in mpmath at ``dps`` digits on
the same cells and break points, with ``mpmath.quad``: an independent check of
the cancellation-free formulas above.

`gaussian_reference` (one-component targets) and `power_integral_closed_form`
(``I(a)`` for integer ``b = 1 - a >= 2``, e.g. ``chi2_forward``, on any
mixture) are closed forms independent of quadrature.

`reference_2d` does the same for a 2-D mixture (full covariances) and a 2-D
Gaussian ``q`` by nested quadrature in ``q``'s standardized variable (see its
docstring for the limits of that path); `gaussian_reference_2d` and
`chi2_forward_closed_form_2d` are its closed-form checks. There is no mpmath
2-D path (nested mpmath quadrature takes minutes per value).
"""

from __future__ import annotations

import bisect
import math
import warnings
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from scipy import integrate, optimize

__all__ = [
    "NAMES",
    "Ref",
    "chi2_forward_closed_form",
    "chi2_forward_closed_form_2d",
    "gaussian_reference",
    "gaussian_reference_2d",
    "is_infinite",
    "mp_reference",
    "power_integral_closed_form",
    "reference",
    "reference_2d",
]

NAMES = (
    "kl_forward",
    "kl_reverse",
    "chi2_forward",
    "chi2_reverse",
    "renyi_forward",
    "renyi_reverse",
    "amari",
    "hellinger",
    "jensen_shannon",
)

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_INF = math.inf
_EPSREL = 1e-13
_GRID = (0.5, 2.0, 8.0, 32.0)  # break points at these multiples of a feature's width
_REACH = 64.0  # integration window: +-_REACH widths around every feature
_NSERIES = 26  # Taylor terms for psi(L) near L = 0
_TMAX = 1e307  # frames stop here
_EPSREL_2D = 1e-11  # outer tolerance in 2-D (the inner one is 1e-13)


class Ref(NamedTuple):
    """A reference value.

    Attributes:
      value: the divergence (float64); ``inf`` when infinite or beyond float64.
      log1p_value: ``log I`` for the divergences built on ``I`` (chi2_*, renyi_*,
        amari, hellinger; for chi2 that is ``log(1 + value)``), and
        ``log1p(value)`` for the KLs and Jensen-Shannon. Finite whenever the
        divergence is mathematically finite, even if ``value`` overflowed.
      infinite: whether the divergence is mathematically infinite.
      log_integral: ``log I(a)`` for the ``I``-based divergences, else nan.
      rel_err: the quadrature's own error estimate, relative to the result
        (0 for closed forms and infinite values).
    """

    value: float
    log1p_value: float
    infinite: bool
    log_integral: float = math.nan
    rel_err: float = 0.0


# ---------------------------------------------------------------------------
# What to compute


class _Spec(NamedTuple):
    kind: str  # "kl_r", "kl_f", "js" or "I"
    b: float = math.nan  # exponent of p in I (a = 1 - b is the exponent of q)
    finish: str = ""  # how a value follows from I: "chi2", "renyi", "amari", "hellinger"
    alpha: float = math.nan


def _spec(name: str, alpha: float | None) -> _Spec:
    if name not in NAMES:
        raise ValueError(f"unknown divergence {name!r}; expected one of {NAMES}")
    if name == "kl_reverse":
        return _Spec("kl_r")
    if name == "kl_forward":
        return _Spec("kl_f")
    if name == "jensen_shannon":
        return _Spec("js")
    if name == "chi2_forward":
        return _Spec("I", 2.0, "chi2")
    if name == "chi2_reverse":
        return _Spec("I", -1.0, "chi2")
    if name == "hellinger":
        return _Spec("I", 0.5, "hellinger")
    if alpha is None or not math.isfinite(alpha):
        raise ValueError(f"{name} needs a finite alpha, got {alpha!r}")
    alpha = float(alpha)
    if name.startswith("renyi") and alpha <= 0:
        raise ValueError(f"{name}: the Renyi order must be > 0, got {alpha}")
    if name == "renyi_reverse":
        return _Spec("kl_r") if alpha == 1 else _Spec("I", 1.0 - alpha, "renyi", alpha)
    if name == "renyi_forward":
        return _Spec("kl_f") if alpha == 1 else _Spec("I", alpha, "renyi", alpha)
    # amari: I(1 - alpha) = int q^(1 - alpha) p^alpha
    if alpha == 0:
        return _Spec("kl_r")
    if alpha == 1:
        return _Spec("kl_f")
    return _Spec("I", alpha, "amari", alpha)


def _finish(spec: _Spec, log_i: float, i_m1: float, rel_err: float) -> Ref:
    """A `Ref` from ``log I`` and ``I - 1`` (each accurate; ``inf`` allowed)."""
    if spec.finish == "chi2":
        return Ref(i_m1, log_i, False, log_i, rel_err)
    if spec.finish == "renyi":
        return Ref(log_i / (spec.alpha - 1.0), log_i, False, log_i, rel_err)
    if spec.finish == "hellinger":
        return Ref(-i_m1, log_i, False, log_i, rel_err)
    a = spec.alpha
    return Ref(-i_m1 / (a * (1.0 - a)), log_i, False, log_i, rel_err)


def _infinite_ref() -> Ref:
    return Ref(_INF, _INF, True, _INF, 0.0)


def is_infinite(name, scales, scale, alpha=None) -> bool:
    """Whether ``name`` is mathematically infinite (exact rational comparison).

    With ``s^2`` the widest component's variance, ``I(a) = inf`` iff
    ``a > 1 and sigma^2 >= a s^2 / (a - 1)`` or ``a < 0 and sigma^2 <= -a s^2 / (1 - a)``;
    the KLs and JS are always finite.
    """
    spec = _spec(name, alpha)
    if spec.kind != "I":
        return False
    return _i_infinite(spec.b, max(abs(float(s)) for s in np.atleast_1d(scales)), float(scale))


def _i_infinite(b: float, smax: float, sigma: float) -> bool:
    # I(a) diverges iff the precision a / sigma^2 + b / s^2 <= 0 (a = 1 - b exactly).
    fb = Fraction(b)
    v = (1 - fb) * Fraction(smax) ** 2 + fb * Fraction(sigma) ** 2
    return v <= 0


# ---------------------------------------------------------------------------
# The target and the frames


class _Target:
    """q (index 0) and the mixture's components (1..K), duplicates merged."""

    def __init__(self, weights, locs, scales, loc, scale):
        w = np.atleast_1d(np.asarray(weights, dtype=float))
        m = np.atleast_1d(np.asarray(locs, dtype=float))
        s = np.atleast_1d(np.asarray(scales, dtype=float))
        if not (w.shape == m.shape == s.shape) or w.ndim != 1 or w.size == 0:
            raise ValueError("weights, locs and scales must be 1-D and of one length")
        if not (np.all(w > 0) and np.all(s > 0) and np.all(np.isfinite(np.r_[w, m, s]))):
            raise ValueError("weights and scales must be positive and finite")
        mu, sigma = float(loc), float(scale)
        if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
            raise ValueError("q's loc must be finite and its scale positive")
        merged: dict[tuple[float, float], list[float]] = {}
        for wk, mk, sk in zip(w.tolist(), m.tolist(), s.tolist()):
            merged.setdefault((mk, sk), []).append(wk)
        self.mu, self.sigma = mu, sigma
        self.locs = [k[0] for k in merged]
        self.scales = [k[1] for k in merged]
        total = math.fsum(w.tolist())
        # log pi_k = log(w_k / Z), written as -log1p(others / w_k) when w_k dominates.
        self.log_pi = []
        self.total, self.weights = total, []
        for ws in merged.values():
            wk = math.fsum(ws)
            self.weights.append(wk)
            rest = total - wk
            self.log_pi.append(-math.log1p(rest / wk) if rest < wk else math.log(wk / total))
        self.K = len(self.locs)
        self.centres = [mu] + self.locs
        self.widths = [sigma] + self.scales
        self.log_widths = [math.log(v) for v in self.widths]
        self.smax = max(self.scales)
        # log(sigma / s_k), accurate when sigma ~ s_k.
        self.log_ratio = []
        for sk in self.scales:
            r = sigma / sk
            self.log_ratio.append(
                math.log1p((sigma - sk) / sk) if 0.5 < r < 2 else math.log(sigma) - math.log(sk)
            )


class _Frame:
    """Log densities at ``x = c_o + w_o t`` from the owner ``o``'s variable ``t``."""

    def __init__(self, tg: _Target, o: int):
        self.tg, self.o = tg, o
        self.direct: dict = {}  # cache of _direct_rel
        co, wo = tg.centres[o], tg.widths[o]
        self.centre, self.width, self.log_width = co, wo, tg.log_widths[o]
        mu, sigma = tg.mu, tg.sigma
        # u_j = d_j + r_j t for q (j = 0) and the components.
        self.dq, self.rq = ((co - mu) / sigma, wo / sigma) if o else (0.0, 1.0)
        self.dq_rq = (co - mu) / wo  # for log|u_q| when u_q overflows
        self.cq = math.log(sigma) + _HALF_LOG_2PI
        comps = []
        for k in range(tg.K):
            mk, sk = tg.locs[k], tg.scales[k]
            d, r = ((co - mk) / sk, wo / sk) if o != k + 1 else (0.0, 1.0)
            comps.append(
                (
                    d,
                    r,
                    tg.log_pi[k] - math.log(sk) - _HALF_LOG_2PI,  # log pi_k N_k = c - u^2/2
                    (sk - sigma) / sk,  # u_q - u_k = u_q es + em
                    (mk - mu) / sk,
                    tg.log_ratio[k],  # log(sigma / s_k)
                )
            )
        self.comps = comps
        self.log_pis = list(tg.log_pi)
        self.pis = [w / tg.total for w in tg.weights]  # exact ratios, rounded once
        # Conversion of another anchor's variable into this one: t = off_j + sc_j tau.
        self.off = [(c - co) / wo for c in tg.centres]
        self.sc = [w / wo for w in tg.widths]

    def to_t(self, anchor: int, tau: float) -> float:
        return self.off[anchor] + self.sc[anchor] * tau if anchor != self.o else tau

    def logs(self, t: float):
        """``(log q, log p, L = log p - log q, log|u_q|)`` at ``t`` (p normalized)."""
        t = float(t)
        uq = self.dq + self.rq * t
        lq = -0.5 * uq * uq - self.cq
        lps, ls = [], []
        for d, r, c, es, em, lrl in self.comps:
            u = d + r * t
            lps.append(c - 0.5 * u * u)
            # u_q - u_k: exact differences when q ~ N_k, plain subtraction otherwise
            x, y = uq * es, em
            diff = x + y if abs(x) + abs(y) < abs(uq) + abs(u) else uq - u
            ls.append(lrl + 0.5 * diff * (uq + u))
        if max(map(abs, ls)) < 0.5:  # every N_k ~ q: log(sum_k pi_k e^{L_k}), sum_k pi_k = 1
            big_l = math.log1p(math.fsum(pk * math.expm1(v) for pk, v in zip(self.pis, ls)))
        else:
            big_l = _lse([lpk + v for lpk, v in zip(self.log_pis, ls)])
        if abs(uq) < 1e150:
            luq = math.log(abs(uq)) if uq else -_INF
        else:
            luq = math.log(self.rq) + math.log(abs(self.dq_rq + t))
        return lq, _lse(lps), big_l, luq


def _lse(xs) -> float:
    m = max(xs)
    if m == -_INF or m == _INF or math.isnan(m):
        return m
    if len(xs) == 1:
        return m
    return m + math.log(sum(math.exp(x - m) for x in xs))


# ---------------------------------------------------------------------------
# psi(L) in log space: log of the integrand = log q + log psi(L), sign aside.


def _series_coeffs(kind: str, b: float = 0.0) -> list[float]:
    """Coefficients c_2..c_N of psi(L) = sum_n c_n L^n (highest first, for Horner)."""
    out = []
    for n in range(2, _NSERIES + 1):
        f = math.factorial(n)
        if kind == "kl_r":
            out.append(1.0 / f)
        elif kind == "kl_f":
            out.append((n - 1) / f)
        else:  # I: (b^n - b) / n!
            out.append((b**n - b) / f)
    return out[::-1]


def _horner(coeffs, x: float) -> float:
    s = 0.0
    for c in coeffs:
        s = s * x + c
    return s * x * x


class _Psi:
    """``log |q psi(L)|`` for one integrand kind; ``sign`` is the sign of psi."""

    def __init__(self, spec: _Spec):
        self.kind = spec.kind
        self.sign = 1.0
        if spec.kind == "I":
            b = spec.b
            a = 1.0 - b
            self.b, self.a = b, a
            self.sign = -1.0 if 0 < a < 1 else 1.0
            self.cut = 1.0 / max(1.0, abs(b))  # Taylor series for |L| max(1, |b|) <= 1
            self.coeffs = _series_coeffs("I", b)
            self.log_a, self.sign_a = math.log(abs(a)), math.copysign(1.0, a)
            self.log_b, self.sign_b = math.log(abs(b)), math.copysign(1.0, b)
        elif spec.kind in ("kl_r", "kl_f"):
            self.coeffs = _series_coeffs(spec.kind)

    def __call__(self, lq: float, lp: float, L: float, luq: float) -> float:
        k = self.kind
        if L != L or (lp == -_INF and lq == -_INF):
            return -_INF
        if k == "kl_r":  # e^L - 1 - L
            if L > 1.0:
                c = 0.0 if L > 700.0 else math.log1p(-(1.0 + L) * math.exp(-L))
                return lp + c
            if L < -1.0:
                return lq + math.log(-L - 1.0 + math.exp(L))
            s = _horner(self.coeffs, L)
            return lq + math.log(s) if s > 0 else -_INF
        if k == "kl_f":  # 1 + (L - 1) e^L
            if L > 1.0:
                if L > 1e300 or luq > 230.0:  # L = u_q^2 / 2 + O(log): log L from log|u_q|
                    return lp + 2.0 * luq - _LOG2
                return lp + math.log(L - 1.0 + math.exp(-L))
            if L < -1.0:
                return lq + (math.log1p((L - 1.0) * math.exp(L)) if L > -745.0 else 0.0)
            s = _horner(self.coeffs, L)
            return lq + math.log(s) if s > 0 else -_INF
        if k == "js":
            y = 0.5 * L
            if y > 2.0:
                e = math.exp(-2.0 * y) if y < 370.0 else 0.0
                v = 0.5 * (1.0 + e) * (_LOG2 - math.log1p(e)) - (y * e if e else 0.0)
                return lp + math.log(v)
            if y < -2.0:
                e = math.exp(2.0 * y) if y > -370.0 else 0.0
                v = 0.5 * (1.0 + e) * (_LOG2 - math.log1p(e)) + (y * e if e else 0.0)
                return lq + math.log(v)
            if y == 0.0:
                return -_INF
            sh = math.sinh(0.5 * y)
            lc = math.log1p(2.0 * sh * sh)  # log cosh y
            g = y * math.sinh(y) - math.cosh(y) * lc
            return lq + y + math.log(g) if g > 0 else -_INF
        # I: e^{bL} - 1 - b (e^L - 1) = e^{bL} - a - b e^L, three signed exponentials
        if abs(L) <= self.cut:
            s = self.sign * _horner(self.coeffs, L)
            return lq + math.log(s) if s > 0 else -_INF
        b = self.b
        if L >= 0:  # factor out p = q e^L
            base, e_pow, e_a, e_b = lp, (b - 1.0) * L, -L + self.log_a, self.log_b
        else:
            base, e_pow, e_a, e_b = lq, b * L, self.log_a, L + self.log_b
        m = max(e_pow, e_a, e_b)
        tot = (
            math.exp(e_pow - m) - self.sign_a * math.exp(e_a - m) - self.sign_b * math.exp(e_b - m)
        )
        tot *= self.sign
        return base + m + math.log(tot) if tot > 0 else -_INF


class _Direct:
    """Marker for the integrand ``exp(a log q + b log p)`` of ``I`` (see `_direct_rel`)."""

    def __init__(self, spec: _Spec):
        self.b = spec.b
        self.a = 1.0 - spec.b


# ---------------------------------------------------------------------------
# Features: where the integrand lives


class _Feature(NamedTuple):
    anchor: int  # frame whose variable tau is in
    tau: float
    width: float  # in that anchor's units


def _base_features(tg: _Target, spec: _Spec, frames) -> list[_Feature]:
    feats = [_Feature(j, 0.0, 1.0) for j in range(tg.K + 1)]
    if spec.kind == "I":
        fb = Fraction(spec.b)
        fa = 1 - fb
        sig2 = Fraction(tg.sigma) ** 2
        for k in range(tg.K):
            v = float(fa * Fraction(tg.scales[k]) ** 2 + fb * sig2)  # s_k^2 sigma^2 precision
            if not v > 0:
                continue
            mk, sk, sigma = tg.locs[k], tg.scales[k], tg.sigma
            width_x = sigma * sk / math.sqrt(v)
            dq = spec.b * sigma * sigma * (mk - tg.mu) / v  # x* - mu
            dk = (1.0 - spec.b) * sk * sk * (tg.mu - mk) / v  # x* - m_k
            if abs(dq) <= abs(dk):
                feats.append(_Feature(0, dq / sigma, width_x / sigma))
            else:
                feats.append(_Feature(k + 1, dk / sk, width_x / sk))
    feats += _crossings(tg, frames)
    return feats


def _crossings(tg: _Target, frames) -> list[_Feature]:
    """Sharp dominance crossings of two components (near-kinks of log p)."""
    out = []
    for j in range(tg.K):
        for k in range(tg.K):
            if k <= j:
                continue
            sj, sk = tg.scales[j], tg.scales[k]
            rho = sj / sk
            delta = (tg.locs[j] - tg.locs[k]) / sk
            cc = (tg.log_pi[k] - math.log(sk)) - (tg.log_pi[j] - math.log(sj))
            qa, qb, qc = 0.5 * (rho * rho - 1.0), delta * rho, 0.5 * delta * delta - cc
            roots = []
            if qa == 0.0:
                if qb != 0.0:
                    roots.append(-qc / qb)
            else:
                disc = qb * qb - 4.0 * qa * qc
                if disc >= 0:
                    sq = math.sqrt(disc)
                    qq = -0.5 * (qb + math.copysign(sq, qb))
                    if qq != 0.0:
                        roots += [qq / qa, qc / qq]
                    else:
                        roots.append(0.0)
            fr = frames[j + 1]
            for t in roots:
                if not math.isfinite(t):
                    continue
                uk = delta + rho * t
                slope = abs(-t + rho * uk)
                width = min(1.0, 1.0 / rho, 1.0 / slope if slope > 0 else _INF)
                if width > 0.5 * min(1.0, 1.0 / rho):
                    continue  # a smooth hand-over: the components' own grids resolve it
                # relevant only where j and k are the two largest terms of p
                lps = [c - 0.5 * (d + r * t) ** 2 for d, r, c, *_ in fr.comps]
                top = max(v for i, v in enumerate(lps) if i not in (j, k)) if tg.K > 2 else -_INF
                if min(lps[j], lps[k]) < top - 10.0:
                    continue
                if abs(sj * t) <= abs(sk * uk):
                    out.append(_Feature(j + 1, t, width))
                else:
                    out.append(_Feature(k + 1, uk, width * rho))
    return out


def _refine(frame: _Frame, f, tau0: float, w: float):
    """A local maximum of the log-integrand ``f`` near ``tau0`` (None if ``f = 0``)."""
    _, g = _log_f(frame, f, tau0)

    steps = (-32, -16, -8, -4, -2, -1, -0.5, 0, 0.5, 1, 2, 4, 8, 16, 32)
    ts = [tau0 + w * s for s in steps]
    vs = [g(t) for t in ts]
    for _ in range(60):  # walk outwards while the maximum sits at an end
        i = max(range(len(vs)), key=vs.__getitem__)
        if vs[i] == -_INF:
            return None
        if 0 < i < len(ts) - 1:
            break
        if i:
            ts.append(ts[-1] + 2.0 * (ts[-1] - ts[-2]))
            vs.append(g(ts[-1]))
        else:
            ts.insert(0, ts[0] - 2.0 * (ts[1] - ts[0]))
            vs.insert(0, g(ts[0]))
    i = max(range(len(vs)), key=vs.__getitem__)
    lo, hi = ts[max(i - 1, 0)], ts[min(i + 1, len(ts) - 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_star = optimize.fminbound(lambda t: -g(t), lo, hi, xtol=1e-9 * (hi - lo), maxfun=200)
    if not g(t_star) >= vs[i]:
        t_star = ts[i]
    return t_star


def _width(frame: _Frame, f, t: float, w: float) -> float:
    """Half the largest power-of-2 step from ``t`` (either side) losing at most 2 nats."""
    _, g = _log_f(frame, f, t)
    v = g(t)

    out = []
    for sgn in (1.0, -1.0):
        h = w
        if g(t + sgn * h) < v - 2.0:
            for _ in range(2100):
                h *= 0.5
                if h < 1e-300 or g(t + sgn * h) >= v - 2.0:
                    break
        else:
            for _ in range(2100):
                if h > 1e300 or g(t + sgn * 2.0 * h) < v - 2.0:
                    break
                h *= 2.0
        out.append(h)
    return 0.5 * min(out)


# ---------------------------------------------------------------------------
# The plan: cells, break points


class _Cell(NamedTuple):
    frame: _Frame
    lo: float
    hi: float
    points: list  # sorted interior break points
    t0: float  # reference point (best peak inside the cell)


class _Plan(NamedTuple):
    tg: _Target
    spec: _Spec
    cells: list
    peaks: list  # (owner, t, width, log f) of every refined peak, in its cell's frame


def _owners(tg: _Target):
    """Sorted distinct centres, each with its owner (narrowest density there)."""
    by_centre: dict[float, int] = {}
    for j, c in enumerate(tg.centres):
        if c not in by_centre or tg.widths[j] < tg.widths[by_centre[c]]:
            by_centre[c] = j
    return [(c, by_centre[c]) for c in sorted(by_centre)]


def _points_1d(feats, lo, hi, reach):
    """``[lo, break points..., hi]`` on a line from features ``[(centre, width)]``.

    The window is ``+-reach`` widths around every feature (clipped to
    ``[lo, hi]``); break points sit at ``0, +-1/2, 2, 8, 32`` widths of every
    feature, thinned where they crowd (each keeps the spacing its own grading
    asks for). None when the window is empty.
    """
    pts, glo, ghi = [], _INF, -_INF
    for t, w in feats:
        if not (math.isfinite(t) and w > 0 and math.isfinite(w)):
            continue
        glo, ghi = min(glo, t - reach * w), max(ghi, t + reach * w)
        pts.append((t, 0.5 * w))
        for g in _GRID:
            pts += [(t - g * w, 0.5 * g * w), (t + g * w, 0.5 * g * w)]
    lo, hi = max(lo, glo), min(hi, ghi)
    if not lo < hi:
        return None
    pts.sort()
    kept, last, last_sp = [], lo, 0.0
    for t, sp in pts:
        if not lo < t < hi or (kept and t - last < 0.5 * min(sp, last_sp)):
            continue
        if not kept and t - lo < 0.25 * sp:
            continue
        kept.append(t)
        last, last_sp = t, sp
    while kept and hi - kept[-1] < 0.25 * last_sp:
        kept.pop()
        last_sp = 0.0
    return [lo, *kept, hi]


def _plan(tg: _Target, spec: _Spec, f, reach: float = _REACH) -> _Plan | None:
    frames = [_Frame(tg, o) for o in range(tg.K + 1)]
    owners = _owners(tg)
    mids = [c + 0.5 * (owners[i + 1][0] - c) for i, (c, _) in enumerate(owners[:-1])]

    def home(anchor: int, tau: float, width: float):
        """The cell holding ``x = c_anchor + w_anchor tau``: (owner, t, width in t)."""
        x = tg.centres[anchor] + tg.widths[anchor] * tau
        o = owners[bisect.bisect_left(mids, x)][1]
        fr = frames[o]
        return o, fr.to_t(anchor, tau), width * fr.sc[anchor]

    feats = [home(*ft) for ft in _base_features(tg, spec, frames)]
    peaks = []
    for o, t, w in feats:
        for _ in range(40):  # refine at ever finer scales, in the frame that holds the peak
            r = _refine(frames[o], f, t, w)
            if r is None:
                break
            o2, t2, w2 = home(o, r, w)
            w3 = _width(frames[o2], f, t2, w2)
            if w3 >= 0.25 * w2:  # the scale searched was fine enough (w2: w in o2's units)
                c0, g = _log_f(frames[o2], f, t2)
                peaks.append((o2, t2, w3, c0 + g(t2)))
                break
            o, t, w = o2, t2, w3
    if not peaks:
        return None  # the integrand vanishes (p == q)
    uniq = []
    for pk in sorted(peaks, key=lambda p: -p[3]):
        if not any(u[0] == pk[0] and abs(u[1] - pk[1]) < 0.1 * min(u[2], pk[2]) for u in uniq):
            uniq.append(pk)
    peaks = uniq
    allf = feats + [(o, t, w) for o, t, w, _ in peaks]
    cells = []
    for i, (c, o) in enumerate(owners):
        fr = frames[o]
        xlo = -_INF if i == 0 else mids[i - 1]
        xhi = _INF if i == len(owners) - 1 else mids[i]
        # a cell reaches at most 1e307 owner widths (x's beyond that overflow the frame)
        tlo, thi = max((xlo - c) / fr.width, -_TMAX), min((xhi - c) / fr.width, _TMAX)
        here = [(fr.to_t(j, tj), wj * fr.sc[j]) for j, tj, wj in allf]
        edges = _points_1d(
            [(t, w) for t, w in here if abs(t) < _TMAX and w < _TMAX], tlo, thi, reach
        )
        if edges is None:
            continue
        lo, kept, hi = edges[0], edges[1:-1], edges[-1]
        # reference point: where the integrand is largest (peaks inside, break points, ends);
        # `_direct_rel` is exact near it, so the cell's dominant pieces carry no cancellation
        cands = [fr.to_t(j, t) for j, t, _, _ in peaks] + kept + [lo, hi]
        cands = [t for t in cands if lo <= t <= hi]
        c0, g = _log_f(fr, f, cands[0])
        t0 = max(cands, key=lambda t: c0 + g(t))
        cells.append(_Cell(fr, lo, hi, kept, t0))
    return _Plan(tg, spec, cells, peaks)


# ---------------------------------------------------------------------------
# Integration (float64)


class _Rescale(Exception):
    pass


def _fl(x: Fraction) -> float:
    """``float(x)``, ``+-inf`` beyond the float range."""
    try:
        return float(x)
    except OverflowError:
        return _INF if x > 0 else -_INF


def _vertex(qa: Fraction, qb: Fraction, qc: Fraction):
    """``-(qa t^2 + 2 qb t + qc) / 2`` with exact coefficients, rounded once.

    Vertex form ``(0, A, tau, v)`` of ``v - A (t - tau)^2 / 2`` when the vertex
    is representable (no cancellation near the vertex, however large ``v``);
    else the plain polynomial ``(1, alpha, beta, gamma)`` of
    ``(alpha t + beta) t + gamma``.
    """
    if qa != 0:
        tau = -qb / qa
        if abs(tau) < 1e150 and abs(_fl(qa)) > 0:
            return 0, _fl(qa), _fl(tau), _fl(-(qc - qb * qb / qa) / 2)
    return 1, _fl(-qa / 2), _fl(-qb), _fl(-qc / 2)


def _eval_vertex(form, t: float) -> float:
    kind, a, b, c = form
    if kind == 0:
        d = t - b
        return c - 0.5 * a * d * d
    return (a * t + b) * t + c


def _direct_exact(fr: _Frame, b: float):
    """Exact quadratics of `_direct_rel` (cached on the frame)."""
    if b in fr.direct:
        return fr.direct[b]
    tg = fr.tg
    fb = Fraction(b)
    fa = 1 - fb
    co, wo = Fraction(fr.centre), Fraction(fr.width)
    std = [
        ((co - Fraction(c)) / Fraction(w), wo / Fraction(w)) for c, w in zip(tg.centres, tg.widths)
    ]
    dq, rq = std[0]
    log_q0 = -math.log(tg.sigma) - _HALF_LOG_2PI
    log_k0 = [lpi - math.log(s) - _HALF_LOG_2PI for lpi, s in zip(tg.log_pi, tg.scales)]
    heads = []
    for k in range(tg.K):
        dk, rk = std[k + 1]
        qa, qb, qc = (
            fa * rq * rq + fb * rk * rk,
            fa * rq * dq + fb * rk * dk,
            fa * dq * dq + fb * dk * dk,
        )
        const = Fraction(float(fa) * log_q0) + Fraction(b * log_k0[k])
        heads.append((qa, qb, qc, const, _vertex(qa, qb, qc)))
    pairs = {}
    for j in range(tg.K):
        for k in range(tg.K):
            if j != k:
                dj, rj = std[j + 1]
                dk, rk = std[k + 1]
                form = _vertex(rj * rj - rk * rk, rj * dj - rk * dk, dj * dj - dk * dk)
                pairs[j, k] = (*form[:3], form[3] + (log_k0[j] - log_k0[k]))
    fr.direct[b] = (heads, pairs)
    return heads, pairs


def _direct_rel(fr: _Frame, b: float, t0: float):
    """``(C, rel)`` with ``a log q + b log p = C + rel(t)`` in frame ``fr`` (``a = 1 - b``).

    ``a log q + b log(pi_k N_k)`` and every ``log(pi_j N_j) - log(pi_k N_k)``
    are quadratics in ``t`` whose coefficients are formed in exact rational
    arithmetic from the float inputs and only then rounded (in vertex form
    where the vertex is representable). ``C`` is the exact value at ``t0`` of
    the term of the component that dominates there, so ``rel`` is small near
    ``t0`` and keeps its shape even where ``log q`` and ``log p`` are huge and
    cancel (q far out; ``I`` near its divergence, with the peak 1e5 widths out).
    """
    key = (b, t0)
    if key in fr.direct:
        return fr.direct[key]
    heads_x, pairs = _direct_exact(fr, b)
    K = len(heads_x)

    def dominant(t):
        best = 0
        for k in range(1, K):
            if _eval_vertex(pairs[k, best], t) > 0.0:
                best = k
        return best

    k0 = dominant(t0) if math.isfinite(t0) else 0
    qa, qb, qc, const, _ = heads_x[k0]
    tt = Fraction(t0) if math.isfinite(t0) else Fraction(0)
    c_exact = -(qa * tt * tt + 2 * qb * tt + qc) / 2 + const
    heads = []
    for qa, qb, qc, const, form in heads_x:
        if form[0] == 0:
            heads.append((0, form[1], form[2], _fl(-(qc - qb * qb / qa) / 2 + const - c_exact)))
        else:
            heads.append((1, form[1], form[2], _fl(-qc / 2 + const - c_exact)))

    def rel(t):
        best = dominant(t)
        x = _eval_vertex(heads[best], t)
        if not x > -_INF:  # -inf or nan: beyond float range, q or p is zero there
            return -_INF
        s = 0.0
        for k in range(K):
            if k != best:
                y = _eval_vertex(pairs[k, best], t)
                if y > -745.0:
                    s += math.exp(min(y, 700.0))
        if s:
            x += b * math.log1p(s)
        return -_INF if x != x else x

    fr.direct[key] = (_fl(c_exact), rel)
    return fr.direct[key]


def _log_f(fr: _Frame, f, t0: float):
    """``(C, g)``: the log-integrand in frame ``fr`` is ``C + g(t)``."""
    if isinstance(f, _Direct):
        return _direct_rel(fr, f.b, t0)

    def g(t):
        v = f(*fr.logs(t))
        return v if v == v else -_INF

    return 0.0, g


def _quad_piece(
    rel, lo: float, hi: float, shift: float, tol_abs: float, limit: int, epsrel: float = _EPSREL
):
    """``int_lo^hi exp(rel(t) - shift) dt`` and its error, rescaling on overflow."""
    for _ in range(6):

        def g(t, shift=shift):
            e = rel(t) - shift
            if e > 600.0:
                raise _Rescale(e)
            return math.exp(e) if e > -745.0 else 0.0

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", integrate.IntegrationWarning)
                val, err, *_ = integrate.quad(
                    g, lo, hi, epsabs=tol_abs, epsrel=epsrel, limit=limit, full_output=1
                )
            return val, err, shift
        except _Rescale as exc:
            tol_abs *= math.exp(-min(float(exc.args[0]) + 10.0, 700.0))
            shift += float(exc.args[0]) + 10.0
    raise FloatingPointError("could not scale the integrand")  # pragma: no cover


def _integrate(plan: _Plan, f):
    """``(log int |integrand| dx, relative error estimate)``.

    Every interval between break points gets its own log scale (the largest of
    five samples; raised on overflow), so one cell may hold both a
    1e-300-wide spike and a unit-width bulk without underflow. Pass 1 runs
    ``quad`` with a small subdivision limit; pieces whose error is not yet
    negligible against the total are redone with a large limit and ``epsabs``
    set from the total.
    """
    pieces = []
    for cell in plan.cells:
        fr = cell.frame
        c0, rel = _log_f(fr, f, cell.t0)
        c0 += fr.log_width
        edges = [cell.lo, *cell.points, cell.hi]
        for lo, hi in zip(edges[:-1], edges[1:]):
            samples = [rel(lo), rel(hi)] + [rel(lo + (hi - lo) * u) for u in (0.25, 0.5, 0.75)]
            shift = max(samples)
            if shift == -_INF:
                shift = 0.0
            val, err, shift = _quad_piece(rel, lo, hi, shift, 0.0, 10)
            pieces.append([c0, rel, lo, hi, shift, val, err])
    logs = [p[0] + p[4] + math.log(p[5]) for p in pieces if p[5] > 0]
    if not logs:
        return -_INF, 0.0
    total = _lse(logs)
    for p in pieces:
        c0, rel, lo, hi, shift, val, err = p
        scale = c0 + shift - total  # piece value * exp(scale) is relative to the total
        if err > 0 and math.log(err) + scale > math.log(1e-16):
            tol = 1e-17 * math.exp(min(-scale, 700.0))
            p[5], p[6], p[4] = _quad_piece(rel, lo, hi, shift, tol, 2000)
    # totals per cell relative to the cell's constant (exact differences), then combined
    cells: dict = {}
    for c0, _, _, _, shift, val, err in pieces:
        entry = cells.setdefault(c0, ([], []))
        if val > 0:
            entry[0].append(shift + math.log(val))
        if err > 0:
            entry[1].append(shift + math.log(err))
    cell_logs = {c0: _lse(v) for c0, (v, _) in cells.items() if v}
    total = _lse([c0 + v for c0, v in cell_logs.items()])
    rel = 0.0
    for c0, v in cell_logs.items():
        e = cells[c0][1]
        if e:
            rel += math.exp(min(_lse(e) - v, 0.0) + min(c0 + v - total, 0.0))
    return total, rel


def _check_window(plan: _Plan, f, log_total: float) -> bool:
    """Whether the integrand is negligible at the two ends of the window."""
    for cell, t in ((plan.cells[0], plan.cells[0].lo), (plan.cells[-1], plan.cells[-1].hi)):
        fr = cell.frame
        c0, g = _log_f(fr, f, cell.t0)
        v = c0 + g(t)
        span = abs(t - cell.t0) + 1.0  # mass beyond the end < value * span, generously
        if v + math.log(span) + fr.log_width > log_total - 40.0:
            return False
    return True


def _solve(tg: _Target, spec: _Spec, f):
    """``(log int |integrand| dx, relative error)`` for the log-integrand ``f``."""
    reach = _REACH
    for _ in range(4):
        plan = _plan(tg, spec, f, reach)
        if plan is None:
            return -_INF, 0.0
        log_v, rel = _integrate(plan, f)
        if log_v == -_INF or _check_window(plan, f, log_v):
            return log_v, rel
        reach *= 4.0
    raise FloatingPointError("the integration window does not hold the integrand")


def reference(name, weights, locs, scales, loc, scale, alpha=None) -> Ref:
    """The divergence ``name`` between the normalized mixture and ``N(loc, scale^2)``.

    Args:
      name: one of `NAMES`.
      weights, locs, scales: the mixture (weights positive, any normalization).
      loc, scale: q's mean and standard deviation.
      alpha: the order for ``renyi_*`` (``> 0``) and ``amari`` (any real).

    Returns:
      `Ref` (value, log1p_value, infinite, log_integral, rel_err).
    """
    spec = _spec(name, alpha)
    tg = _Target(weights, locs, scales, loc, scale)
    if spec.kind == "I":
        if _i_infinite(spec.b, tg.smax, tg.sigma):
            return _infinite_ref()
        log_i, rel = _solve(tg, spec, _Direct(spec))
        i_m1 = math.expm1(log_i) if log_i < 709.0 else _INF
        if abs(log_i) < 1.0:  # I - 1 without cancellation
            psi = _Psi(spec)
            log_m, rel = _solve(tg, spec, psi)
            i_m1 = psi.sign * math.exp(log_m)
            log_i = math.log1p(i_m1)
        return _finish(spec, log_i, i_m1, rel)
    log_v, rel = _solve(tg, spec, _Psi(spec))
    value = math.exp(log_v) if log_v < 709.0 else _INF
    lp1 = math.log1p(value) if log_v < 36.0 else log_v + math.log1p(math.exp(-log_v))
    return Ref(value, lp1, False, math.nan, rel)


# ---------------------------------------------------------------------------
# The slow path: textbook integrands in mpmath


def _mp_densities(mp, tg: _Target, raw, o: int):
    """``t -> (log q, log p)`` in mpmath at ``x = c_o + w_o t`` (exact inputs, raw components)."""
    w, m, s = raw
    co, wo = mp.mpf(tg.centres[o]), mp.mpf(tg.widths[o])
    mu, sigma = mp.mpf(tg.mu), mp.mpf(tg.sigma)
    dq, rq = (co - mu) / sigma, wo / sigma
    cq = mp.log(sigma) + mp.log(2 * mp.pi) / 2
    log_z = mp.log(mp.fsum(mp.mpf(v) for v in w))
    rows = []
    for wk, mk, sk in zip(w, m, s):
        sk = mp.mpf(sk)
        rows.append(
            ((co - mp.mpf(mk)) / sk, wo / sk, mp.log(wk) - log_z - mp.log(sk) - cq + mp.log(sigma))
        )

    def logs(t):
        uq = dq + rq * t
        lq = -uq * uq / 2 - cq
        terms = [c - (d + r * t) ** 2 / 2 for d, r, c in rows]
        top = max(terms)
        lp = top + mp.log(mp.fsum(mp.exp(v - top) for v in terms))
        return lq, lp

    return logs


def mp_reference(name, weights, locs, scales, loc, scale, alpha=None, dps: int = 40) -> Ref:
    """`reference` recomputed in mpmath from the textbook integrands (slow).

    ``q log(q/p)``, ``p log(p/q)``, ``[p log(2p/(p+q)) + q log(2q/(p+q))] / 2``
    and ``q^a p^b`` (then, when ``|log I| < 1``, also ``q^a p^b - a q - b p``
    for ``I - 1``) are integrated with ``mpmath.quad`` (tanh-sinh) over the
    same cells and break points as `reference`: each cell in its owner's
    variable, all arithmetic at ``dps`` digits from the exact float inputs,
    components not merged, no series and no log-space tricks beyond a
    per-interval scale (mpmath's stopping rule is an absolute error).
    ``dps = 40`` leaves ~20 digits for divergences as small as 1e-20.
    """
    import mpmath

    spec = _spec(name, alpha)
    tg = _Target(weights, locs, scales, loc, scale)
    if spec.kind == "I" and _i_infinite(spec.b, tg.smax, tg.sigma):
        return _infinite_ref()
    f = _Direct(spec) if spec.kind == "I" else _Psi(spec)
    plan = _plan(tg, spec, f)
    raw = tuple(
        [float(v) for v in np.atleast_1d(np.asarray(x, dtype=float))]
        for x in (weights, locs, scales)
    )
    with mpmath.workdps(dps):
        mp = mpmath.mp
        cells = [
            (cell, _mp_densities(mp, tg, raw, cell.frame.o))
            for cell in (plan.cells if plan else [])
        ]
        if spec.kind != "I":
            value, rel_err = _mp_integrate(mp, cells, _mp_textbook(mp, spec.kind), dps)
            return Ref(_mp_float(value), float(mp.log1p(value)), False, math.nan, rel_err)
        b = mp.mpf(spec.b)
        a = 1 - b
        i_val, rel_err = _mp_integrate(mp, cells, lambda lq, lp: (a * lq + b * lp, 1), dps)
        log_i = mp.log(i_val)
        i_m1 = mp.expm1(log_i)
        if abs(log_i) < 1:

            def ftilde(lq, lp):
                top = max(a * lq + b * lp, lq, lp)
                return top, mp.exp(a * lq + b * lp - top) - a * mp.exp(lq - top) - b * mp.exp(
                    lp - top
                )

            i_m1, rel_err = _mp_integrate(mp, cells, ftilde, dps)
            log_i = mp.log1p(i_m1)
        ref = _finish(spec, float(log_i), _mp_float(i_m1), rel_err)
        if spec.finish == "renyi":
            return ref._replace(value=float(log_i / (mp.mpf(spec.alpha) - 1)))
        if spec.finish == "amari":
            al = mp.mpf(spec.alpha)
            return ref._replace(value=_mp_float(-i_m1 / (al * (1 - al))))
        return ref


def _mp_textbook(mp, kind: str):
    """``(log q, log p) -> (E, F)`` with the integrand ``exp(E) F``."""
    half_log2 = mp.log(2)

    def h(lq, lp):
        if kind == "kl_r":
            return lq, lq - lp
        if kind == "kl_f":
            return lp, lp - lq
        top = max(lq, lp)
        lm = top + mp.log(mp.exp(lq - top) + mp.exp(lp - top)) - half_log2
        return top, (mp.exp(lp - top) * (lp - lm) + mp.exp(lq - top) * (lq - lm)) / 2

    return h


def _mp_integrate(mp, cells, h, dps: int):
    """``int exp(E) F dx`` over the cells (``h(log q, log p) = (E, F)``) and its rel. error."""
    pieces = []
    for cell, logs in cells:
        log_wo = mp.log(mp.mpf(cell.frame.width))
        edges = [mp.mpf(v) for v in (cell.lo, *cell.points, cell.hi)]
        for lo, hi in zip(edges[:-1], edges[1:]):
            samples = [h(*logs(lo + (hi - lo) * u)) for u in (0, 0.25, 0.5, 0.75, 1)]
            s = max((e + mp.log(abs(v)) for e, v in samples if v), default=-mp.inf)
            if s == -mp.inf:
                continue
            s += mp.log(hi - lo)
            pieces.append((s + log_wo, logs, lo, hi, s, log_wo))
    pieces.sort(key=lambda p: -p[0])
    total, err = mp.mpf(0), mp.mpf(0)
    cut = dps * mp.log(10) + 10
    for bound, logs, lo, hi, s, log_wo in pieces:
        if total and bound < mp.log(abs(total)) - cut:
            continue  # negligible at this precision

        def g(t, logs=logs, s=s):
            e, v = h(*logs(t))
            return mp.exp(e - s) * v

        v, e = mp.quad(g, [lo, hi], error=True, maxdegree=8)
        total += v * mp.exp(s + log_wo)
        err += abs(e) * mp.exp(s + log_wo)
    return total, (float(err / abs(total)) if total else 0.0)


def _mp_float(x) -> float:
    """An mpf as a float64, ``+-inf`` beyond the range."""
    try:
        return float(x)
    except OverflowError:  # pragma: no cover
        return math.copysign(_INF, float(x > 0) - 0.5)


# ---------------------------------------------------------------------------
# Closed forms (independent of quadrature)


def _g(x: float) -> float:
    """``expm1(x) - x`` without cancellation."""
    if abs(x) < 0.5:
        s, term = 0.0, x
        for n in range(2, 30):
            term *= x / n
            s += term
        return s
    return math.expm1(x) - x if x < 709.0 else _INF


def _h(y: float) -> float:
    """``y - log1p(y)`` without cancellation."""
    if abs(y) < 0.25:
        return math.fsum((-1) ** n * y**n / n for n in range(2, 32))
    return y - math.log1p(y)


def _log_ratio(num: float, den: float) -> float:
    """``log(num / den)``, accurate when the two are close."""
    r = num / den
    return math.log1p((num - den) / den) if 0.5 < r < 2 else math.log(num) - math.log(den)


def _gaussian_log_integral(b: float, m: float, s: float, mu: float, sigma: float) -> float:
    """``log int N(mu, sigma^2)^(1 - b) N(m, s^2)^b dx`` (``inf`` where divergent)."""
    fb = Fraction(b)
    v = (1 - fb) * Fraction(s) ** 2 + fb * Fraction(sigma) ** 2  # a s^2 + b sigma^2
    if v <= 0:
        return _INF
    a = 1.0 - b
    vf = float(v)
    t = _log_ratio(sigma, s)
    e = math.expm1(2.0 * t)
    if abs(t) < 0.5 and abs(b * e) < 0.5:  # q ~ p: 2bt - log(1 + bE) without cancellation
        var_part = 0.5 * (_h(b * e) - b * _g(2.0 * t))
    else:
        var_part = b * t - 0.5 * (math.log(vf) - 2.0 * math.log(s))
    return var_part - a * b * (mu - m) ** 2 / (2.0 * vf)


def gaussian_reference(name, loc_p, scale_p, loc, scale, alpha=None) -> Ref:
    """Closed form of ``name`` between ``p = N(loc_p, scale_p^2)`` and ``q = N(loc, scale^2)``.

    ``KL(q||p) = (g(2t) + d^2) / 2`` with ``t = log(sigma / s)``,
    ``d = (mu - m) / s``, ``g(x) = e^x - 1 - x``; ``KL(p||q)`` likewise with
    the roles swapped; ``log I(a) = [h(b E) - b g(2t)] / 2 - a b (mu - m)^2 / (2 V)``
    with ``E = e^{2t} - 1``, ``h(y) = y - log(1 + y)``, ``V = a s^2 + b sigma^2``
    (the Gaussian integral of ``q^a p^b``, finite iff ``V > 0``). Every piece is
    evaluated without cancellation, so tiny divergences keep their relative
    accuracy. Jensen-Shannon has no closed form (``ValueError``).
    """
    spec = _spec(name, alpha)
    m, s, mu, sigma = float(loc_p), float(scale_p), float(loc), float(scale)
    if spec.kind == "js":
        raise ValueError("jensen_shannon has no closed form")
    if spec.kind == "I":
        log_i = _gaussian_log_integral(spec.b, m, s, mu, sigma)
        if log_i == _INF:
            return _infinite_ref()
        return _finish(spec, log_i, math.expm1(log_i) if log_i < 709.0 else _INF, 0.0)
    t = _log_ratio(sigma, s)
    if spec.kind == "kl_r":
        x, d, log_d = (
            2.0 * t,
            (mu - m) / s,
            (math.log(abs(mu - m)) - math.log(s)) if mu != m else -_INF,
        )
    else:
        x, d, log_d = (
            -2.0 * t,
            (m - mu) / sigma,
            (math.log(abs(m - mu)) - math.log(sigma)) if mu != m else -_INF,
        )
    value = 0.5 * (_g(x) + d * d)
    if value < 1e300:
        return Ref(value, math.log1p(value), False)
    log_g = x + math.log1p(-(1.0 + x) * math.exp(-x)) if x > 1.0 else math.log(_g(x))
    return Ref(value, math.log(0.5) + _lse([log_g, 2.0 * log_d]), False)


def _log_gauss_product(terms) -> float:
    """``log int prod_l N(x; c_l, s_l^2)^{e_l} dx`` for ``terms = [(c_l, s_l, e_l)]``."""
    prec = sum(Fraction(e) / Fraction(s) ** 2 for _, s, e in terms)
    if prec <= 0:
        return _INF
    p = float(prec)
    ws = [(c, float(Fraction(e) / Fraction(s) ** 2)) for c, s, e in terms]
    cquad = (
        math.fsum(
            wi * wj * (ci - cj) ** 2
            for i, (ci, wi) in enumerate(ws)
            for (cj, wj) in ws[i + 1 :]
            if ci != cj
        )
        / p
    )
    norm = math.fsum(-e * (_HALF_LOG_2PI + math.log(s)) for _, s, e in terms)
    return norm + 0.5 * math.log(2.0 * math.pi / p) - 0.5 * cquad


def power_integral_closed_form(n: int, weights, locs, scales, loc, scale) -> float:
    """``log I(1 - n) = log int p^n q^(1 - n) dx`` for an integer ``n >= 2``, closed form.

    Expands ``p^n`` into ``K^n`` products ``prod_i pi_{k_i} N_{k_i}``; each
    ``int prod_i N_{k_i} / q^(n-1)`` is a Gaussian integral (finite iff
    ``sum_i 1 / s_{k_i}^2 > (n - 1) / sigma^2``). ``n = 2`` is ``chi2_forward``
    (``log(1 + chi2)``), ``n = 3`` ``renyi_forward`` at ``alpha = 3`` (times 2).
    """
    import itertools

    if int(n) != n or n < 2:
        raise ValueError("n must be an integer >= 2")
    w = np.asarray(weights, dtype=float)
    log_pi = np.log(w) - math.log(math.fsum(w.tolist()))
    comps = list(zip(np.asarray(locs, float).tolist(), np.asarray(scales, float).tolist()))
    q_term = (float(loc), float(scale), 1.0 - n)
    out = []
    for tup in itertools.product(range(len(comps)), repeat=int(n)):
        counts: dict[int, int] = {}
        for k in tup:
            counts[k] = counts.get(k, 0) + 1
        terms = [(comps[k][0], comps[k][1], float(c)) for k, c in counts.items()] + [q_term]
        li = _log_gauss_product(terms)
        if li == _INF:
            return _INF
        out.append(float(sum(log_pi[k] for k in tup)) + li)
    return _lse(out)


def chi2_forward_closed_form(weights, locs, scales, loc, scale) -> Ref:
    """``chi2(p || q) = sum_ij pi_i pi_j int N_i N_j / q - 1``, closed form (see above)."""
    log_i = power_integral_closed_form(2, weights, locs, scales, loc, scale)
    if log_i == _INF:
        return Ref(_INF, _INF, True, _INF)
    return Ref(math.expm1(log_i) if log_i < 709.0 else _INF, log_i, False, log_i)


# ---------------------------------------------------------------------------
# 2-D: a mixture with full covariances against q = N(mu, Sigma)

# 21-point Gauss-Kronrod rule (QUADPACK qk21): abscissae >= 0, Kronrod and Gauss weights.
_XGK = np.array(
    [
        0.995657163025808080735527280689003,
        0.973906528517171720077964012084452,
        0.930157491355708226001207180059508,
        0.865063366688984510732096688423493,
        0.780817726586416897063717578345042,
        0.679409568299024406234327365114874,
        0.562757134668604683339000099272694,
        0.433395394129247190799265943165784,
        0.294392862701460198131126603103866,
        0.148874338981631210884826001129720,
        0.0,
    ]
)
_WGK = np.array(
    [
        0.011694638867371874278064396062192,
        0.032558162307964727478818972459390,
        0.054755896574351996031381300244580,
        0.075039674810919952767043140916190,
        0.093125454583697605535065465083366,
        0.109387158802297641899210590325805,
        0.123491976262065851077958109831074,
        0.134709217311473325928054001771707,
        0.142775938577060080797094273138717,
        0.147739104901338491374841515972068,
        0.149445554002916905664936468389821,
    ]
)
_WG = np.array(
    [
        0.066671344308688137593568809893332,
        0.149451349150580593145776339657697,
        0.219086362515982043995534934228163,
        0.269266719309996355091226921569469,
        0.295524224714752870173892994651338,
    ]
)
_GK_X = np.concatenate([-_XGK[:-1], _XGK[::-1]])  # 21 nodes, ascending
_GK_W = np.concatenate([_WGK[:-1], _WGK[::-1]])
_G_W = np.zeros(21)
_G_W[1:10:2] = _WG
_G_W[11:20:2] = _WG[::-1]


def _gk_log_integral(
    logf, edges, epsrel: float = 1e-13, log_atol: float = -_INF, max_rounds: int = 40
):
    """``log int exp(logf(t)) dt`` over ``[edges[0], edges[-1]]``, adaptive GK21 in numpy.

    ``logf`` maps an array of points to log-integrand values. Every piece is
    scaled by its own largest node value, so the pieces may differ by any
    factor; pieces whose Kronrod-Gauss difference is above ``epsrel`` times
    the running total (or ``exp(log_atol)``) are bisected. Returns
    ``(log value, relative error)``.
    """
    lo = np.asarray(edges[:-1], dtype=float)
    hi = np.asarray(edges[1:], dtype=float)
    done_logs, done_errs = [], []
    for _ in range(max_rounds):
        half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
        nodes = mid[:, None] + half[:, None] * _GK_X
        lv = np.asarray(logf(nodes.ravel()), dtype=float).reshape(nodes.shape)
        lv = np.where(np.isnan(lv), -np.inf, lv)
        shift = lv.max(axis=1)
        live = np.isfinite(shift)
        if not live.any() and not done_logs:
            return -np.inf, 0.0
        shift = np.where(live, shift, 0.0)
        vals = np.exp(lv - shift[:, None])
        k = vals @ _GK_W * half
        g = vals @ _G_W * half
        # QUADPACK's error estimate (qk21): |K - G| scaled by the piece's variation
        resasc = np.abs(vals - (k / np.where(half > 0, 2 * half, 1))[:, None]) @ _GK_W * half
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(resasc > 0, 200.0 * np.abs(k - g) / resasc, 0.0)
        err = resasc * np.minimum(1.0, ratio**1.5)
        err = np.maximum(err, 50 * 2.2e-16 * np.abs(k))
        with np.errstate(divide="ignore"):
            log_k, log_e = np.log(k) + shift, np.log(err) + shift
        log_k = np.where(live, log_k, -np.inf)
        log_e = np.where(live, log_e, -np.inf)
        total = np.logaddexp.reduce(np.concatenate([log_k, done_logs])) if len(log_k) else -np.inf
        if total == -np.inf:
            return -np.inf, 0.0
        tol = np.logaddexp(np.log(epsrel) + total, log_atol) - np.log(max(len(lo), 1))
        bad = (log_e > tol) & (half > 1e-300 + 4e-16 * np.abs(mid))
        if bad.sum() > 4000:  # not converging: keep what there is
            bad[:] = False
        done_logs = np.concatenate([done_logs, log_k[~bad]])
        done_errs = np.concatenate([done_errs, log_e[~bad]])
        if not bad.any():
            break
        lo, hi, mid = lo[bad], hi[bad], mid[bad]
        lo, hi = np.concatenate([lo, mid]), np.concatenate([mid, hi])
    else:
        done_logs = np.concatenate([done_logs, log_k[bad]])
        done_errs = np.concatenate([done_errs, log_e[bad]])
    total = np.logaddexp.reduce(done_logs)
    err = np.logaddexp.reduce(done_errs) if len(done_errs) else -np.inf
    return float(total), float(np.exp(err - total))


def _horner_vec(coeffs, x):
    s = np.zeros_like(x)
    for c in coeffs:
        s = s * x + c
    return s * x * x


def _psi_vec(psi: _Psi, lq, lp, L, luq):
    """Vectorized `_Psi` (same branches): ``log |q psi(L)|``."""
    out = np.full(L.shape, -np.inf)
    ok = ~np.isnan(L) & ~((lp == -np.inf) & (lq == -np.inf))
    k = psi.kind
    with np.errstate(all="ignore"):
        big, small = ok & (L > 1.0), ok & (L < -1.0)
        mid = ok & ~big & ~small
        if k == "kl_r":
            out[big] = lp[big] + np.where(
                L[big] > 700.0, 0.0, np.log1p(-(1.0 + L[big]) * np.exp(-L[big]))
            )
            out[small] = lq[small] + np.log(-L[small] - 1.0 + np.exp(L[small]))
        elif k == "kl_f":
            huge = big & ((L > 1e300) | (luq > 230.0))
            norm = big & ~huge
            out[huge] = lp[huge] + 2.0 * luq[huge] - _LOG2
            out[norm] = lp[norm] + np.log(L[norm] - 1.0 + np.exp(-L[norm]))
            out[small] = lq[small] + np.where(
                L[small] > -745.0, np.log1p((L[small] - 1.0) * np.exp(L[small])), 0.0
            )
        elif k == "js":
            y = 0.5 * L
            hi_, lo_ = ok & (y > 2.0), ok & (y < -2.0)
            mid = ok & ~hi_ & ~lo_
            e = np.exp(-2.0 * np.abs(y))
            v = 0.5 * (1.0 + e) * (_LOG2 - np.log1p(e)) - np.abs(y) * e
            out[hi_] = lp[hi_] + np.log(v[hi_])
            out[lo_] = lq[lo_] + np.log(v[lo_])
            ym = y[mid]
            sh = np.sinh(0.5 * ym)
            g = ym * np.sinh(ym) - np.cosh(ym) * np.log1p(2.0 * sh * sh)
            out[mid] = np.where(g > 0, lq[mid] + ym + np.log(g), -np.inf)
            return out
        else:  # I(a) - 1
            a, b = psi.a, psi.b
            mid = ok & (np.abs(L) <= psi.cut)
            rest = ok & ~mid
            pos = rest & (L >= 0)
            neg = rest & (L < 0)
            for mask, base, ex in (
                (
                    pos,
                    lp,
                    ((b - 1.0) * L, -L + math.log(abs(a)), np.full(L.shape, math.log(abs(b)))),
                ),
                (neg, lq, (b * L, np.full(L.shape, math.log(abs(a))), L + math.log(abs(b)))),
            ):
                e0, e1, e2 = (x[mask] for x in ex)
                m = np.maximum(np.maximum(e0, e1), e2)
                tot = psi.sign * (
                    np.exp(e0 - m)
                    - math.copysign(1, a) * np.exp(e1 - m)
                    - math.copysign(1, b) * np.exp(e2 - m)
                )
                out[mask] = np.where(tot > 0, base[mask] + m + np.log(tot), -np.inf)
            s = psi.sign * _horner_vec(psi.coeffs, L[mid])
            out[mid] = np.where(s > 0, lq[mid] + np.log(s), -np.inf)
            return out
        s = _horner_vec(psi.coeffs, L[mid])
        out[mid] = np.where(s > 0, lq[mid] + np.log(s), -np.inf)
    return out


def _spd(a, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if (
        a.shape != (2, 2)
        or not np.all(np.isfinite(a))
        or abs(a[0, 1] - a[1, 0]) > 1e-12 * abs(a).max()
    ):
        raise ValueError(f"{what} must be a finite symmetric 2x2 matrix")
    a = 0.5 * (a + a.T)
    if not (a[0, 0] > 0 and a[0, 0] * a[1, 1] - a[0, 1] ** 2 > 0):
        raise ValueError(f"{what} must be positive definite")
    return a


def _logdet_ratio(s: np.ndarray, sigma: np.ndarray) -> float:
    """``log det(S) - log det(Sigma)``, accurate when ``S ~ Sigma``."""
    m = np.linalg.solve(sigma, s - sigma)  # Sigma^-1 (S - Sigma): det(I + M) = 1 + tr M + det M
    x = np.trace(m) + np.linalg.det(m)
    if abs(x) < 0.5:
        return math.log1p(x)
    return float(np.linalg.slogdet(s)[1] - np.linalg.slogdet(sigma)[1])


class _Target2:
    """The mixture in q's standardized variable ``z = L^-1 (x - mu)``, ``Sigma = L L^T``."""

    def __init__(self, weights, locs, covs, loc, cov):
        w = np.atleast_1d(np.asarray(weights, dtype=float))
        m = np.asarray(locs, dtype=float).reshape(-1, 2)
        s = np.asarray(covs, dtype=float).reshape(-1, 2, 2)
        if not (len(w) == len(m) == len(s)) or not np.all(w > 0) or not np.all(np.isfinite(m)):
            raise ValueError("weights (K,), locs (K, 2) and covs (K, 2, 2) must match; weights > 0")
        sig = _spd(cov, "cov")
        mu = np.asarray(loc, dtype=float).reshape(2)
        chol = np.linalg.cholesky(sig)
        self.K = len(w)
        total = math.fsum(w.tolist())
        self.log_pi = np.array(
            [
                -math.log1p((total - wk) / wk) if total - wk < wk else math.log(wk / total)
                for wk in w
            ]
        )
        self.pi = w / total
        self.c, self.P, self.C, self.D, self.ldc = [], [], [], [], []
        for mk, sk in zip(m, s):
            sk = _spd(sk, "covs[k]")
            ck = np.linalg.solve(chol, mk - mu)
            ck_cov = np.linalg.solve(chol, np.linalg.solve(chol, sk).T)  # L^-1 S L^-T
            ck_cov = 0.5 * (ck_cov + ck_cov.T)
            pk = chol.T @ np.linalg.solve(sk, chol)  # L^T S^-1 L
            pk = 0.5 * (pk + pk.T)
            dk = chol.T @ np.linalg.solve(sk, (sk - sig) @ np.linalg.inv(chol).T)  # I - P, exactly
            dk = 0.5 * (dk + dk.T)
            self.c.append(ck)
            self.C.append(ck_cov)
            self.P.append(pk)
            self.D.append(dk)
            self.ldc.append(_logdet_ratio(sk, sig))

    def logs(self, z1: float, z2):
        """``(log q, log p, L, log|z|)`` on the line ``z = (z1, z2)`` (arrays over ``z2``)."""
        z2 = np.asarray(z2, dtype=float)
        r2 = z1 * z1 + z2 * z2
        lq = -0.5 * r2 - math.log(2.0 * math.pi)
        lps, ls = [], []
        for lpi, c, p, d, ldc in zip(self.log_pi, self.c, self.P, self.D, self.ldc):
            e1, e2 = z1 - c[0], z2 - c[1]
            quad_k = p[0, 0] * e1 * e1 + 2.0 * p[0, 1] * e1 * e2 + p[1, 1] * e2 * e2
            lps.append(lpi - 0.5 * quad_k - 0.5 * ldc - math.log(2.0 * math.pi))
            # log(N_k / q): via D = I - P (exact when q ~ N_k) or plainly, whichever is safer
            pc = p @ c
            ccp = float(c @ pc)
            lin = pc[0] * z1 + pc[1] * z2
            quad_d = d[0, 0] * z1 * z1 + 2.0 * d[0, 1] * z1 * z2 + d[1, 1] * z2 * z2
            via_d = 0.5 * quad_d + lin - 0.5 * ccp
            scale_d = np.abs(0.5 * quad_d) + np.abs(lin) + 0.5 * abs(ccp)
            plain = 0.5 * (r2 - quad_k)
            scale_p = 0.5 * (r2 + quad_k)
            ls.append(-0.5 * ldc + np.where(scale_d < scale_p, via_d, plain))
        lp = np.logaddexp.reduce(np.array(lps), axis=0)
        ls = np.array(ls)
        L = np.logaddexp.reduce(ls + self.log_pi[:, None], axis=0)
        near = np.max(np.abs(ls), axis=0) < 0.5  # every N_k ~ q: log1p(sum_k pi_k expm1(L_k))
        if near.any():
            L[near] = np.log1p(np.sum(self.pi[:, None] * np.expm1(ls[:, near]), axis=0))
        with np.errstate(divide="ignore"):
            luq = 0.5 * np.log(r2)
        return lq, lp, L, luq

    def features(self, b: float | None):
        """``[(centre (2,), cov (2, 2))]``: q, the components and the bounds ``q^a N_k^b``."""
        out = [(np.zeros(2), np.eye(2))]
        out += [(c, cv) for c, cv in zip(self.c, self.C)]
        if b is not None:
            a = 1.0 - b
            for c, p in zip(self.c, self.P):
                prec = a * np.eye(2) + b * p
                if prec[0, 0] > 0 and np.linalg.det(prec) > 0:
                    cov = np.linalg.inv(prec)
                    out.append((cov @ (b * p @ c), 0.5 * (cov + cov.T)))
        return out


def _peak_2d(logf, centre, cov):
    """Refine a feature into a local maximum of ``logf`` and its local covariance."""
    for _ in range(6):
        try:
            ch = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            return None

        def neg(y, ch=ch, c0=centre):
            v = logf(c0 + ch @ y)
            return -v if np.isfinite(v) else 1e300

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = optimize.minimize(
                neg,
                np.zeros(2),
                method="Nelder-Mead",
                options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 2000},
            )
        y = res.x
        v0 = -neg(y)
        if not np.isfinite(v0) or v0 <= -1e299:
            return None
        h = 0.1
        hess = np.zeros((2, 2))
        for i in range(2):
            for j in range(2):
                ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
                hess[i, j] = (
                    -neg(y + ei + ej) + neg(y + ei - ej) + neg(y - ei + ej) - neg(y - ei - ej)
                ) / (4 * h * h)
        hess = 0.5 * (hess + hess.T)
        peak = centre + ch @ y
        try:
            local = np.linalg.inv(-hess)
            np.linalg.cholesky(local)
        except np.linalg.LinAlgError:
            return peak, cov, v0
        new_cov = ch @ local @ ch.T
        new_cov = 0.5 * (new_cov + new_cov.T)
        if np.linalg.det(local) > 1.0 / 64.0 or not np.all(np.isfinite(new_cov)):
            return peak, new_cov if np.linalg.det(local) < 64 else cov, v0
        centre, cov = peak, new_cov
    return centre, cov, v0


def _dedupe_2d(feats):
    """Drop features within a quarter width of an earlier one of about the same shape."""
    kept = []
    for c, cv in feats:
        dup = False
        for c2, cv2 in kept:
            try:
                d = c - c2
                ev = np.linalg.eigvals(np.linalg.solve(cv2, cv)).real
                if (
                    float(d @ np.linalg.solve(cv2, d)) < 0.0625
                    and ev.min() > 0.5
                    and ev.max() < 2.0
                ):
                    dup = True
                    break
            except np.linalg.LinAlgError:
                continue
        if not dup:
            kept.append((c, cv))
    return kept


def reference_2d(name, weights, locs, covs, loc, cov, alpha=None) -> Ref:
    """``name`` between a 2-D Gaussian mixture (full covariances) and ``N(loc, cov)``.

    Args:
      name: one of `NAMES` (the brief's four: kl_forward, kl_reverse,
        chi2_forward, chi2_reverse; the others come for free).
      weights (K,), locs (K, 2), covs (K, 2, 2): the mixture.
      loc (2,), cov (2, 2): q.

    Nested quadrature in ``q``'s standardized variable ``z = L^-1 (x - mu)``
    (every f-divergence is invariant under this map): outer ``scipy quad``
    over ``z1`` with break points from the marginals of every feature
    (``q``, the components, the bounds ``q^a N_k^b``, numerically refined
    peaks with their local covariance), inner vectorized adaptive GK21 over
    ``z2`` with break points from the conditionals; log-space per piece.
    Integrands as in `reference` (``psi`` forms; ``log p - log q`` per
    component via ``D = I - L^T S^-1 L`` formed from ``S - Sigma``). Limits:
    one frame only, so a component far from ``q`` (``|z| ~ R``) is resolved
    to ``eps R`` in ``z``; no dominance-crossing break points (the adaptive
    rules find the near-kinks); ``I`` close to divergence loses accuracy
    like the float inputs' condition number. Slow: ~1-10 s.
    """
    spec = _spec(name, alpha)
    tg = _Target2(weights, locs, covs, loc, cov)
    if spec.kind == "I":
        if _i_infinite_2d(spec.b, tg):
            return _infinite_ref()
        log_i, rel = _solve_2d(tg, spec, direct=True)
        i_m1 = math.expm1(log_i) if log_i < 709.0 else _INF
        if abs(log_i) < 1.0:
            psi = _Psi(spec)
            log_m, rel = _solve_2d(tg, spec, direct=False)
            i_m1 = psi.sign * math.exp(log_m)
            log_i = math.log1p(i_m1)
        return _finish(spec, log_i, i_m1, rel)
    log_v, rel = _solve_2d(tg, spec, direct=False)
    value = math.exp(log_v) if log_v < 709.0 else _INF
    lp1 = math.log1p(value) if log_v < 36.0 else log_v + math.log1p(math.exp(-log_v))
    return Ref(value, lp1, False, math.nan, rel)


def _tail_rate_2d(b: float, tg: _Target2) -> float:
    """The slowest Gaussian decay rate of ``q^a p^b`` over directions (``<= 0``: divergent).

    Along a unit direction ``v`` the log-integrand falls like
    ``-(a + b g(v)) t^2 / 2`` with ``g(v) = min_k v^T P_k v`` (the component
    widest along ``v`` dominates p's tail): the rate is ``min_v (a + b g(v))``,
    found on a fine grid of angles then polished.
    """
    a = 1.0 - b

    def rate(th):
        v = np.array([math.cos(th), math.sin(th)])
        return a + b * min(float(v @ p @ v) for p in tg.P)

    ths = np.linspace(0.0, math.pi, 721)
    vals = [rate(t) for t in ths]
    i = int(np.argmin(vals))
    lo, hi = ths[max(i - 1, 0)], ths[min(i + 1, len(ths) - 1)]
    t = optimize.fminbound(rate, lo, hi, xtol=1e-12)
    return min(vals[i], rate(t))


def _i_infinite_2d(b: float, tg: _Target2) -> bool:
    """Whether ``I(a)`` diverges: for ``b > 0`` iff some ``a I + b P_k`` is not positive
    definite (exact test on the rounded matrices); for ``b < 0`` iff the tail rate is ``<= 0``."""
    a = 1.0 - b
    if b > 0:
        for p in tg.P:
            prec = a * np.eye(2) + b * p
            if not (prec[0, 0] > 0 and prec[0, 0] * prec[1, 1] - prec[0, 1] ** 2 > 0):
                return True
        return False
    return _tail_rate_2d(b, tg) <= 0


def _solve_2d(tg: _Target2, spec: _Spec, direct: bool):
    psi = _Psi(spec) if not direct else None
    b = spec.b if spec.kind == "I" else None

    def logf_lines(z1, z2):
        lq, lp, L, luq = tg.logs(z1, z2)
        if direct:
            return (1.0 - b) * lq + b * lp
        return _psi_vec(psi, lq, lp, L, luq)

    def logf_point(z):
        return float(logf_lines(float(z[0]), np.array([z[1]]))[0])

    feats = tg.features(b)
    peaks = []
    for c, cv in feats:
        r = _peak_2d(logf_point, c, cv)
        if r is not None:
            peaks.append(r)
    if not peaks:
        return -_INF, 0.0
    z0 = max(peaks, key=lambda r: r[2])[0]
    c_total = 0.0
    if direct:  # the huge constant is kept out of the integrand (see `_direct_rel`)
        c_total, logf_lines = _direct_2d(tg, b, z0)
        peaks = [(c, cv, v - c_total) for c, cv, v in peaks]
    allf = _dedupe_2d(feats + [(c, cv) for c, cv, _ in peaks])
    if b is not None and b < 0:  # the tails decay at the slowest directional rate
        allf.append((z0, np.eye(2) / _tail_rate_2d(b, tg)))
    # a Laplace estimate of the total sets absolute tolerances (far pieces cost nothing)
    log_g = max(v + 0.5 * math.log(np.linalg.det(2.0 * math.pi * cv)) for _, cv, v in peaks)
    reach = _REACH
    outer = _points_1d([(c[0], math.sqrt(cv[0, 0])) for c, cv in allf], -_INF, _INF, reach)
    log_atol_inner = log_g + math.log(1e-17) - math.log(outer[-1] - outer[0])

    def inner_log(z1):
        fl = []
        for c, cv in allf:
            w1 = math.sqrt(cv[0, 0])
            if abs(z1 - c[0]) > reach * w1:
                continue
            cond_c = c[1] + cv[0, 1] / cv[0, 0] * (z1 - c[0])
            cond_w = math.sqrt(max(cv[1, 1] - cv[0, 1] ** 2 / cv[0, 0], 1e-300))
            fl.append((cond_c, cond_w))
        edges = _points_1d(fl, -_INF, _INF, reach)
        if edges is None:
            return -_INF
        return _gk_log_integral(lambda z2: logf_lines(z1, z2), edges, 1e-13, log_atol_inner)[0]

    logs, errs = [], []
    for lo, hi in zip(outer[:-1], outer[1:]):
        samples = [inner_log(lo + (hi - lo) * u) for u in (0.0, 0.25, 0.5, 0.75, 1.0)]
        shift = max(samples)
        if shift == -_INF or shift + math.log(hi - lo) < log_g - 300.0:
            continue  # negligible (the samples are dense at this grading)
        tol = 1e-17 * math.exp(min(log_g - shift, 700.0))
        val, err, shift = _quad_piece(inner_log, lo, hi, shift, tol, 50, _EPSREL_2D)
        if val > 0:
            logs.append(shift + math.log(val))
        if err > 0:
            errs.append(shift + math.log(err))
    if not logs:
        return -_INF, 0.0
    total = _lse(logs)
    return c_total + total, (math.exp(_lse(errs) - total) if errs else 0.0)


def _quad_form_2d(pmat, h, const):
    """``-z^T P z / 2 + h.z + const`` as ``(0, P, z*, v)`` (vertex form, when ``P`` is
    invertible and the vertex representable) or ``(1, P, h, const)``."""
    det = pmat[0, 0] * pmat[1, 1] - pmat[0, 1] * pmat[1, 0]
    if det != 0:
        zs = np.linalg.solve(pmat, h)
        if np.all(np.abs(zs) < 1e150):
            return 0, pmat, zs, const + 0.5 * float(h @ zs)
    return 1, pmat, h, const


def _eval_form_2d(form, z1, z2):
    kind, p, v, c = form
    if kind == 0:
        d1, d2 = z1 - v[0], z2 - v[1]
        return c - 0.5 * (p[0, 0] * d1 * d1 + 2.0 * p[0, 1] * d1 * d2 + p[1, 1] * d2 * d2)
    return (
        c
        - 0.5 * (p[0, 0] * z1 * z1 + 2.0 * p[0, 1] * z1 * z2 + p[1, 1] * z2 * z2)
        + v[0] * z1
        + v[1] * z2
    )


def _direct_2d(tg: _Target2, b: float, z0: np.ndarray):
    """``(C, rel)``: ``a log q + b log p = C + rel(z1, z2)`` on lines, in vertex forms.

    ``a log q + b log(pi_k N_k)`` and ``log(pi_j N_j) - log(pi_k N_k)`` are
    quadratics in ``z``, evaluated around their vertices, so the shape near
    the peak has no cancellation when ``q`` is far out; the constant is the
    value at ``z0``.
    """
    a = 1.0 - b
    log2pi = math.log(2.0 * math.pi)
    xk = []  # log(pi_k N_k) = -z^T P z / 2 + (P c).z + const
    for lpi, c, p, ldc in zip(tg.log_pi, tg.c, tg.P, tg.ldc):
        pc = p @ c
        xk.append((p, pc, lpi - 0.5 * ldc - log2pi - 0.5 * float(c @ pc)))
    heads = [
        _quad_form_2d(a * np.eye(2) + b * p, b * pc, -a * log2pi + b * cst) for p, pc, cst in xk
    ]
    pairs = {
        (j, k): _quad_form_2d(xk[j][0] - xk[k][0], xk[j][1] - xk[k][1], xk[j][2] - xk[k][2])
        for j in range(tg.K)
        for k in range(tg.K)
        if j != k
    }
    K = tg.K

    def raw(z1, z2):
        z2 = np.atleast_1d(np.asarray(z2, dtype=float))
        best = np.zeros(z2.shape, dtype=int)
        for k in range(1, K):
            y = np.stack(
                [
                    _eval_form_2d(pairs[k, j], z1, z2) if j != k else np.zeros_like(z2)
                    for j in range(K)
                ]
            )
            take = np.take_along_axis(y, best[None], axis=0)[0] > 0.0
            best = np.where(take, k, best)
        out = np.full(z2.shape, -np.inf)
        for k in range(K):
            sel = best == k
            if not sel.any():
                continue
            zz = z2[sel]
            x = _eval_form_2d(heads[k], z1, zz)
            s = np.zeros_like(zz)
            for j in range(K):
                if j != k:
                    with np.errstate(over="ignore", invalid="ignore"):
                        s += np.exp(np.minimum(_eval_form_2d(pairs[j, k], z1, zz), 700.0))
            out[sel] = x + b * np.log1p(s)
        return np.where(np.isnan(out), -np.inf, out)

    c0 = float(raw(float(z0[0]), np.array([z0[1]]))[0])
    heads[:] = [(h[0], h[1], h[2], h[3] - c0) for h in heads]
    return c0, raw


def _eig2(m: np.ndarray):
    """Eigenvalues of a real 2x2 matrix similar to a symmetric one, without cancellation."""
    tr, det = float(np.trace(m)), float(np.linalg.det(m))
    half = 0.5 * tr
    disc = math.sqrt(max(half * half - det, 0.0))
    big = half + math.copysign(disc, half) if half else disc
    small = det / big if big else -disc
    return big, small


def gaussian_reference_2d(name, loc_p, cov_p, loc, cov, alpha=None) -> Ref:
    """Closed form of ``name`` between ``p = N(loc_p, cov_p)`` and ``q = N(loc, cov)`` in 2-D.

    With ``lambda_i`` the eigenvalues of ``S^-1 (Sigma - S)`` (``S = cov_p``):
    ``KL(q||p) = [sum_i h(lambda_i) + d^T S^-1 d] / 2`` (``h(y) = y - log(1 + y)``);
    ``KL(p||q)`` likewise with the roles swapped; with ``nu_i`` those of
    ``Sigma^-1 (S - Sigma)``: ``log I(a) = sum_i [h(a nu_i) - a h(nu_i)] / 2 -
    a b d^T (a S + b Sigma)^-1 d / 2``, finite iff ``1 + a nu_i > 0``.
    """
    spec = _spec(name, alpha)
    m, s = np.asarray(loc_p, float), _spd(cov_p, "cov_p")
    mu, sig = np.asarray(loc, float), _spd(cov, "cov")
    d = mu - m
    if spec.kind == "js":
        raise ValueError("jensen_shannon has no closed form")
    if spec.kind == "I":
        b = spec.b
        a = 1.0 - b
        v = a * s + b * sig
        nus, mus = _eig_pair(sig, s)  # eigenvalues of Sigma^-1 (S - Sigma) and Sigma^-1 S
        terms = []
        for nu, mu_ in zip(nus, mus):
            one_plus = a * mu_ + b  # 1 + a nu
            if not one_plus > 0:
                return _infinite_ref()
            if abs(nu) < 0.5 and abs(a * nu) < 0.5:
                terms.append(_h(a * nu) - a * _h(nu))
            else:  # h(a nu) - a h(nu) = a log(mu) - log(1 + a nu)
                terms.append(a * math.log(mu_) - math.log(one_plus))
        log_i = 0.5 * sum(terms) - 0.5 * a * b * float(d @ np.linalg.solve(v, d))
        return _finish(spec, log_i, math.expm1(log_i) if log_i < 709.0 else _INF, 0.0)
    if spec.kind == "kl_r":
        (lams, mus), maha = _eig_pair(s, sig), float(d @ np.linalg.solve(s, d))
    else:
        (lams, mus), maha = _eig_pair(sig, s), float(d @ np.linalg.solve(sig, d))
    # h(lambda) = lambda - log(1 + lambda), with 1 + lambda = mu (eigenvalues of A^-1 B)
    value = 0.5 * (
        sum(_h(x) if abs(x) < 0.5 else (y - 1.0) - math.log(y) for x, y in zip(lams, mus)) + maha
    )
    return Ref(value, math.log1p(value), False)


def _eig_pair(a: np.ndarray, b: np.ndarray):
    """Eigenvalues of ``A^-1 (B - A)`` and of ``A^-1 B`` (same order; each accurate)."""
    lam = sorted(_eig2(np.linalg.solve(a, b - a)))
    mu = sorted(_eig2(np.linalg.solve(a, b)))
    return lam, mu


def _frac_inv2(m):
    (a, b), (c, d) = m
    det = a * d - b * c
    return [[d / det, -b / det], [-c / det, a / det]], det


def chi2_forward_closed_form_2d(weights, locs, covs, loc, cov) -> Ref:
    """``chi2(p || q)`` for a 2-D mixture: ``sum_ij pi_i pi_j int N_i N_j / q - 1``.

    Each Gaussian integral is formed in exact rational arithmetic from the
    float inputs (precision ``P = S_i^-1 + S_j^-1 - Sigma^-1``, its
    completed square), rounded once; finite iff every such ``P`` is positive definite.
    """
    w = np.asarray(weights, float)
    log_pi = np.log(w) - math.log(math.fsum(w.tolist()))
    fr = Fraction
    ms = [[fr(float(v)) for v in mk] for mk in np.asarray(locs, float).reshape(-1, 2)]
    ss = [
        [[fr(float(v)) for v in row] for row in sk]
        for sk in np.asarray(covs, float).reshape(-1, 2, 2)
    ]
    mu = [fr(float(v)) for v in np.asarray(loc, float)]
    sig = [[fr(float(v)) for v in row] for row in np.asarray(cov, float)]
    inv = [_frac_inv2(s) for s in ss]
    sig_inv, sig_det = _frac_inv2(sig)
    log2pi = math.log(2.0 * math.pi)
    out = []
    for i in range(len(ms)):
        for j in range(len(ms)):
            terms = [(ms[i], inv[i], 1), (ms[j], inv[j], 1), (mu, (sig_inv, sig_det), -1)]
            prec = [
                [sum(e * vi[0][r][c] for _, vi, e in terms) for c in range(2)] for r in range(2)
            ]
            p_det = prec[0][0] * prec[1][1] - prec[0][1] * prec[1][0]
            if not (prec[0][0] > 0 and p_det > 0):
                return Ref(_INF, _INF, True, _INF)
            h = [
                sum(e * (vi[0][r][0] * c[0] + vi[0][r][1] * c[1]) for c, vi, e in terms)
                for r in range(2)
            ]
            kq = sum(
                e * sum(c[r] * (vi[0][r][0] * c[0] + vi[0][r][1] * c[1]) for r in range(2))
                for c, vi, e in terms
            )
            p_inv, _ = _frac_inv2(prec)
            hph = sum(h[r] * (p_inv[r][0] * h[0] + p_inv[r][1] * h[1]) for r in range(2))
            # int prod N^e = prod (2 pi)^{-e} |V|^{-e/2} * 2 pi |P|^{-1/2} exp(-(k - h P^-1 h) / 2)
            log_norm = sum(-e * log2pi - 0.5 * e * math.log(vi[1]) for _, vi, e in terms)
            out.append(
                log_pi[i]
                + log_pi[j]
                + log_norm
                + log2pi
                - 0.5 * math.log(p_det)
                - 0.5 * float(kq - hph)
            )
    log_i = _lse(out)
    return Ref(math.expm1(log_i) if log_i < 709.0 else _INF, log_i, False, log_i)
