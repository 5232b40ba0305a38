"""Validation of the independent high-precision reference (`tests/reference_hp.py`).

Three independent routes are compared with the float64 quadrature reference:

* closed forms that use no quadrature (one-component targets in 1-D and 2-D;
  ``int p^n q^(1 - n)`` for integer ``n`` on any mixture, e.g. chi2_forward);
* mpmath at 40 digits on the textbook integrands (`mp_reference`);
* structure: 2-D problems that factorize into a 1-D mixture times a Gaussian,
  rotation invariance.

The checks that take seconds each (mpmath, the 2-D nested quadrature, the
long hypothesis runs) are marked slow; ``pytest -m slow`` runs them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import reference_hp as ref

I_BASED = {"chi2_forward", "chi2_reverse", "renyi_forward", "renyi_reverse", "amari", "hellinger"}
ORDERS = [
    ("kl_forward", None),
    ("kl_reverse", None),
    ("chi2_forward", None),
    ("chi2_reverse", None),
    ("renyi_reverse", 0.5),
    ("renyi_reverse", 3.0),
    ("renyi_forward", 0.3),
    ("renyi_forward", 2.5),
    ("amari", 0.3),
    ("amari", -1.5),
    ("amari", 2.0),
    ("hellinger", None),
]


def rel_err(got: ref.Ref, want: ref.Ref) -> float:
    """Relative error of ``value`` (or of ``log1p_value`` where the value overflowed)."""
    if got.infinite or want.infinite:
        return 0.0 if got.infinite == want.infinite else math.inf
    if math.isfinite(want.value) and want.value != 0:
        if not math.isfinite(got.value):
            return math.inf
        return abs(got.value - want.value) / abs(want.value)
    if want.value == 0:
        return abs(got.value)
    return abs(got.log1p_value - want.log1p_value) / abs(want.log1p_value)


# ---------------------------------------------------------------------------
# Closed forms, one component (1-D)

LOCS = [0.0, 0.5, -3.0, 1e5, -1e9]
SCALES = [1e-300, 1e-30, 1e-3, 0.7, 1.0, 1.3, 1e3, 1e6]


@pytest.mark.slow
@pytest.mark.parametrize("name,alpha", ORDERS)
def test_gaussian_closed_forms_extreme_grid(name, alpha):
    m, s = 0.25, 1.0
    worst = 0.0
    for mu in LOCS:
        for sigma in SCALES:
            got = ref.reference(name, [2.0], [m], [s], mu, sigma, alpha)
            want = ref.gaussian_reference(name, m, s, mu, sigma, alpha)
            assert got.infinite == want.infinite == ref.is_infinite(name, [s], sigma, alpha)
            if not got.infinite:
                assert math.isfinite(got.log1p_value)
                assert got.value >= 0
            err = rel_err(got, want)
            # log-space values near overflow carry |log I| * eps of absolute error
            worst = max(worst, err)
            assert err < 1e-11, (mu, sigma, got, want)
    assert worst < 1e-11


@pytest.mark.parametrize("name,alpha", ORDERS)
def test_gaussian_closed_forms_near_equal(name, alpha):
    """q ~ p: divergences ~1e-20 keep their relative accuracy (no cancellation)."""
    for m, s, dmu, ds in [
        (0.0, 1.0, 1e-10, 1e-10),
        (1.0, 2.0, 1e-10, 0.0),
        (-3.0, 0.5, 0.0, 1e-9),
        (1e5, 3.0, 3e-9, -2e-10),
        (0.0, 1e-30, 1e-41, 1e-41),
    ]:
        got = ref.reference(name, [1.0], [m], [s], m + dmu, s * (1.0 + ds), alpha)
        want = ref.gaussian_reference(name, m, s, m + dmu, s * (1.0 + ds), alpha)
        assert 0 < want.value < 1e-15
        assert rel_err(got, want) < 1e-12, (m, s, dmu, ds, got, want)


def test_exact_equality_is_zero():
    for name, alpha in ORDERS + [("jensen_shannon", None)]:
        got = ref.reference(name, [0.3, 0.7], [1.0, 1.0], [2.0, 2.0], 1.0, 2.0, alpha)
        assert got.value == 0.0 and not got.infinite


def test_overflowing_values_keep_a_finite_log():
    r = ref.reference("chi2_reverse", [1.0], [0.0], [1.0], 1e5, 0.9)
    assert r.value == math.inf and not r.infinite
    want = ref.gaussian_reference("chi2_reverse", 0.0, 1.0, 1e5, 0.9)
    assert abs(r.log1p_value - want.log1p_value) < 1e-14 * want.log1p_value
    r = ref.reference("kl_forward", [1.0], [0.0], [1.0], 0.0, 1e-300)
    assert r.value == math.inf and math.isfinite(r.log1p_value)
    want = ref.gaussian_reference("kl_forward", 0.0, 1.0, 0.0, 1e-300)
    assert abs(r.log1p_value - want.log1p_value) < 1e-13 * want.log1p_value


def test_infinite_regions_match_the_rule():
    s = [0.5, 1.0]
    for sigma, inf_fwd, inf_rev in [
        (1 / math.sqrt(2), True, False),
        (0.7072, False, False),
        (math.sqrt(2), False, True),
        (1.414, False, False),
    ]:
        assert ref.reference("chi2_forward", [1, 1], [0, 3], s, 1.0, sigma).infinite == inf_fwd
        assert ref.reference("chi2_reverse", [1, 1], [0, 3], s, 1.0, sigma).infinite == inf_rev


# ---------------------------------------------------------------------------
# Closed forms on mixtures: int p^n q^(1 - n) (chi2_forward is n = 2)


def _random_mixture(rng, k=None):
    k = k or int(rng.integers(1, 5))
    w = 10 ** rng.uniform(-3, 0, k)
    m = rng.uniform(-30, 30, k)
    s = 10 ** rng.uniform(math.log10(0.05), 1, k)
    return w, m, s


def test_power_integral_closed_form_on_mixtures():
    rng = np.random.default_rng(7)
    worst = 0.0
    for i in range(60):
        w, m, s = _random_mixture(rng)
        mu = [0.0, rng.uniform(-40, 40), 1e5, -1e9, float(rng.choice(m)) + 1e-3][i % 5]
        if i % 4 == 3:  # just inside chi2_forward's finite region: peak ~1e5 widths out
            sigma = float(s.max()) / math.sqrt(2) * (1 + 10 ** rng.uniform(-12, -3))
        else:
            sigma = float(10 ** rng.uniform(math.log10(s.max()), 6))
        for n, name, alpha in [(2, "chi2_forward", None), (3, "renyi_forward", 3.0)]:
            got = ref.reference(name, w, m, s, mu, sigma, alpha)
            want = ref.power_integral_closed_form(n, w, m, s, mu, sigma)
            if math.isinf(want):
                assert got.infinite
                continue
            err = abs(got.log_integral - want) / abs(want)
            worst = max(worst, err)
            assert err < 1e-12, (w, m, s, mu, sigma, got, want)
    assert worst < 1e-12


def test_chi2_forward_closed_form_helper():
    w, m, s = [0.3, 0.7], [-2.0, 3.0], [0.5, 1.0]
    got = ref.reference("chi2_forward", w, m, s, 12.0, 1.3)
    want = ref.chi2_forward_closed_form(w, m, s, 12.0, 1.3)
    assert abs(got.value - want.value) < 1e-13 * want.value


# ---------------------------------------------------------------------------
# The trap: chi2_reverse's peak sits ~60 q-widths out


def test_chi2_reverse_far_peak():
    w, m, s, mu, sigma = [0.3, 0.7], [-2.0, 3.0], [0.5, 1.0], 12.0, 1.3
    r = ref.reference("chi2_reverse", w, m, s, mu, sigma)
    assert 5.9186e113 < r.value < 5.9187e113
    pytest.importorskip("mpmath")
    mp = ref.mp_reference("chi2_reverse", w, m, s, mu, sigma)
    assert abs(r.value - mp.value) < 1e-12 * mp.value  # log I = 261: eps |log I| ~ 1e-13
    # what a 40-sigma window around q would give
    from scipy import integrate

    def f(x):
        lq = -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma)
        lp = np.logaddexp.reduce(
            np.log(np.array(w) / sum(w)) - 0.5 * ((x - np.array(m)) / s) ** 2 - np.log(s)
        )
        return math.exp(2 * lq - lp - 0.5 * math.log(2 * math.pi) - 250.0)

    window = integrate.quad(f, mu - 40 * sigma, mu + 40 * sigma, limit=500)[0] * math.exp(250.0)
    assert window < 0.95 * r.value


# ---------------------------------------------------------------------------
# mpmath (textbook integrands, 40 digits) on random extreme multi-component points


def _extreme_q(rng, m, s):
    kind = int(rng.integers(0, 6))
    mu = [
        0.0,
        float(rng.uniform(-40, 40)),
        1e5 * float(rng.choice([-1, 1])),
        float(rng.choice(m)) + float(rng.normal()) * 10 ** float(rng.uniform(-12, 0)),
        1e9 * float(rng.choice([-1, 1])),
        float(rng.uniform(-1e3, 1e3)),
    ][kind]
    if rng.random() < 0.7:
        sigma = float(10 ** rng.uniform(-30, 6))
    else:
        sigma = float(rng.choice([1e-300, 1e-30, 1e3, 1e6, float(s[0]) * (1 + 1e-9)]))
    return mu, sigma


def _random_order(rng):
    name = str(rng.choice(ref.NAMES))
    alpha = None
    if name.startswith("renyi"):
        alpha = float(rng.choice([0.5, 2.0, 3.0, rng.uniform(0.05, 5)]))
    if name == "amari":
        alpha = float(rng.choice([-1.0, 0.5, 2.0, rng.uniform(-3, 4)]))
    return name, alpha


@pytest.mark.slow
def test_mpmath_agreement_random_extreme_points():
    pytest.importorskip("mpmath")
    rng = np.random.default_rng(20240601)
    worst = 0.0
    for _ in range(20):
        w, m, s = _random_mixture(rng, int(rng.integers(2, 5)))
        mu, sigma = _extreme_q(rng, m, s)
        name, alpha = _random_order(rng)
        got = ref.reference(name, w, m, s, mu, sigma, alpha)
        want = ref.mp_reference(name, w, m, s, mu, sigma, alpha, dps=30)  # nothing tiny here
        err = rel_err(got, want)
        worst = max(worst, err)
        assert err < 1e-10, (name, alpha, w, m, s, mu, sigma, got, want)
        assert want.rel_err < 1e-15 or want.infinite
    assert worst < 1e-10


@pytest.mark.slow
def test_mpmath_agreement_near_equal_and_js():
    pytest.importorskip("mpmath")
    cases = [
        ("jensen_shannon", None, [1.0], [0.0], [1.0], 1e-10, 1.0 + 1e-10),
        ("jensen_shannon", None, [0.3, 0.7], [-2.0, 3.0], [0.5, 1.0], 12.0, 1.3),
        ("jensen_shannon", None, [0.3, 0.7], [-2.0, 3.0], [0.5, 1.0], 0.0, 1e-30),
        ("kl_reverse", None, [1.0, 1e-12], [0.0, 8.0], [1.0, 0.3], 1e-9, 1.0),
        # near-duplicate components: p is Gaussian up to 1e-13, KL ~ 1e-26
        ("kl_reverse", None, [0.5, 0.5], [0.0, 1e-6], [1.0, 1.0], 5e-7, 1.0),
        ("kl_forward", None, [0.5, 0.5], [0.0, 1e-6], [1.0, 1.0], 5e-7, 1.0),
        ("hellinger", None, [0.3, 0.7, 0.2], [0.0, 1e-8, -1e-8], [1.0, 1.0, 1.0], 0.0, 1.0),
        ("amari", 0.999, [0.2, 0.8], [0.0, 1.0], [1.0, 2.0], 0.7, 1.7),
        ("amari", 1e-3, [0.2, 0.8], [0.0, 1.0], [1.0, 2.0], 0.7, 1.7),
    ]
    for name, alpha, w, m, s, mu, sigma in cases:
        got = ref.reference(name, w, m, s, mu, sigma, alpha)
        dps = 45 if got.value < 1e-15 else 25  # 20+ significant digits left either way
        want = ref.mp_reference(name, w, m, s, mu, sigma, alpha, dps=dps)
        assert rel_err(got, want) < 1e-10, (name, got, want)


# ---------------------------------------------------------------------------
# Hypothesis: 1-4 components, extreme q

mixtures = st.integers(1, 4).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(-3, 0), min_size=k, max_size=k).map(lambda e: [10.0**x for x in e]),
        st.lists(st.floats(-30, 30), min_size=k, max_size=k),
        st.lists(st.floats(math.log10(0.05), 1), min_size=k, max_size=k).map(
            lambda e: [10.0**x for x in e]
        ),
    )
)
q_locs = st.one_of(
    st.floats(-40, 40),
    st.sampled_from([1e5, -1e5, 1e9, -1e9]),
    st.floats(-1e3, 1e3),
)
q_scales = st.one_of(
    st.floats(-30, 6).map(lambda e: 10.0**e),
    st.sampled_from([1e-300, 1e-30, 1e6]),
)
orders = st.sampled_from(
    ORDERS + [("jensen_shannon", None), ("renyi_reverse", 1.0), ("amari", 0.0), ("amari", 1.0)]
)


def _check_sane(name, alpha, mix, mu, sigma, r):
    w, m, s = mix
    assert r.infinite == ref.is_infinite(name, s, sigma, alpha)
    if r.infinite:
        assert r.value == math.inf
        return
    assert r.value >= 0.0
    assert math.isfinite(r.log1p_value)
    assert r.rel_err < 1e-9
    if name == "jensen_shannon":
        assert r.value <= math.log(2.0) * (1 + 1e-15)
    if name == "hellinger":
        assert r.value <= 1.0


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mix=mixtures, mu=q_locs, sigma=q_scales, order=orders)
def test_hypothesis_finite_nonnegative(mix, mu, sigma, order):
    name, alpha = order
    w, m, s = mix
    r = ref.reference(name, w, m, s, mu, sigma, alpha)
    _check_sane(name, alpha, mix, mu, sigma, r)


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mix=mixtures, mu=q_locs, sigma=q_scales, order=orders)
def test_hypothesis_finite_nonnegative_quick(mix, mu, sigma, order):
    """A few of the long run's examples, in every run of the suite."""
    name, alpha = order
    w, m, s = mix
    _check_sane(name, alpha, mix, mu, sigma, ref.reference(name, w, m, s, mu, sigma, alpha))


