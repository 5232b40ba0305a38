"""Exact values and gradients against scipy.quad and finite differences, in float64."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import divjax as dj
from tests import reference

DEFAULT_QS = [(0.0, 5.0**0.5), (1.0, 1.2), (3.0, 1.0), (-2.0, 0.6), (20.0, 3.0), (-9.0, 0.8)]


def _ref(name, p, loc, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reference.divergence(name, p.weights, p.locs, p.scales, loc, scale)


def _assert_close(value, ref, rtol):
    if np.isinf(ref):
        assert np.isinf(value) and value > 0
    else:
        assert abs(value - ref) <= rtol * max(abs(ref), 1e-4), (value, ref)


@pytest.mark.parametrize("name", dj.DIVERGENCES)
@pytest.mark.parametrize("loc,scale", DEFAULT_QS)
def test_values_default_scenario_vs_scipy(x64, name, loc, scale):
    p = dj.default_target()
    q = dj.Gaussian.from_loc_scale(loc, scale)
    _assert_close(float(dj.divergence(name, p, q)), _ref(name, p, loc, scale), 1e-9)


mixtures = st.integers(1, 4).flatmap(
    lambda m: st.tuples(
        st.lists(st.floats(0.05, 1.0), min_size=m, max_size=m),
        st.lists(st.floats(-15.0, 15.0), min_size=m, max_size=m),
        st.lists(st.floats(0.05, 10.0), min_size=m, max_size=m),
    )
)
gaussians = st.tuples(st.floats(-40.0, 40.0), st.floats(0.05, 20.0))


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mix=mixtures, qq=gaussians, name=st.sampled_from(dj.DIVERGENCES))
def test_values_random_mixtures_vs_scipy(x64, mix, qq, name):
    """1-4 components, modes up to 30 apart, scales 0.05-10, q anywhere."""
    p = dj.GaussianMixture(*mix)
    q = dj.Gaussian.from_loc_scale(*qq)
    ref = _ref(name, p, *qq)
    value = float(dj.divergence(name, p, q))
    if np.isfinite(ref) and ref > 1e250:  # scipy itself overflows past this
        return
    _assert_close(value, ref, 1e-6)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mix=mixtures, qq=gaussians, name=st.sampled_from(dj.DIVERGENCES))
def test_exact_grad_matches_autodiff_random(x64, mix, qq, name):
    p = dj.GaussianMixture(*mix)
    q = dj.Gaussian.from_loc_scale(*qq)
    exact = dj.exact_grad(name, p, q)
    auto = dj.autodiff_grad(name, p, q)
    if bool(dj.is_infinite(name, p, q)):
        assert all(np.isposinf(np.asarray(g)) for g in (*exact, *auto))
        return
    for e, a in zip(exact, auto):
        e, a = float(e), float(a)
        if not np.isfinite(a):  # overflow of a huge but finite chi-square
            assert not np.isfinite(e) or abs(e) > 1e300
            continue
        assert abs(e - a) <= 1e-6 * max(abs(a), 1e-6 * max(abs(float(x)) for x in exact) + 1e-9)


@pytest.mark.parametrize("name", dj.DIVERGENCES)
@pytest.mark.parametrize("loc,scale", [(1.0, 1.2), (3.0, 1.0), (-2.0, 0.75), (0.5, 0.9)])
def test_exact_grad_vs_finite_differences(x64, name, loc, scale):
    p = dj.default_target()
    q = dj.Gaussian.from_loc_scale(loc, scale)
    assert not bool(dj.is_infinite(name, p, q))
    g = dj.exact_grad(name, p, q)
    h = 1e-5
    for i, field in enumerate(dj.Gaussian._fields):
        e = np.zeros(2)
        e[i] = h
        plus = dj.divergence(name, p, dj.Gaussian(q.loc + e[0], q.log_scale + e[1]))
        minus = dj.divergence(name, p, dj.Gaussian(q.loc - e[0], q.log_scale - e[1]))
        if name.startswith("chi2"):
            # chi^2 can be ~1e90 and far from linear over the step: difference
            # log(1 + chi^2) instead (nearly linear) and rescale by 1 + chi^2.
            one_plus = 1.0 + float(dj.divergence(name, p, q))
            fd = float(jnp.log1p(plus) - jnp.log1p(minus)) / (2 * h) * one_plus
        else:
            fd = float(plus - minus) / (2 * h)
        assert abs(float(g[i]) - fd) <= 1e-6 * max(1.0, abs(fd)), (field, float(g[i]), fd)


def test_kl_forward_gradient_is_moment_matching(x64):
    p = dj.default_target()
    q = dj.Gaussian.from_loc_variance(1.5, 6.025)
    g = dj.exact_grad("kl_forward", p, q)
    assert abs(float(g.loc)) < 1e-12 and abs(float(g.log_scale)) < 1e-12
    assert float(p.mean()) == pytest.approx(1.5) and float(p.variance()) == pytest.approx(6.025)


# --- infinite cases -------------------------------------------------------------


def test_default_q0_has_infinite_reverse_chi2(x64):
    p, q0 = dj.default_target(), dj.default_q0()
    assert np.isposinf(float(dj.divergence("chi2_reverse", p, q0)))
    assert "inf" in dj.infinite_reason("chi2_reverse", p, q0)
    # and the other three are finite there
    for name in ("kl_forward", "kl_reverse", "chi2_forward"):
        assert np.isfinite(float(dj.divergence(name, p, q0)))


@pytest.mark.parametrize(
    "name,boundary_var,inside",
    [("chi2_forward", 0.5, "below"), ("chi2_reverse", 2.0, "above")],
)
def test_chi2_boundaries(x64, name, boundary_var, inside):
    """Target's widest component has s^2 = 1: the boundary is at sigma^2 = 1/2 or 2."""
    p = dj.default_target()
    at = dj.Gaussian.from_loc_variance(1.0, boundary_var)
    assert np.isposinf(float(dj.divergence(name, p, at)))
    infinite_side = boundary_var * (0.99 if inside == "below" else 1.01)
    finite_side = boundary_var * (1.01 if inside == "below" else 0.99)
    assert np.isposinf(
        float(dj.divergence(name, p, dj.Gaussian.from_loc_variance(1.0, infinite_side)))
    )
    q = dj.Gaussian.from_loc_variance(1.0, finite_side)
    value = float(dj.divergence(name, p, q))
    assert np.isfinite(value)
    assert value == pytest.approx(_ref(name, p, 1.0, finite_side**0.5), rel=1e-6)
    for g in (*dj.exact_grad(name, p, at), *dj.autodiff_grad(name, p, at)):
        assert np.isposinf(float(g))
    for g in (*dj.exact_grad(name, p, q), *dj.autodiff_grad(name, p, q)):
        assert np.isfinite(float(g))


