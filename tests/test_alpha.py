"""Alpha-divergences: exact values vs scipy, limits, infinite regions, gradients, estimators."""

import functools
import math
import warnings

import jax
import numpy as np
import pytest
from scipy import integrate, stats

import divjax as dj
from divjax import alpha as A

_value = jax.jit(A.alpha_divergence, static_argnums=(0, 1))
_grad = jax.jit(A.alpha_grad, static_argnums=(0, 1))

P = dict(weights=[0.3, 0.7], locs=[-2.0, 3.0], scales=[0.5, 1.0])
KEY = jax.random.key(7)


def _p():
    return dj.GaussianMixture(**P)


def _ref(kind, alpha, loc, scale):
    """scipy.quad in float64 on numpy densities (independent of divjax)."""
    w = np.asarray(P["weights"]) / np.sum(P["weights"])
    m, s = np.asarray(P["locs"]), np.asarray(P["scales"])

    def lp(x):
        return np.logaddexp.reduce(np.log(w) + stats.norm.logpdf(x, m, s))

    def lq(x):
        return stats.norm.logpdf(x, loc, scale)

    def integral(f, a=None):
        pts = list(m) + [loc, 0.0, 1.0]
        lo, hi = min(pts) - 60 * max(scale, 1.0), max(pts) + 60 * max(scale, 1.0)
        if a is not None:  # centres and widths of q^a N_k^(1-a), where they exist
            lam = a / scale**2 + (1 - a) / s**2
            for lk, mk, sk in zip(lam, m, s):
                if lk > 0:
                    ck = (a * loc / scale**2 + (1 - a) * mk / sk**2) / lk
                    pts.append(ck)
                    lo, hi = min(lo, ck - 60 / np.sqrt(lk)), max(hi, ck + 60 / np.sqrt(lk))
        edges = [lo] + sorted(x for x in set(pts) if lo < x < hi) + [hi]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sum(
                integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=500)[0]
                for a, b in zip(edges[:-1], edges[1:])
            )

    if kind == "jensen_shannon":

        def f(x):
            a, b = lp(x), lq(x)
            mm = np.logaddexp(a, b) - np.log(2)
            return 0.5 * (np.exp(a) * (a - mm) + np.exp(b) * (b - mm))

        return integral(f)
    a = {
        "renyi_reverse": alpha,
        "renyi_forward": 1 - (alpha or 0),
        "amari": 1 - (alpha or 0),
        "hellinger": 0.5,
    }[kind]
    i = integral(lambda x: np.exp(a * lq(x) + (1 - a) * lp(x)), a)
    if kind.startswith("renyi"):
        return np.log(i) / (alpha - 1)
    if kind == "hellinger":
        return 1 - i
    return (1 - i) / (alpha * (1 - alpha))


CASES = [
    ("renyi_reverse", 0.5),
    ("renyi_reverse", 1.5),
    ("renyi_reverse", 3.0),
    ("renyi_forward", 0.5),
    ("renyi_forward", 2.5),
    ("amari", -0.5),
    ("amari", 0.3),
    ("amari", 1.7),
    ("hellinger", None),
    ("jensen_shannon", None),
]
QS = [(1.0, 1.2), (-2.0, 0.6), (6.0, 0.9)]


@pytest.mark.parametrize("kind,alpha", CASES)
def test_values_vs_scipy(x64, kind, alpha):
    p = _p()
    for loc, scale in QS:
        q = dj.Gaussian.from_loc_scale(loc, scale)
        ref = _ref(kind, alpha, loc, scale)
        value = float(_value(kind, alpha, p, q))
        if np.isinf(ref):
            assert value == np.inf
            continue
        assert abs(value - ref) <= 1e-7 * max(abs(ref), 1e-3), (kind, alpha, loc, value, ref)


