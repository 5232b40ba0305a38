"""The exactness contract, in float32 and float64, against an independent reference.

For every divergence, on a grid of extreme q's (``sigma`` from 1e-30 to 1e3,
``|loc|`` up to 1e5) and three targets (`tests.exactness_grid`), and on
q's drawn by hypothesis:

- values are never NaN and never negative;
- ``inf`` only where the reference says the value is infinite (and
  `divjax.is_infinite` agrees) or beyond the dtype's range;
- otherwise the relative error is at most 1e-6 (float64) or 1e-3 (float32),
  of ``log(1 + D)`` (`divjax.log1p_divergence`) where ``D`` is beyond the range;
- exact gradients are never NaN, and the hand-derived ones match autodiff.

The reference (`tests.reference_hp`, numpy/scipy only) integrates in q's
standardized variable with the integrand's peaks located first; its own
checks are in `tests/test_reference_hp.py`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import divjax as dj
from tests import exactness_grid as grid
from tests import reference_hp as ref


def _check(name, alpha, dtype, qs=None, refs=None):
    out = grid.evaluate(name, alpha, dtype, qs)
    if refs is None:
        refs = grid.cached_reference(name, alpha, dtype)
    bad, worst = grid.violations(name, alpha, dtype, out, refs, qs)
    assert not bad, "\n".join(bad[:20])
    return worst


@pytest.mark.parametrize("dtype", grid.DTYPES)
@pytest.mark.parametrize("name, alpha", grid.ORDERS, ids=[grid.key(*o) for o in grid.ORDERS])
def test_contract_on_the_extreme_grid(name, alpha, dtype):
    _check(name, alpha, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", grid.DTYPES)
@pytest.mark.parametrize(
    "name, alpha", grid.MORE_ORDERS, ids=[grid.key(*o) for o in grid.MORE_ORDERS]
)
def test_contract_on_the_extreme_grid_more_orders(name, alpha, dtype):
    _check(name, alpha, dtype)


BEYOND = {  # beyond the grid: the dtype's smallest scales, |loc| to 1e12
    "float32": [(1e9, 1.0), (-1e9, 1e-20), (0.5, 1e-37), (3.0, 1e6), (1e5, 1e-37), (-1e9, 1e6)],
    "float64": [(1e9, 1.0), (-1e9, 1e-20), (0.5, 1e-300), (3.0, 1e6), (1e12, 1e-100), (3.0, 1e100)],
}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", grid.DTYPES)
@pytest.mark.parametrize("name, alpha", grid.ORDERS, ids=[grid.key(*o) for o in grid.ORDERS])
def test_contract_beyond_the_grid(name, alpha, dtype):
    qs = BEYOND[dtype]
    refs = grid.reference_rows(name, alpha, dtype, qs)
    _check(name, alpha, dtype, qs, np.asarray(refs, float).reshape(len(grid.TARGETS), len(qs), 3))


# --- hypothesis: extremes off the grid, evaluated in batches with the grid's programs ----


def _q():
    near = st.tuples(  # within 1e-8 to 1e5 of a component's mean, either side
        st.sampled_from([-2.0, 3.0, -1e3, 1e3]), st.sampled_from([-1.0, 1.0]), st.floats(-8.0, 5.0)
    )
    loc = st.one_of(st.floats(-1e5, 1e5), near.map(lambda t: t[0] + t[1] * 10.0 ** t[2]))
    return st.tuples(loc, st.floats(-30.0, 3.0).map(lambda e: 10.0**e))


@pytest.mark.parametrize("dtype", grid.DTYPES)
@settings(
    max_examples=3,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    order=st.sampled_from(grid.ORDERS),
    target=st.sampled_from(list(grid.TARGETS)),
    qs=st.lists(_q(), min_size=6, max_size=6),
)
def test_contract_on_hypothesis_extremes(dtype, order, target, qs):
    """Six q's per example, one target checked (the batch shape is the grid's: no recompiling)."""
    name, alpha = order
    w, m, s = grid.TARGETS[target]
    t = list(grid.TARGETS).index(target)
    refs = np.full((len(grid.TARGETS), len(qs), 3), np.nan)
    for i, (mu, sigma) in enumerate(qs):
        loc, _, scale = grid.represented(mu, sigma, dtype)
        refs[t, i] = grid.expected(name, alpha, w, m, s, loc, scale)
    out = grid.evaluate(name, alpha, dtype, qs)
    out = {k: v[t : t + 1] for k, v in out.items()}
    bad, _ = grid.violations(name, alpha, dtype, out, refs[t : t + 1], qs, [target])
    assert not bad, "\n".join(bad)


# --- the cases that broke, by name ----------------------------------------------------


def test_narrow_q_is_followed_wherever_it_is():
    """kl_reverse at sigma = 1e-30 depends on loc, with a non-zero gradient (float32 and 64)."""
    qs = [(-1.0, 1e-30), (0.5, 1e-30), (3.0, 1e-30), (-1e9, 1.0), (1e7, math.exp(-25.0))]
    for dtype in grid.DTYPES:
        out = grid.evaluate("kl_reverse", None, dtype, qs)
        values = out["value"][0]
        assert len(set(values[:3].tolist())) == 3
        assert np.all(out["grad"][0, :3, 0] != 0)
        assert np.all(values >= 0)
    out = grid.evaluate("chi2_reverse", None, "float64", qs[-1:])
    assert out["value"][0, 0] > 0


def test_beyond_float32_is_inf_and_infinite_reason_says_so():
    """chi2_reverse at N(30, 0.3^2) is about 2e166: inf in float32, finite in log space."""
    p = dj.default_target()
    w, m, s = grid.TARGETS["default"]
    want = ref.reference("chi2_reverse", w, m, s, 30.0, float(np.float32(0.3)))
    q = dj.Gaussian.from_loc_scale(jnp.float32(30.0), jnp.float32(0.3))
    assert math.isinf(float(dj.divergence("chi2_reverse", p, q)))
    assert not bool(dj.is_infinite("chi2_reverse", p, q))
    assert "beyond float32's range" in dj.infinite_reason("chi2_reverse", p, q)
    log1p = float(dj.log1p_divergence("chi2_reverse", p, q))
    assert abs(log1p - want.log_integral) <= 1e-3 * want.log_integral
    with jax.enable_x64(True):
        q64 = dj.Gaussian.from_loc_scale(30.0, float(np.float32(0.3)))
        got = float(dj.divergence("chi2_reverse", p, q64))
        assert abs(got - want.value) <= 1e-6 * want.value
        assert dj.infinite_reason("chi2_reverse", p, q64) is None
    wide = dj.Gaussian.from_loc_scale(jnp.float32(0.0), jnp.float32(2.0))
    assert bool(dj.is_infinite("chi2_reverse", p, wide))
    assert "does not decay" in dj.infinite_reason("chi2_reverse", p, wide)


# --- the reference itself ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype", grid.DTYPES)
def test_cached_references_are_the_reference(dtype):
    """``exactness_reference.json`` is what `tests.reference_hp` computes today."""
    for name, alpha in grid.ORDERS + grid.MORE_ORDERS:
        cached = grid.cached_reference(name, alpha, dtype)
        fresh = np.asarray(grid.reference_rows(name, alpha, dtype), float)
        np.testing.assert_allclose(cached.reshape(fresh.shape), fresh, rtol=1e-14)


@pytest.mark.slow
def test_second_derivatives_where_q_sits_on_a_component(x64):
    """At loc = m_k (a start of `divjax.optimal_q`'s Newton) the Hessian matches differences."""
    p = dj.default_target()

    def f(t):
        return dj.divergence("hellinger", p, dj.Gaussian(t[0], t[1]))

    t0, h = jnp.array([3.0, 0.0]), 1e-4
    fd = [(jax.grad(f)(t0 + h * e) - jax.grad(f)(t0 - h * e)) / (2 * h) for e in jnp.eye(2)]
    np.testing.assert_allclose(jax.hessian(f)(t0), np.stack(fd), rtol=1e-5, atol=1e-8)