@pytest.mark.slow
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mix=mixtures, mu=q_locs, sigma=q_scales, order=orders)
def test_hypothesis_agrees_with_mpmath(mix, mu, sigma, order):
    pytest.importorskip("mpmath")
    name, alpha = order
    w, m, s = mix
    r = ref.reference(name, w, m, s, mu, sigma, alpha)
    _check_sane(name, alpha, mix, mu, sigma, r)
    want = ref.mp_reference(name, w, m, s, mu, sigma, alpha, dps=30)
    if not want.infinite and abs(want.value) < 1e-18:
        # below what 30 digits of textbook integrand resolve (e.g. two components 1e-94 apart)
        assert abs(r.value - want.value) < 1e-18, (r, want)
    else:
        assert rel_err(r, want) < 1e-9, (r, want)


# ---------------------------------------------------------------------------
# Internals worth pinning


def test_gauss_kronrod_rule():
    x = ref._GK_X
    for deg in range(0, 32):
        exact = (1 - (-1) ** (deg + 1)) / (deg + 1)
        assert abs(np.sum(ref._GK_W * x**deg) - exact) < 1e-15
        if deg < 20:
            assert abs(np.sum(ref._G_W * x**deg) - exact) < 1e-15


def test_psi_series_and_log_space_branches_meet():
    """psi(L) is continuous across the switch between Taylor series and log-space formulas."""
    for spec in [
        ref._Spec("kl_r"),
        ref._Spec("kl_f"),
        ref._Spec("js"),
        ref._Spec("I", -1.0),
        ref._Spec("I", 2.0),
        ref._Spec("I", 0.5),
        ref._Spec("I", 7.0),
    ]:
        psi = ref._Psi(spec)
        cuts = [1.0, -1.0, 4.0, -4.0] if spec.kind != "I" else [psi.cut, -psi.cut]
        for c in cuts:
            lo, hi = (
                psi(0.0, c * (1 - 1e-12), c * (1 - 1e-12), 0.0),
                psi(0.0, c * (1 + 1e-12), c * (1 + 1e-12), 0.0),
            )
            assert abs(lo - hi) < 1e-10, (spec, c, lo, hi)