def test_limits_match_kl_and_chi2(x64):
    p = _p()
    q = dj.Gaussian.from_loc_scale(1.0, 1.2)
    kl_f, kl_r = (float(dj.divergence(n, p, q)) for n in ("kl_forward", "kl_reverse"))
    c_f, c_r = (float(dj.divergence(n, p, q)) for n in ("chi2_forward", "chi2_reverse"))
    eps = 1e-6
    for sign in (-1, 1):
        a1 = 1 + sign * eps
        np.testing.assert_allclose(_value("renyi_reverse", a1, p, q), kl_r, rtol=1e-5)
        np.testing.assert_allclose(_value("renyi_forward", a1, p, q), kl_f, rtol=1e-5)
        np.testing.assert_allclose(_value("amari", a1, p, q), kl_f, rtol=1e-5)
        np.testing.assert_allclose(_value("amari", abs(sign) * eps, p, q), kl_r, rtol=1e-5)
    np.testing.assert_allclose(_value("renyi_reverse", 2.0, p, q), np.log1p(c_r), rtol=1e-10)
    np.testing.assert_allclose(_value("renyi_forward", 2.0, p, q), np.log1p(c_f), rtol=1e-10)
    np.testing.assert_allclose(_value("amari", 2.0, p, q), c_f / 2, rtol=1e-10)
    np.testing.assert_allclose(_value("amari", -1.0, p, q), c_r / 2, rtol=1e-10)
    np.testing.assert_allclose(
        _value("hellinger", None, p, q), _value("amari", 0.5, p, q) / 4, rtol=1e-12
    )
    # The exact orders dispatch to the KLs.
    assert float(_value("renyi_reverse", 1, p, q)) == kl_r
    assert float(_value("amari", 0, p, q)) == kl_r
    # Gradients at alpha = 2 are chi-square gradients rescaled.
    g = _grad("amari", 2.0, p, q)
    g_ref = dj.autodiff_grad("chi2_forward", p, q)
    np.testing.assert_allclose(
        [g.loc, g.log_scale], [g_ref.loc / 2, g_ref.log_scale / 2], rtol=1e-8
    )


@pytest.mark.parametrize(
    "kind,alpha,scale,infinite",
    [
        # a = alpha > 1: infinite iff sigma^2 >= a s^2 / (a - 1) = 1.5 (s = 1).
        ("renyi_reverse", 3.0, 1.2, False),
        ("renyi_reverse", 3.0, 1.25, True),
        # renyi_forward alpha = 3 -> a = -2: infinite iff sigma^2 <= 2/3.
        ("renyi_forward", 3.0, 0.85, False),
        ("renyi_forward", 3.0, 0.81, True),
        # amari alpha = -1 -> a = 2: chi2_reverse's sigma^2 >= 2.
        ("amari", -1.0, 1.41, False),
        ("amari", -1.0, 1.42, True),
        ("renyi_reverse", 0.5, 30.0, False),
        ("hellinger", None, 0.01, False),
    ],
)
def test_infinite_regions(x64, kind, alpha, scale, infinite):
    p = _p()
    q = dj.Gaussian.from_loc_scale(0.5, scale)
    value = float(_value(kind, alpha, p, q))
    g = _grad(kind, alpha, p, q)
    if infinite:
        assert value == np.inf
        assert all(np.isposinf(np.asarray(v)) for v in g)
    else:
        assert np.isfinite(value) and value > 0
        assert all(np.isfinite(np.asarray(v)) for v in g)
        if kind.startswith("renyi") or kind == "amari":
            assert value == pytest.approx(_ref(kind, alpha, 0.5, scale), rel=1e-6)


