"""Exact divergences and gradients against independent references (float64 unless noted).

References: scipy's adaptive quadrature on numpy densities (`tests.reference`
for the four main divergences, `_alpha_ref` here for the alpha family),
central finite differences, Monte Carlo with 5-standard-error tolerances, and
product targets whose 2-D divergences factor into 1-D ones.

Every number comes from a few jitted, vmapped programs shared by the tests
(module fixtures): a batch of q's per call, one compile per target shape.
"""

import functools
import math
import warnings
from collections.abc import Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import divjax as dj
from tests import _shared, reference

MAIN = dj.DIVERGENCES
ALPHA = list(_shared.ALPHA)
CASES = list(_shared.CASES)
# Gradients of one order per kind of power (a < 0, 0 < a < 1, a > 1) and scaling.
GRAD_CASES = [(n, None) for n in MAIN] + [
    ("renyi_reverse", 0.5),
    ("renyi_forward", 2.5),
    ("amari", -0.5),
    ("amari", 1.7),
    ("hellinger", None),
    ("jensen_shannon", None),
]
P1 = _shared.P1
_key = _shared.key_of
_q1 = _shared.gaussians


def _ref(case, p, loc, scale):
    """The scipy reference for any case, for a 1-D mixture ``p = (weights, locs, scales)``."""
    name, alpha = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in MAIN:
            return reference.divergence(name, *p, loc, scale)
        return _alpha_ref(name, alpha, p, loc, scale)


def _alpha_ref(kind, alpha, p, loc, scale):
    """scipy.quad in float64 on numpy densities (independent of divjax).

    NaN where ``I(a)`` is finite but overflows float64 (no reference there).
    """
    w = np.asarray(p[0], float) / np.sum(p[0])
    m, s = np.asarray(p[1], float), np.asarray(p[2], float)

    def lp(x):
        return np.logaddexp.reduce(np.log(w) + stats.norm.logpdf(x, m, s))

    def lq(x):
        return stats.norm.logpdf(x, loc, scale)

    def integral(f, a=None):
        pts = list(m) + [loc, 0.0, 1.0]
        lo, hi = min(pts) - 60 * max(scale, s.max()), max(pts) + 60 * max(scale, s.max())
        if a is not None:  # centres and widths of q^a N_k^(1-a), where they exist
            lam = a / scale**2 + (1 - a) / s**2
            for lk, mk, sk in zip(lam, m, s):
                if lk > 0:
                    ck = (a * loc / scale**2 + (1 - a) * mk / sk**2) / lk
                    pts.append(ck)
                    lo, hi = min(lo, ck - 60 / np.sqrt(lk)), max(hi, ck + 60 / np.sqrt(lk))
        widths = [(mk, sk) for mk, sk in zip(m, s)] + [(loc, scale)]
        pts += [c + k * w_ for c, w_ in widths for k in (-16, -4, -1, 1, 4, 16)]
        edges = [lo] + sorted(x for x in set(pts) if lo < x < hi) + [hi]
        return sum(
            integrate.quad(f, a_, b_, epsabs=0, epsrel=1e-12, limit=500)[0]
            for a_, b_ in zip(edges[:-1], edges[1:])
        )

    if kind == "jensen_shannon":

        def f(x):
            a, b = lp(x), lq(x)
            mm = np.logaddexp(a, b) - np.log(2)
            return 0.5 * (np.exp(a) * (a - mm) + np.exp(b) * (b - mm))

        return integral(f)
    a = {"renyi_reverse": alpha, "renyi_forward": 1 - (alpha or 0), "amari": 1 - (alpha or 0)}
    a = a.get(kind, 0.5)
    # Where I(a) diverges (the integrand stops decaying), say so rather than integrate.
    if (a > 1 and scale**2 >= a * s.max() ** 2 / (a - 1)) or (
        a < 0 and scale**2 <= -a * s.max() ** 2 / (1 - a)
    ):
        return np.inf
    i = integral(lambda x: np.exp(a * lq(x) + (1 - a) * lp(x)), a)
    if not np.isfinite(i):
        return np.nan
    if kind.startswith("renyi"):
        return np.log(i) / (alpha - 1)
    if kind == "hellinger":
        return 1 - i
    return (1 - i) / (alpha * (1 - alpha))


def _close(value, ref, rtol, floor=1e-4):
    if np.isnan(ref):  # the reference overflowed: nothing to compare with
        return True
    if np.isinf(ref):
        return np.isposinf(value)
    return abs(value - ref) <= rtol * max(abs(ref), floor)


# --- the one-dimensional programs (`tests._shared.exact_1d`) ------------------------------