# ---------------------------------------------------------------------------
# 2-D


def _rot(th):
    c, s = math.cos(th), math.sin(th)
    return np.array([[c, -s], [s, c]])


CASES_2D = [
    (
        np.array([0.3, -0.2]),
        np.array([[1.0, 0.3], [0.3, 0.8]]),
        np.array([0.5, 0.1]),
        np.array([[0.7, -0.1], [-0.1, 1.2]]),
    ),
    (
        np.zeros(2),
        np.array([[1.0, 0.3], [0.3, 0.8]]),
        np.array([1e-10, 0.0]),
        np.array([[1.0, 0.3], [0.3, 0.8 + 1e-10]]),
    ),
    (
        np.zeros(2),
        np.array([[1.0, 0.3], [0.3, 0.8]]),
        np.array([1e5, -3e4]),
        np.array([[4.0, 1.0], [1.0, 2.0]]),
    ),
    (
        np.zeros(2),
        np.array([[1.0, 0.3], [0.3, 0.8]]),
        np.array([2.0, 1.0]),
        1e-30 * np.array([[4.0, 1.0], [1.0, 2.0]]),
    ),
    (
        np.zeros(2),
        np.array([[1.0, 0.3], [0.3, 0.8]]),
        np.array([2.0, 1.0]),
        1e6 * np.array([[4.0, 1.0], [1.0, 2.0]]),
    ),
]


