"""optimal_q: every local minimum found, each one verified, none missed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import divjax as dj


def _grid_local_minima(name, p, locs, log_scales):
    """Independent check: strict local minima of the divergence on a grid."""
    loc, ls = np.meshgrid(locs, log_scales, indexing="ij")
    qs = dj.Gaussian(jnp.asarray(loc.ravel()), jnp.asarray(ls.ravel()))
    v = np.asarray(jax.jit(jax.vmap(lambda q: dj.divergence(name, p, q)))(qs)).reshape(loc.shape)
    minima = []
    for i in range(1, v.shape[0] - 1):
        for j in range(1, v.shape[1] - 1):
            patch = v[i - 1 : i + 2, j - 1 : j + 2]
            if np.isfinite(v[i, j]) and v[i, j] == patch.min() and (patch == v[i, j]).sum() == 1:
                minima.append((loc[i, j], ls[i, j]))
    return minima


def test_default_scenario(x64):
    p = dj.default_target()
    fwd = dj.optimal_q("kl_forward", p)
    assert fwd.q.loc.shape == (1,)
    np.testing.assert_allclose(fwd.q.loc, [1.5], atol=1e-8)
    np.testing.assert_allclose(fwd.q.variance, [6.025], rtol=1e-8)

    rev = dj.optimal_q("kl_reverse", p)
    assert rev.q.loc.shape == (2,)
    assert rev.value[0] < rev.value[1]
    # global near N(3, 1), local near N(-2, 0.5^2)
    assert abs(float(rev.q.loc[0]) - 3) < 0.1 and abs(float(rev.q.scale[0]) - 1) < 0.05
    assert abs(float(rev.q.loc[1]) + 2) < 0.1 and abs(float(rev.q.scale[1]) - 0.5) < 0.05

    assert dj.optimal_q("chi2_forward", p).q.loc.shape == (1,)
    assert dj.optimal_q("chi2_reverse", p).q.loc.shape == (2,)


@pytest.mark.parametrize("name", dj.DIVERGENCES)
def test_minima_are_verified(x64, name):
    p = dj.default_target()
    opt = dj.optimal_q(name, p)
    assert np.all(np.diff(np.asarray(opt.value)) >= 0)
    for i in range(opt.q.loc.shape[0]):
        q = dj.Gaussian(opt.q.loc[i], opt.q.log_scale[i])
        g = np.asarray(dj.exact_grad(name, p, q))
        assert np.linalg.norm(g) < 1e-6 * (1 + float(opt.value[i]))
        theta = jnp.stack([q.loc, q.log_scale])
        h = jax.hessian(lambda t: dj.divergence(name, p, dj.Gaussian(t[0], t[1])))(theta)
        assert np.all(np.linalg.eigvalsh(np.asarray(h)) > 0)


MIXTURES = {
    "two_far": ([0.5, 0.5], [-10.0, 10.0], [1.0, 0.3]),
    "three": ([0.2, 0.5, 0.3], [-6.0, 0.0, 7.0], [0.6, 1.0, 0.8]),
    "four": ([1.0, 2.0, 1.5, 0.5], [-12.0, -4.0, 4.0, 12.0], [1.0, 0.7, 1.2, 0.5]),
}


@pytest.mark.parametrize("mixture", sorted(MIXTURES))
@pytest.mark.parametrize("name", ["kl_reverse", "chi2_reverse"])
def test_none_missed_against_grid_search(x64, mixture, name):
    """Every grid minimum, polished by scipy's BFGS, must be one of ours."""
    p = dj.GaussianMixture(*MIXTURES[mixture])
    opt = dj.optimal_q(name, p)
    m, s = np.asarray(p.locs), np.asarray(p.scales)
    locs = np.linspace(m.min() - 3, m.max() + 3, 81)
    log_scales = np.linspace(np.log(s.min()) - 1.0, np.log(1.4 * s.max()), 30)
    grid = _grid_local_minima(name, p, locs, log_scales)
    assert grid

    @jax.jit
    def value_and_grad(theta):
        q = dj.Gaussian(theta[0], theta[1])
        return dj.divergence(name, p, q), jnp.stack(dj.exact_grad(name, p, q))

    def fun(theta):
        value, grad = map(np.asarray, value_and_grad(jnp.asarray(theta)))
        if not np.isfinite(value):
            return np.inf, np.zeros(2)
        return np.log1p(value), grad / (1 + value)

    found = np.stack([np.asarray(opt.q.loc), np.asarray(opt.q.log_scale)], axis=1)
    for start in grid:
        res = optimize.minimize(
            fun, np.asarray(start), jac=True, method="BFGS", options={"gtol": 1e-9}
        )
        dist = np.abs(found - res.x).max(axis=1)
        assert dist.min() < 1e-3, (start, res.x, found)
    # well-separated modes: one minimum per mode for the mode-seeking divergences
    assert len(found) == len(m)


def test_float32_default_scenario():
    rev = dj.optimal_q("kl_reverse", dj.default_target())
    assert rev.q.loc.dtype == jnp.float32 and rev.q.loc.shape == (2,)
    assert abs(float(rev.q.loc[0]) - 3) < 0.1


def test_bad_name():
    with pytest.raises(ValueError, match="valid choices"):
        dj.optimal_q("kl", dj.default_target())