DEFAULT_QS = [(0.0, 5.0**0.5), (1.0, 1.2), (3.0, 1.0), (-2.0, 0.6), (20.0, 3.0), (-9.0, 0.8)]
FD_QS = [(1.0, 1.2), (3.0, 1.0), (-2.0, 0.75), (0.5, 0.9)]
H = 1e-5
# alpha's infinite regions (s_max = 1), each at loc 0.5: (case, scale, infinite)
INF_REGION = [
    (("renyi_reverse", 3.0), 1.2, False),  # a = 3: infinite iff sigma^2 >= 1.5
    (("renyi_reverse", 3.0), 1.25, True),
    (("renyi_forward", 2.5), 0.8, False),  # a = -1.5: infinite iff sigma^2 <= 0.6
    (("renyi_forward", 2.5), 0.77, True),
    (("amari", -0.5), 1.7, False),  # a = 1.5: infinite iff sigma^2 >= 3
    (("amari", -0.5), 1.74, True),
    (("renyi_reverse", 0.5), 30.0, False),
    (("hellinger", None), 0.01, False),
]
# chi-square boundaries: sigma^2 = s_max^2 / 2 (forward, infinite below), 2 s_max^2 (reverse, above)
BOUNDARY = [("chi2_forward", 0.5, 0.99), ("chi2_reverse", 2.0, 1.01)]


def _stencil(loc, scale):
    ls = math.log(scale)
    return [(loc + H, ls), (loc - H, ls), (loc, ls + H), (loc, ls - H)]


def _layout():
    """The q's of the 1-D tests, as named (loc, scale) groups."""
    return dict(
        default=DEFAULT_QS,
        stencil=[(lc, math.exp(ls)) for q in FD_QS for lc, ls in _stencil(*q)],
        region=[(0.5, s) for _, s, _ in INF_REGION],
        fd=FD_QS,
        moments=[(1.5, 6.025**0.5)],
        boundary=[
            (1.0, math.sqrt(v * f)) for _, v, side in BOUNDARY for f in (1.0, side, 2 - side)
        ],
    )


def _run(p, groups=tuple(_shared.GROUPS)):
    """`_shared.exact_1d` on ``p`` at every layout group: ``{layout: {case: quantities}}``."""
    layout = _layout()
    res = _shared.exact_1d(p, [q for g in layout.values() for q in g], groups)
    split, start = {}, 0
    for name, g in layout.items():
        end = start + len(g)
        split[name] = jax.tree_util.tree_map(lambda a, s=start, e=end: a[s:e], res)
        start = end
    return split


@functools.cache
def _default_group(group: str) -> dict:
    return _run(dj.default_target, (group,))


class _Cases(Mapping):
    """One layout group's ``{case: quantities}`` on the default target; each of
    `_shared.GROUPS` is computed the first time one of its cases is read."""

    def __init__(self, layout: str):
        self.layout = layout

    def __getitem__(self, key: str) -> dict:
        group = next(g for g, cases in _shared.GROUPS.items() if key in map(_key, cases))
        return _default_group(group)[self.layout][key]

    def __iter__(self):
        return (_key(c) for c in CASES)

    def __len__(self) -> int:
        return len(CASES)


@pytest.fixture(scope="module")
def default():
    return {layout: _Cases(layout) for layout in _layout()}


@pytest.mark.parametrize("case", CASES, ids=_key)
def test_values_default_scenario_vs_scipy(default, case):
    values = default["default"][_key(case)]["value"]
    qs = DEFAULT_QS if case[0] in MAIN else DEFAULT_QS[:4]  # the alpha family: the near q's
    for (loc, scale), v in zip(qs, values):
        ref = _ref(case, P1, loc, scale)
        assert _close(float(v), ref, 1e-9 if case[0] in MAIN else 1e-7), (loc, scale, v, ref)


def _check_fd(stencil_values, value, grad, case):
    plus_l, minus_l, plus_s, minus_s = stencil_values
    if case[0].startswith("chi2") or case[0] == "amari":
        # chi^2 can be huge and far from linear over the step: difference
        # log(1 + D) instead (nearly linear) and rescale by 1 + D.
        f, back = np.log1p, 1.0 + value
    else:
        f, back = (lambda v: v), 1.0
    fd = np.array([f(plus_l) - f(minus_l), f(plus_s) - f(minus_s)]) / (2 * H) * back
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("name", MAIN)
def test_exact_grad_vs_finite_differences(default, name):
    values, grads = (
        default["stencil"][_key((name, None))]["value"],
        default["fd"][_key((name, None))],
    )
    for i in range(len(FD_QS)):
        _check_fd(values[4 * i : 4 * i + 4], grads["value"][i], grads["exact"][i], (name, None))


@pytest.mark.parametrize("case", GRAD_CASES[len(MAIN) :], ids=_key)
def test_alpha_grad_vs_finite_differences(default, case):
    r = default["fd"][_key(case)]
    _check_fd(default["stencil"][_key(case)]["value"][:4], r["value"][0], r["exact"][0], case)


@pytest.mark.parametrize("name", MAIN)
def test_hand_derived_gradients_match_autodiff(default, name):
    """exact_grad's 1-D formulas (`divjax.gradients_1d`) against jax.grad of the value."""
    g = default
    for group in ("fd", "moments"):
        exact, auto = g[group][_key((name, None))]["exact"], g[group][_key((name, None))]["auto"]
        np.testing.assert_allclose(exact, auto, rtol=1e-8, atol=1e-10)


def test_kl_forward_gradient_is_zero_at_moment_matching(default):
    g = default["moments"][_key(("kl_forward", None))]["exact"][0]
    assert np.all(np.abs(g) < 1e-12)
    p = dj.default_target()
    assert float(p.mean()) == pytest.approx(1.5) and float(p.variance()) == pytest.approx(6.025)