@pytest.mark.parametrize("case", range(len(CASES_2D)))
def test_2d_gaussian_closed_forms(case):
    m, s, mu, sig = CASES_2D[case]
    names = ["kl_reverse", "chi2_reverse"] if case != 2 else ["kl_forward", "renyi_reverse"]
    if case == 1:
        names = ["kl_forward", "chi2_forward"]
    for name in names:
        alpha = 0.5 if name == "renyi_reverse" else None
        got = ref.reference_2d(name, [1.0], [m], [s], mu, sig, alpha)
        want = ref.gaussian_reference_2d(name, m, s, mu, sig, alpha)
        assert rel_err(got, want) < 1e-11, (name, got, want)


@pytest.mark.slow
def test_2d_factorizes_into_1d_mixture_times_gaussian():
    """p = sum_k pi_k N(m_k, s_k^2) x N(m', s'^2), q axis-aligned (then rotated)."""
    rng = np.random.default_rng(3)
    for trial in range(3):
        w, m, s = _random_mixture(rng, 2)
        m = m / 3
        m2, s2 = float(rng.uniform(-3, 3)), float(10 ** rng.uniform(-0.5, 0.5))
        mu1 = [float(rng.uniform(-10, 10)), 1e4, float(m[0]) + 1e-3][trial]
        sig1 = [float(10 ** rng.uniform(-1, 0.5)), 1e-6, float(s.max()) * 1.2][trial]
        mu2, sig2 = float(rng.uniform(-3, 3)), float(10 ** rng.uniform(-0.3, 0.3))
        rot = _rot(float(rng.uniform(0, math.pi))) if sig1 > 1e-2 else np.eye(2)
        locs = np.array([[mk, m2] for mk in m]) @ rot.T
        covs = np.array([rot @ np.diag([sk**2, s2**2]) @ rot.T for sk in s])
        covs = 0.5 * (covs + covs.transpose(0, 2, 1))
        loc = rot @ np.array([mu1, mu2])
        cov = rot @ np.diag([sig1**2, sig2**2]) @ rot.T
        cov = 0.5 * (cov + cov.T)
        for name in ["kl_reverse", "kl_forward", "chi2_reverse"]:
            got = ref.reference_2d(name, w, locs, covs, loc, cov)
            one = ref.reference(name, w, m, s, mu1, sig1)
            two = ref.gaussian_reference(name, m2, s2, mu2, sig2)
            if name.startswith("kl"):
                assert abs(got.value - one.value - two.value) < 1e-10 * (one.value + two.value)
            elif one.infinite or two.infinite:
                assert got.infinite
            else:
                li = one.log_integral + two.log_integral
                assert abs(got.log_integral - li) < 1e-10 * max(abs(li), 1e-300), (name, got, li)