@pytest.mark.parametrize("kind,alpha", CASES)
def test_grad_vs_finite_differences(x64, kind, alpha):
    p = _p()
    theta = np.array([1.0, np.log(1.2)])
    g = _grad(kind, alpha, p, dj.Gaussian(*theta))

    def f(t):
        return float(_value(kind, alpha, p, dj.Gaussian(*t)))

    h = 1e-5
    fd = [(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose([g.loc, g.log_scale], fd, rtol=1e-6, atol=1e-8)


# --- Monte Carlo estimators: |mean - exact| < 5 SE -----------------------------

EST_CASES = [
    ("renyi_reverse", 0.5, "sn"),
    ("renyi_reverse", 0.5, "reparam"),
    ("renyi_reverse", 1.0, "sn"),
    ("renyi_reverse", 2.0, "reparam"),
    ("renyi_forward", 0.5, "sn"),
    ("renyi_forward", 2.0, "sn"),
    ("renyi_forward", 0.5, "reparam"),
    ("amari", 0.5, "score"),
    ("amari", 0.0, "score"),
    ("amari", 0.5, "reparam"),
    ("amari", 1.5, "score"),
    ("hellinger", None, "score"),
    ("hellinger", None, "reparam"),
    ("jensen_shannon", None, "score"),
    ("jensen_shannon", None, "reparam"),
]


# Unbiased estimators: many small batches. Consistent ones (Renyi, bias O(1/K)):
# fewer, larger batches, so that the bias is well under the 5 SE tolerance.
def _reps_k(kind):
    return (64, 4096) if kind.startswith("renyi") else (300, 64)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _draws(kind, alpha, est, p, q):
    reps, k = _reps_k(kind)
    f = A.alpha_surrogate(kind, alpha, est, p, k)
    keys = jax.random.split(KEY, reps)
    return jax.vmap(lambda k: jax.grad(f, has_aux=True)(q, k)[0])(keys)


@pytest.mark.parametrize("kind,alpha,est", EST_CASES)
def test_estimators_unbiased_or_consistent(x64, kind, alpha, est):
    p = _p()
    # sigma^2 = 1.21 in (3/4, 3/2) s^2: every estimator here has finite variance.
    # At alpha = 2 the weights' higher moments still blow up there and the O(1/K)
    # bias sets in late, so those use a q whose weights are light-tailed.
    scale = 1.1 if alpha != 2.0 else (0.8 if kind == "renyi_reverse" else 2.0)
    q = dj.Gaussian.from_loc_scale(1.0, scale)
    exact = _grad(kind, alpha, p, q)
    draws = _draws(kind, alpha, est, p, q)
    for d, e in zip(draws, exact):
        d = np.asarray(d)
        se = d.std(ddof=1) / math.sqrt(len(d))
        assert abs(d.mean() - float(e)) < 5 * se, (kind, alpha, est, d.mean(), float(e), se)


def test_estimator_limits_coincide_with_existing(x64):
    """alpha = 2 renyi_forward sn is snis2; alpha = 1 renyi_reverse reparam is reparam."""
    p, q = _p(), dj.Gaussian.from_loc_scale(1.5, 1.3)
    pairs = [
        (
            A.alpha_surrogate("renyi_forward", 2.0, "sn", p, 32),
            dj.surrogate("chi2_forward", "snis2", p, 32),
        ),
        (
            A.alpha_surrogate("renyi_reverse", 1.0, "reparam", p, 32),
            dj.surrogate("kl_reverse", "reparam", p, 32),
        ),
        (
            A.alpha_surrogate("renyi_forward", 1.0, "sn", p, 32),
            dj.surrogate("kl_forward", "snis", p, 32),
        ),
    ]
    for i, (mine, theirs) in enumerate(pairs):
        (l1, _), g1 = jax.jit(jax.value_and_grad(mine, has_aux=True))(q, KEY)
        (l2, _), g2 = jax.jit(jax.value_and_grad(theirs, has_aux=True))(q, KEY)
        np.testing.assert_allclose([*g1], [*g2], rtol=1e-10, atol=1e-12)
        # D_2 = log(1 + chi^2): the loss values agree after expm1.
        np.testing.assert_allclose(np.expm1(l1) if i == 0 else l1, l2, rtol=1e-10)


def test_bad_input():
    p, q = _p(), dj.Gaussian(0.0, 0.0)
    with pytest.raises(ValueError, match="valid choices"):
        _value("renyi", 0.5, p, q)
    with pytest.raises(ValueError, match="needs a finite float alpha"):
        _value("amari", None, p, q)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        _value("renyi_reverse", -1.0, p, q)
    with pytest.raises(ValueError, match="undefined at alpha = 1"):
        A.alpha_surrogate("amari", 1.0, "reparam", p, 8)
    with pytest.raises(ValueError, match="valid choices: sn, reparam"):
        A.alpha_surrogate("renyi_reverse", 0.5, "score", p, 8)