@pytest.mark.parametrize("name, var, side", BOUNDARY)
def test_chi2_boundaries(default, name, var, side):
    """Target's widest component has s^2 = 1: the boundary is at sigma^2 = 1/2 (forward), 2."""
    g = default["boundary"][_key((name, None))]
    rows = slice(0, 3) if name == "chi2_forward" else slice(3, 6)
    at, inf_side, fin_side = (
        jax.tree_util.tree_map(lambda a, i=i: a[rows][i], g) for i in range(3)
    )
    assert np.isposinf(inf_side["value"]) and np.isposinf(inf_side["log1p"])
    assert inf_side["infinite"]
    assert np.all(np.isposinf(inf_side["exact"])) and np.all(np.isposinf(inf_side["auto"]))
    # At the boundary as rounded (sigma^2 = 0.5000000000000001 is just inside for the
    # forward one): infinite, or finite beyond the float range (log1p ~ 1e16); never NaN.
    assert np.isposinf(at["value"]) and at["log1p"] > 1e10
    if at["infinite"]:
        assert np.isposinf(at["log1p"]) and np.all(np.isposinf(at["exact"]))
    assert np.all(np.isinf(at["exact"])) and np.all(np.isinf(at["auto"]))
    assert np.isfinite(fin_side["value"]) and not fin_side["infinite"]
    assert np.all(np.isfinite(fin_side["exact"])) and np.all(np.isfinite(fin_side["auto"]))
    ref = _ref((name, None), P1, 1.0, math.sqrt(var * (2 - side)))
    assert fin_side["value"] == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("case, scale, infinite", INF_REGION)
def test_alpha_infinite_regions(default, case, scale, infinite):
    i = INF_REGION.index((case, scale, infinite))
    value = default["region"][_key(case)]["value"][i]
    if infinite:
        assert np.isposinf(value)
    else:
        assert np.isfinite(value) and value > 0
        assert value == pytest.approx(_ref(case, P1, 0.5, scale), rel=1e-6)


def test_alpha_gradients_are_inf_exactly_where_the_divergence_is(default):
    for i, (case, _, infinite) in enumerate(INF_REGION):
        r = jax.tree_util.tree_map(lambda a, i=i: a[i], default["region"][_key(case)])
        assert bool(r["infinite"]) == infinite
        assert np.all(np.isposinf(r["exact"])) if infinite else np.all(np.isfinite(r["exact"]))


def test_log1p_is_log_of_one_plus_the_value(default):
    for group in default.values():
        for r in (group[_key((n, None))] for n in MAIN):
            finite = np.isfinite(r["value"])
            np.testing.assert_allclose(r["log1p"][finite], np.log1p(r["value"][finite]), rtol=1e-10)


def test_unnormalized_weights_give_the_same_divergences(default):
    scaled = _run(lambda: dj.GaussianMixture(np.asarray(P1[0]) * 1e6, P1[1], P1[2]))
    for group in ("default", "fd"):
        for key, r in scaled[group].items():
            np.testing.assert_allclose(r["value"], default[group][key]["value"], rtol=1e-12)
            np.testing.assert_allclose(r["exact"], default[group][key]["exact"], rtol=1e-9)


def test_far_apart_narrow_modes_give_no_nan():
    out = _run(lambda: dj.GaussianMixture([1.0, 1.0], [-30.0, 30.0], [0.05, 0.05]))
    for key, leaf in jax.tree_util.tree_leaves_with_path(out):
        assert not np.any(np.isnan(leaf)), key


def test_default_q0_has_an_infinite_reverse_chi2(default):
    at_q0 = default["default"]
    assert np.isposinf(at_q0[_key(("chi2_reverse", None))]["value"][0])
    for name in ("kl_forward", "kl_reverse", "chi2_forward"):
        assert np.isfinite(at_q0[_key((name, None))]["value"][0])


# --- limits and special orders -------------------------------------------------------

EPS = 1e-6
LIMITS = [
    ("renyi_reverse", 1 + EPS),
    ("renyi_reverse", 1 - EPS),
    ("renyi_forward", 1 + EPS),
    ("renyi_forward", 1 - EPS),
    ("amari", 1 + EPS),
    ("amari", 1 - EPS),
    ("amari", EPS),
    ("amari", -EPS),
    ("renyi_reverse", 2.0),
    ("renyi_forward", 2.0),
    ("amari", 2.0),
    ("amari", -1.0),
    ("amari", 0.5),
    ("hellinger", None),
    ("renyi_reverse", 1.0),
    ("renyi_forward", 1.0),
    ("amari", 0.0),
    ("amari", 1.0),
] + [(n, None) for n in MAIN]


@jax.jit
def _limits(p, q):
    out = {_key(c): dj.divergence(c[0], p, q, alpha=c[1]) for c in LIMITS}
    out["grad amari 2"] = jnp.stack(dj.exact_grad("amari", p, q, alpha=2.0))
    out["grad chi2_forward"] = jnp.stack(dj.autodiff_grad("chi2_forward", p, q))
    return out