def test_far_apart_narrow_modes_no_nan(x64):
    p = dj.GaussianMixture([1.0, 1.0], [-30.0, 30.0], [0.05, 0.05])
    for loc, scale in [(0.0, 1.0), (-30.0, 0.05), (100.0, 0.5), (0.0, 0.06)]:
        q = dj.Gaussian.from_loc_scale(loc, scale)
        for name in dj.DIVERGENCES:
            v = float(dj.divergence(name, p, q))
            assert not np.isnan(v)
            g = dj.exact_grad(name, p, q)
            assert not np.any(np.isnan(np.asarray(g)))


def test_unnormalized_weights_give_same_divergence(x64):
    p = dj.default_target()
    scaled = dj.GaussianMixture(p.weights * 1e6, p.locs, p.scales)
    q = dj.Gaussian.from_loc_scale(1.0, 1.2)
    for name in dj.DIVERGENCES:
        assert float(dj.divergence(name, scaled, q)) == pytest.approx(
            float(dj.divergence(name, p, q)), rel=1e-12
        )
    assert float(scaled.log_normalizer) == pytest.approx(np.log(1e6))


# --- jit, vmap, dtypes ----------------------------------------------------------


@pytest.mark.parametrize("name", dj.DIVERGENCES)
def test_jit_and_vmap_over_q(name):
    p = dj.default_target()
    qs = dj.Gaussian(jnp.array([1.0, 3.0, -2.0]), jnp.log(jnp.array([1.2, 1.0, 0.6])))
    values = jax.jit(jax.vmap(lambda q: dj.divergence(name, p, q)))(qs)
    grads = jax.jit(jax.vmap(lambda q: dj.exact_grad(name, p, q)))(qs)
    assert values.shape == (3,) and grads.loc.shape == (3,)
    for i in range(3):
        q = dj.Gaussian(qs.loc[i], qs.log_scale[i])
        assert float(values[i]) == pytest.approx(float(dj.divergence(name, p, q)), rel=1e-5)