def test_2d_chi2_forward_mixture_closed_form():
    rng = np.random.default_rng(11)
    for _ in range(3):
        k = 3
        w = 10 ** rng.uniform(-2, 0, k)
        locs = rng.uniform(-4, 4, (k, 2))
        covs = []
        for _ in range(k):
            a = rng.normal(size=(2, 2))
            covs.append(a @ a.T + 0.3 * np.eye(2))
        covs = np.array(covs)
        loc = rng.uniform(-3, 3, 2)
        big = max(np.linalg.eigvalsh(c)[-1] for c in covs)
        cov = np.diag([big, big]) * 1.5
        got = ref.reference_2d("chi2_forward", w, locs, covs, loc, cov)
        want = ref.chi2_forward_closed_form_2d(w, locs, covs, loc, cov)
        assert not want.infinite
        assert abs(got.log_integral - want.log_integral) < 1e-11 * abs(want.log_integral)


@pytest.mark.slow
def test_2d_rotation_invariance():
    w = [0.4, 0.6]
    locs = np.array([[-1.0, 0.5], [2.0, -0.3]])
    covs = np.array([[[0.5, 0.2], [0.2, 0.4]], [[1.5, -0.4], [-0.4, 0.9]]])
    loc, cov = np.array([0.3, 0.2]), np.array([[0.9, 0.1], [0.1, 0.6]])
    rot = _rot(0.7)
    for name in ["kl_reverse", "chi2_reverse"]:
        a = ref.reference_2d(name, w, locs, covs, loc, cov)
        covs_r = np.array([0.5 * (rot @ c @ rot.T + (rot @ c @ rot.T).T) for c in covs])
        cov_r = rot @ cov @ rot.T
        b = ref.reference_2d(name, w, locs @ rot.T, covs_r, rot @ loc, 0.5 * (cov_r + cov_r.T))
        assert abs(a.value - b.value) < 1e-11 * a.value