@pytest.mark.slow
def test_limits_match_kl_and_chi2(x64):
    v = _limits(dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.2))
    kl_f, kl_r, c_f, c_r = (float(v[_key((n, None))]) for n in MAIN)
    for sign in ("+", "-"):
        a1 = 1 + EPS if sign == "+" else 1 - EPS
        np.testing.assert_allclose(v[_key(("renyi_reverse", a1))], kl_r, rtol=1e-5)
        np.testing.assert_allclose(v[_key(("renyi_forward", a1))], kl_f, rtol=1e-5)
        np.testing.assert_allclose(v[_key(("amari", a1))], kl_f, rtol=1e-5)
        np.testing.assert_allclose(
            v[_key(("amari", EPS if sign == "+" else -EPS))], kl_r, rtol=1e-5
        )
    np.testing.assert_allclose(v[_key(("renyi_reverse", 2.0))], np.log1p(c_r), rtol=1e-10)
    np.testing.assert_allclose(v[_key(("renyi_forward", 2.0))], np.log1p(c_f), rtol=1e-10)
    np.testing.assert_allclose(v[_key(("amari", 2.0))], c_f / 2, rtol=1e-10)
    np.testing.assert_allclose(v[_key(("amari", -1.0))], c_r / 2, rtol=1e-10)
    np.testing.assert_allclose(
        v[_key(("hellinger", None))], v[_key(("amari", 0.5))] / 4, rtol=1e-12
    )
    # The exact orders dispatch to the KLs.
    assert float(v[_key(("renyi_reverse", 1.0))]) == kl_r
    assert float(v[_key(("renyi_forward", 1.0))]) == kl_f
    assert float(v[_key(("amari", 0.0))]) == kl_r
    assert float(v[_key(("amari", 1.0))]) == kl_f
    # Gradients at alpha = 2 are chi-square gradients rescaled.
    np.testing.assert_allclose(v["grad amari 2"], v["grad chi2_forward"] / 2, rtol=1e-8)


# --- random mixtures (one program for 1-4 components) ----------------------------------

M_MAX = 4