@pytest.mark.parametrize("name", dj.DIVERGENCES)
def test_float32_close_to_float64(name):
    p32 = dj.default_target()
    q32 = dj.Gaussian.from_loc_scale(1.0, 1.2)
    assert dj.divergence(name, p32, q32).dtype == jnp.float32
    v32 = float(dj.divergence(name, p32, q32))
    g32 = dj.exact_grad(name, p32, q32)
    with jax.enable_x64(True):
        p64 = dj.default_target()
        q64 = dj.Gaussian.from_loc_scale(1.0, 1.2)
        v64 = float(dj.divergence(name, p64, q64))
        g64 = dj.exact_grad(name, p64, q64)
    assert v32 == pytest.approx(v64, rel=1e-4)
    for a, b in zip(g32, g64):
        assert float(a) == pytest.approx(float(b), rel=1e-3, abs=1e-4)


# --- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(weights=[0.3, -0.7], locs=[0, 1], scales=[1, 1]), "weights"),
        (dict(weights=[0.3, 0.7], locs=[0, 1], scales=[1, 0]), "scales"),
        (dict(weights=[0.3, 0.7], locs=[0, 1, 2], scales=[1, 1]), "same length"),
        (dict(weights=[0.3, 0.7], locs=[0, np.nan], scales=[1, 1]), "locs"),
        (dict(weights=[0.3, np.inf], locs=[0, 1], scales=[1, 1]), "weights"),
    ],
)
def test_bad_mixture(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dj.GaussianMixture(**kwargs)


def test_bad_gaussian_and_name():
    with pytest.raises(ValueError, match="loc"):
        dj.Gaussian(np.nan, 0.0)
    with pytest.raises(ValueError, match="scale"):
        dj.Gaussian.from_loc_scale(0.0, -1.0)
    with pytest.raises(ValueError, match="kl_forward, kl_reverse, chi2_forward, chi2_reverse"):
        dj.divergence("kl", dj.default_target(), dj.default_q0())
    with pytest.raises(ValueError, match="GaussianMixture"):
        dj.divergence("kl_forward", lambda x: x, dj.default_q0())


# --- check_grad -----------------------------------------------------------------


@pytest.mark.parametrize("name", dj.DIVERGENCES)
def test_check_grad_passes_the_right_formula_and_catches_a_wrong_one(x64, name, capsys):
    p = dj.default_target()
    good = dj.check_grad(lambda p_, q: dj.exact_grad(name, p_, q), name, p)
    assert good.ok and good.num_q > 0
    assert "PASS" in capsys.readouterr().out

    def wrong(p_, q):  # a classic slip: the gradient with respect to sigma, not log sigma
        g = dj.exact_grad(name, p_, q)
        return dj.Gaussian._make((g.loc, g.log_scale / q.scale))

    bad = dj.check_grad(wrong, name, p, verbose=False)
    assert not bad.ok and float(bad.max_rel_err.log_scale) > 1e-2
    assert float(bad.max_rel_err.loc) < 1e-6  # the loc part is still right