def _random_cases(n, seed):
    """Mixtures of 1-4 components (padded to 4 by splitting components), q anywhere.

    Modes up to 30 apart, scales 0.05-10, q's mean in [-40, 40] and scale 0.05-20,
    as the old hypothesis strategy drew them.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        m = 1 + (i // len(MAIN)) % M_MAX  # case i is checked against scipy for MAIN[i % 4]
        w = rng.uniform(0.05, 1.0, m)
        locs, scales = rng.uniform(-15, 15, m), np.exp(rng.uniform(np.log(0.05), np.log(10), m))
        reps = [j % m for j in range(M_MAX)]  # component j of the padded mixture
        counts = np.bincount(reps, minlength=m)
        padded = (w[reps] / counts[reps], locs[reps], scales[reps])
        q = (rng.uniform(-40, 40), math.exp(rng.uniform(np.log(0.05), np.log(20))))
        cases.append(((w, locs, scales), padded, q))
    return cases


@jax.jit
def _random(ws, locs, scales, qs):
    def one(w, m, s, q):
        p = dj.GaussianMixture(w, m, s)
        return {
            n: dict(
                value=dj.divergence(n, p, q),
                exact=jnp.stack(dj.exact_grad(n, p, q)),
                auto=jnp.stack(dj.autodiff_grad(n, p, q)),
                infinite=dj.is_infinite(n, p, q),
            )
            for n in MAIN
        }

    return jax.vmap(one)(ws, locs, scales, qs)


@pytest.fixture(scope="module")
def random_mixtures():
    cases = _random_cases(48, seed=0)
    with jax.enable_x64(True):
        ws, locs, scales = (jnp.asarray(np.stack([c[1][i] for c in cases])) for i in range(3))
        out = _random(ws, locs, scales, _q1([c[2] for c in cases]))
        return cases, jax.tree_util.tree_map(np.asarray, out)


@pytest.mark.parametrize("name", MAIN)
def test_values_random_mixtures_vs_scipy(random_mixtures, name):
    cases, out = random_mixtures
    for i, (p, _, (loc, scale)) in enumerate(cases):
        if MAIN[i % len(MAIN)] != name:
            continue
        ref = _ref((name, None), p, loc, scale)
        if np.isfinite(ref) and ref > 1e250:  # scipy itself overflows past this
            continue
        assert _close(float(out[name]["value"][i]), ref, 1e-6), (p, loc, scale, ref)


@pytest.mark.parametrize("name", MAIN)
def test_exact_grad_matches_autodiff_random(random_mixtures, name):
    _, out = random_mixtures
    r = out[name]
    for e, a, inf in zip(r["exact"], r["auto"], r["infinite"]):
        if inf:
            assert np.all(np.isposinf(e)) and np.all(np.isposinf(a))
            continue
        for ei, ai in zip(e, a):
            if not np.isfinite(ai):  # overflow of a huge but finite chi-square
                assert not np.isfinite(ei) or abs(ei) > 1e300
                continue
            assert abs(ei - ai) <= 1e-6 * max(abs(ai), 1e-6 * np.abs(e).max() + 1e-9), (e, a)


@jax.jit
def _single(ws, locs, scales, qs):
    """One-component targets: the closed-form branch of every power divergence."""
    cases = [c for c in CASES if c[0] != "jensen_shannon"]

    def one(w, m, s, q):
        p = dj.GaussianMixture(w, m, s)
        return {_key(c): dj.divergence(c[0], p, q, alpha=c[1]) for c in cases}

    return jax.vmap(one)(ws, locs, scales, qs)


@pytest.mark.slow
def test_one_component_targets_vs_scipy(x64):
    rng = np.random.default_rng(1)
    n = 8
    locs, scales = rng.uniform(-3, 3, (n, 1)), rng.uniform(0.5, 2.0, (n, 1))
    qs = [(rng.uniform(-3, 3), rng.uniform(0.7, 1.3) * s[0]) for s in scales]
    out = _single(jnp.full((n, 1), 2.0), jnp.asarray(locs), jnp.asarray(scales), _q1(qs))
    for key, values in out.items():
        name, alpha = key.split(":")
        case = (name, None if alpha == "None" else float(alpha))
        for i in range(n):
            ref = _ref(case, ([1.0], locs[i], scales[i]), *qs[i])
            assert _close(float(values[i]), ref, 1e-7), (key, i, float(values[i]), ref)


# --- float32, jit and vmap ----------------------------------------------------------------


@jax.jit
def _main(p, q):
    return {n: (dj.divergence(n, p, q), jnp.stack(dj.exact_grad(n, p, q))) for n in MAIN}


@pytest.mark.slow
def test_float32_close_to_float64_and_unbatched_equals_batched(default):
    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.2)
    out = _main(p, q)
    g64 = default["fd"]
    for name, (v, g) in out.items():
        assert v.dtype == jnp.float32 and g.dtype == jnp.float32
        ref = g64[_key((name, None))]
        assert float(v) == pytest.approx(float(ref["value"][0]), rel=1e-4)
        np.testing.assert_allclose(g, ref["exact"][0], rtol=1e-3, atol=1e-4)
    with jax.enable_x64(True):  # the unbatched program gives the batched numbers
        out = _main(dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.2))
        for name, (v, g) in out.items():
            assert float(v) == pytest.approx(float(g64[_key((name, None))]["value"][0]), rel=1e-12)
            np.testing.assert_allclose(g, g64[_key((name, None))]["exact"][0], rtol=1e-10)


def test_beyond_the_float_range_is_inf_and_says_so():
    """A finite chi-square beyond float32's range: inf, log1p finite, infinite_reason explains."""
    p = dj.default_target()
    q = dj.Gaussian.from_loc_scale(15.0, 1.2)  # far from p: p^2/q integrates to ~ e^100
    value, log1p, infinite = jax.jit(
        lambda p, q: (
            dj.divergence("chi2_forward", p, q),
            dj.log1p_divergence("chi2_forward", p, q),
            dj.is_infinite("chi2_forward", p, q),
        )
    )(p, q)
    assert np.isposinf(value) and np.isfinite(log1p) and float(log1p) > 89 and not infinite
    reason = dj.infinite_reason("chi2_forward", p, q)
    assert "is finite" in reason and "float32" in reason and "log1p_divergence gives" in reason
    narrow = dj.Gaussian.from_loc_scale(0.0, 0.5)  # sigma^2 <= s_max^2 / 2
    reason = dj.infinite_reason("chi2_forward", p, narrow)
    assert "does not decay" in reason and "p^2/q" in reason
    assert dj.infinite_reason("chi2_forward", p, dj.default_q0()) is None


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="kl"), "unknown divergence 'kl'; valid choices: kl_forward, kl_reverse, chi2"),
        (dict(name="amari"), "amari needs a finite float alpha"),
        (dict(name="amari", alpha=True), "needs a finite float alpha"),
        (dict(name="amari", alpha="x"), "alpha must be a finite float"),
        (dict(name="amari", alpha=np.inf), "alpha must be a finite float"),
        (dict(name="renyi_reverse", alpha=-1.0), "Renyi order alpha must be > 0"),
        (dict(name="renyi_forward", alpha=0.0), "Renyi order alpha must be > 0"),
        (dict(name="kl_forward", alpha=0.5), "kl_forward takes no alpha"),
        (dict(p=lambda x: x), "no exact kl_forward for a function target"),
        (dict(p=dj.LogDensity(lambda x: -(x**2))), "no exact kl_forward for a LogDensity target"),
        (
            dict(q=dj.MixtureGaussian([0.0, 0.0], [[0.0], [1.0]], [[0.0], [0.0]])),
            "MixtureGaussian q",
        ),
        (dict(q=dj.DiagGaussian([0.0], [0.0])), r"event_shape \(\) does not match q's \(1,\)"),
        (
            dict(
                name="kl_reverse",
                p=dj.GaussianMixture([1.0], [[0.0] * 3], [[1.0] * 3]),
                q=dj.DiagGaussian([0.0] * 3, [0.0] * 3),
            ),
            "kl_reverse value is not exact in d = 3. exact divergences need",
        ),
    ],
)
def test_bad_input_names_the_problem(kwargs, match):
    args = dict(name="kl_forward", p=dj.default_target(), q=dj.default_q0(), alpha=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dj.divergence(args["name"], args["p"], args["q"], alpha=args["alpha"])


def test_exact_grad_where_only_the_gradient_is_exact():
    """kl_forward's gradient is closed form in any d; its value, and chi2_reverse, are not."""
    p = dj.GaussianMixture([1.0, 1.0], [[0.0] * 3, [1.0] * 3], [[1.0] * 3] * 2)
    q = dj.DiagGaussian([0.0] * 3, [0.0] * 3)
    g = jax.eval_shape(lambda: dj.exact_grad("kl_forward", p, q))
    chex.assert_trees_all_equal_structs(g, q)  # the gradient comes back in q's own container
    chex.assert_trees_all_equal_shapes_and_dtypes(g, q)
    with pytest.raises(ValueError, match="not exact in d = 3"):
        dj.exact_grad("chi2_reverse", p, q)
    with pytest.raises(ValueError, match="not exact in d = 3"):
        dj.divergence("kl_forward", p, q)


# --- d dimensions ----------------------------------------------------------------------------

C, S = 0.5, 0.8  # the second axis of the product target: N(C, S^2)
CASES_2D = [(n, None) for n in MAIN] + [
    ("renyi_reverse", 0.5),
    ("renyi_forward", 2.5),
    ("amari", 1.7),
    ("hellinger", None),
]
# q's: (loc1, scale1, loc2, scale2); the last one has an infinite chi2_reverse (wider than p).
DIAG_QS = [(1.0, 1.2, 0.2, 0.7), (-1.5, 0.8, 1.0, 1.1), (2.5, 1.0, 0.5, 0.8), (0.0, 2.0, 0.5, 1.2)]


def _product():
    """``p(x1, x2) = p1(x1) N(x2; C, S^2)``, p1 the default target."""
    w, m, s = P1
    return dj.GaussianMixture(w, np.stack([m, [C, C]], 1), np.stack([s, [S, S]], 1))


def _correlated():
    return dj.GaussianMixture(
        [0.3, 0.7],
        [[-2.0, 0.0], [2.0, 1.0]],
        covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.8, -0.2], [-0.2, 1.2]]],
    )


def _stack(qs):
    """A batch (leaves with a leading axis) of families of one kind."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *qs)


def _diag_batch(stencil_cases=1):
    """DIAG_QS then, for the first, the finite-difference stencil in each of its 4 parameters."""
    base = np.asarray(DIAG_QS[0], float)
    rows = list(DIAG_QS)
    for j in range(4):
        for sign in (1, -1):
            r = base.copy()
            r[j] = r[j] + sign * H if j in (0, 2) else r[j] * math.exp(sign * H)
            rows.append(tuple(r))
    return _stack([dj.DiagGaussian([a, c], np.log([b, d])) for a, b, c, d in rows])


def _full_qs():
    """A wide q (chi2_reverse infinite) and a narrow one (chi2_forward infinite)."""
    return _stack(
        [
            dj.FullRankGaussian.from_cov([0.5, 0.5], [[3.0, 0.5], [0.5, 2.0]]),
            dj.FullRankGaussian.from_cov([1.5, 0.8], [[0.6, 0.1], [0.1, 0.7]]),
        ]
    )


def _monte_carlo(p, q_full, key, n=200_000):
    kp, kq = jax.random.split(key)
    xp = p.sample(kp, n)
    xq = jax.vmap(lambda q, k: q.sample(k, n))(q_full, jax.random.split(kq, 2))
    return dict(
        p=jax.vmap(lambda q: p.log_prob(xp) - q.log_prob(xp))(q_full),  # log p/q, x ~ p
        q=jax.vmap(lambda q, x: q.log_prob(x) - p.log_prob(x))(q_full, xq),  # log q/p, x ~ q
        score=jax.vmap(
            lambda q: jax.vmap(jax.grad(lambda q_, xi: -q_.log_prob(xi)), (None, 0))(q, xp[:50_000])
        )(q_full),  # -grad log q, x ~ p
    )


# lax.map, not vmap, over 2-D q's: a 2-D rule has ~10^6 nodes, a batch exhausts memory.
@jax.jit
def _two_d_fast(p_prod, q_diag, p_corr, q_full, key):
    """Closed forms (any family) and the four main divergences by 2-D quadrature (diag)."""
    values = jax.lax.map(lambda q: {n: dj.divergence(n, p_prod, q) for n in MAIN}, q_diag)
    q0 = jax.tree_util.tree_map(lambda a: a[0], q_diag)
    full = jax.vmap(
        lambda q: dict(
            chi2_forward=dj.divergence("chi2_forward", p_corr, q),
            chi2_grad=dj.exact_grad("chi2_forward", p_corr, q),
            kl_grad=dj.exact_grad("kl_forward", p_corr, q),
            infinite=dj.is_infinite("chi2_forward", p_corr, q),
        )
    )(q_full)
    return dict(
        values=values,
        kl_reverse_grad=dj.exact_grad("kl_reverse", p_prod, q0),
        full=full,
        mc=_monte_carlo(p_corr, q_full, key),
    )


@pytest.fixture(scope="module")
def two_d_fast():
    with jax.enable_x64(True):
        out = _two_d_fast(_product(), _diag_batch(), _correlated(), _full_qs(), jax.random.key(3))
        return jax.tree_util.tree_map(np.asarray, out)


def _factor_value(case, d1, d2):
    """The product target's divergence from its two 1-D factors' (KL add, I(a) multiplies)."""
    name, alpha = case
    if not (np.isfinite(d1) and np.isfinite(d2)):
        return np.inf
    if name.startswith("kl") or name.startswith("renyi"):
        return d1 + d2
    if name.startswith("chi2"):
        return (1 + d1) * (1 + d2) - 1
    if name == "hellinger":
        return 1 - (1 - d1) * (1 - d2)
    c = alpha * (1 - alpha)  # amari: I = 1 - c A
    return (1 - (1 - c * d1) * (1 - c * d2)) / c


def _check_product(values, case):
    for i, (l1, s1, l2, s2) in enumerate(DIAG_QS):
        ref = _factor_value(case, _ref(case, P1, l1, s1), _ref(case, ([1.0], [C], [S]), l2, s2))
        assert _close(float(values[i]), ref, 1e-7), (case, i, float(values[i]), ref)


def _check_fd_2d(values, value0, grad, case):
    """``values``: the 8 stencil points (loc1, log_scale1, loc2, log_scale2, each +-H)."""
    f = np.log1p if case[0].startswith("chi2") or case[0] == "amari" else (lambda a: a)
    back = 1 + value0 if f is np.log1p else 1.0
    fd = (f(values[0::2]) - f(values[1::2])) / (2 * H) * back
    exact = np.array([grad.loc[0], grad.log_scale[0], grad.loc[1], grad.log_scale[1]])
    np.testing.assert_allclose(exact, fd, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("name", MAIN)
def test_2d_product_target_factors_into_1d_scipy_references(two_d_fast, name):
    """``KL(q || p1 x N) = KL(q1 || p1) + KL(q2 || N)``; ``1 + chi^2`` multiplies."""
    _check_product(two_d_fast["values"][name], (name, None))


def test_2d_kl_reverse_gradient_vs_finite_differences(two_d_fast):
    v = two_d_fast["values"]["kl_reverse"]
    _check_fd_2d(v[len(DIAG_QS) :], v[0], two_d_fast["kl_reverse_grad"], ("kl_reverse", None))


def test_2d_closed_forms_vs_monte_carlo(two_d_fast):
    """chi2_forward and kl_forward's gradient, full-rank q: 200,000 draws from p, 5 SE."""
    full, mc = two_d_fast["full"], two_d_fast["mc"]
    for i in range(2):
        w = np.exp(mc["p"][i])
        value = float(full["chi2_forward"][i])
        if full["infinite"][i]:  # sigma too narrow: p^2 / q does not decay
            assert np.isposinf(value) and np.all(np.isposinf(full["chi2_grad"].loc[i]))
        else:
            assert abs((w - 1).mean() - value) < 5 * w.std() / math.sqrt(len(w)), (i, value)
        for exact, draws in zip(full["kl_grad"], mc["score"]):  # -E_p[grad log q]
            b, e = draws[i], exact[i]
            assert np.all(np.abs(b.mean(0) - e) <= 5 * b.std(0) / math.sqrt(len(b))), (b.mean(0), e)
        assert full["kl_grad"].chol[i, 0, 1] == 0.0  # the ignored upper triangle
    assert full["infinite"].tolist() == [False, True]


def test_2d_infinite_regions(two_d_fast):
    wide = two_d_fast["values"]["chi2_reverse"][3]  # wider than p in every direction
    assert np.isposinf(wide) and np.isfinite(two_d_fast["values"]["kl_reverse"][3])


# The rest of the 2-D coverage: the alpha family, full-rank quadrature, Jensen-Shannon.


@jax.jit
def _two_d(p_prod, q_diag, p_corr, q_full, key):
    def diag(q):
        return {
            _key(c): dict(
                value=dj.divergence(c[0], p_prod, q, alpha=c[1]),
                exact=dj.exact_grad(c[0], p_prod, q, alpha=c[1]),
            )
            for c in CASES_2D
        }

    def full(q):
        return {
            n: dict(
                value=dj.divergence(n, p_corr, q),
                exact=dj.exact_grad(n, p_corr, q),
                auto=dj.autodiff_grad(n, p_corr, q),
                infinite=dj.is_infinite(n, p_corr, q),
            )
            for n in MAIN + ("jensen_shannon",)
        }

    return jax.lax.map(diag, q_diag), jax.lax.map(full, q_full), _monte_carlo(p_corr, q_full, key)


@pytest.fixture(scope="module")
def two_d():
    with jax.enable_x64(True):
        out = _two_d(_product(), _diag_batch(), _correlated(), _full_qs(), jax.random.key(3))
        return jax.tree_util.tree_map(np.asarray, out)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES_2D[len(MAIN) :], ids=_key)
def test_2d_alpha_product_target_factors_into_1d_scipy_references(two_d, case):
    _check_product(two_d[0][_key(case)]["value"], case)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES_2D, ids=_key)
def test_2d_exact_grad_vs_finite_differences(two_d, case):
    r = two_d[0][_key(case)]
    grad = jax.tree_util.tree_map(lambda a: a[0], r["exact"])
    _check_fd_2d(r["value"][len(DIAG_QS) :], r["value"][0], grad, case)


@pytest.mark.slow
def test_2d_full_rank_values_vs_monte_carlo(two_d):
    """200,000 draws from p (forward) or q (reverse): within 5 standard errors."""
    _, full, mc = two_d
    for i in range(2):
        lp, lq = mc["p"][i], mc["q"][i]  # log p/q under p, log q/p under q
        draws = {
            "kl_forward": lp,
            "chi2_forward": np.exp(lp) - 1,
            "kl_reverse": lq,
            "chi2_reverse": np.exp(lq) - 1,
            "jensen_shannon": None,
        }
        for name, d in draws.items():
            value = float(full[name]["value"][i])
            if full[name]["infinite"][i]:
                assert np.isposinf(value), (name, i)
                continue
            if name == "jensen_shannon":  # E_p[log 2p/(p+q)] / 2 + E_q[log 2q/(p+q)] / 2
                a = 0.5 * (math.log(2) - np.logaddexp(0.0, -lp))
                b = 0.5 * (math.log(2) - np.logaddexp(0.0, -lq))
                mean, se = a.mean() + b.mean(), math.hypot(a.std(), b.std()) / math.sqrt(len(a))
            else:
                mean, se = d.mean(), d.std() / math.sqrt(len(d))
            assert np.isfinite(value) and abs(mean - value) < 5 * se, (name, i, mean, value, se)
    assert full["chi2_reverse"]["infinite"].tolist() == [True, False]


@pytest.mark.slow
def test_2d_full_rank_gradients_match_autodiff(two_d):
    _, full, _ = two_d
    for name in ("kl_forward", "chi2_forward"):  # closed form vs jax.grad of the value
        for x, y in zip(full[name]["exact"], full[name]["auto"]):
            np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-10, err_msg=name)
    for name in MAIN + ("jensen_shannon",):
        finite = ~full[name]["infinite"]
        assert np.all(full[name]["exact"].chol[finite, 0, 1] == 0.0), name
        assert np.all(np.isposinf(full[name]["exact"].chol[~finite])), name


@jax.jit
def _unit_d(p1, q1, pd, qd, qf):
    """A 1-D target seen as d = 1 ((M, 1) locs): the same numbers as the 1-D one."""
    out = {}
    for n in MAIN:
        out[n] = [
            (dj.divergence(n, p, q), jnp.stack([jnp.ravel(g) for g in dj.exact_grad(n, p, q)]))
            for p, q in ((p1, q1), (pd, qd), (pd, qf))
        ]
    return out


@pytest.mark.slow
def test_d1_targets_give_the_1d_numbers(x64):
    p1, q1 = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.2)
    pd = dj.GaussianMixture(P1[0], np.asarray(P1[1])[:, None], np.asarray(P1[2])[:, None])
    qd = dj.DiagGaussian([1.0], [math.log(1.2)])
    qf = dj.FullRankGaussian([1.0], [[math.log(1.2)]])
    for name, rows in _unit_d(p1, q1, pd, qd, qf).items():
        (v, g), *others = rows
        for v_, g_ in others:
            np.testing.assert_allclose(v_, v, rtol=1e-10, err_msg=name)
            np.testing.assert_allclose(g_, g, rtol=1e-8, atol=1e-12, err_msg=name)


@jax.jit
def _high_d(p3, q3, p5, q5, key):
    out = {}
    for d, p, q in ((3, p3, q3), (5, p5, q5)):
        x = p.sample(jax.random.fold_in(key, d), 200_000)
        score = jax.vmap(jax.grad(lambda q_, xi: -q_.log_prob(xi)), (None, 0))(q, x[:50_000])
        out[d] = dict(
            chi2=dj.divergence("chi2_forward", p, q),
            kl_grad=dj.exact_grad("kl_forward", p, q),
            weights=jnp.exp(p.log_prob(x) - q.log_prob(x)),
            score=score,
        )
    return out


@pytest.mark.slow
def test_chi2_forward_and_kl_forward_gradient_in_any_d_vs_monte_carlo(x64):
    ps, qs = {}, {}
    for d in (3, 5):
        rng = np.random.default_rng(d)
        ps[d] = dj.GaussianMixture(
            [1.0, 2.0], rng.normal(size=(2, d)), rng.uniform(0.5, 1.0, (2, d))
        )
    qs[3] = dj.FullRankGaussian.from_cov(np.zeros(3), 2.25 * np.eye(3) + 0.1)
    qs[5] = dj.DiagGaussian(jnp.zeros(5), jnp.log(1.5 * jnp.ones(5)))
    out = _high_d(ps[3], qs[3], ps[5], qs[5], jax.random.key(3))
    for d, r in out.items():
        w = np.asarray(r["weights"])
        assert abs((w - 1).mean() - float(r["chi2"])) < 5 * w.std() / math.sqrt(len(w)), d
        for exact, draws in zip(r["kl_grad"], r["score"]):  # -E_p[grad log q]
            b = np.asarray(draws)
            assert np.all(np.abs(b.mean(0) - np.asarray(exact)) <= 5 * b.std(0) / math.sqrt(len(b)))
