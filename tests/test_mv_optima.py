"""mv_optimal_q: d-dimensional optima, each verified, against independent references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import divjax as dj
from divjax import multivariate as mv
from divjax.mv_families import DiagGaussian, FullRankGaussian, MvGaussianMixture
from divjax.mv_optima import mv_optimal_q

C, S = 0.5, 0.8  # the second axis of the product target: N(C, S^2)


def _p1() -> dj.GaussianMixture:
    return dj.default_target()  # 0.3 N(-2, 0.5^2) + 0.7 N(3, 1)


def _product() -> MvGaussianMixture:
    """``p(x1, x2) = p1(x1) N(x2; C, S^2)``."""
    p1 = _p1()
    locs = jnp.stack([p1.locs, jnp.full(2, C)], 1)
    return MvGaussianMixture(p1.weights, locs, jnp.stack([p1.scales, jnp.full(2, S)], 1))


def _correlated() -> MvGaussianMixture:
    return MvGaussianMixture(
        [0.4, 0.6],
        [[-3.0, -1.0], [2.5, 2.0]],
        covs=[[[1.0, 0.6], [0.6, 0.8]], [[0.7, -0.3], [-0.3, 1.1]]],
    )


def _random_target(d: int, rng) -> MvGaussianMixture:
    a = rng.normal(size=(3, d, d))
    covs = a @ np.swapaxes(a, -1, -2) / d + 0.3 * np.eye(d)
    return MvGaussianMixture(rng.uniform(0.5, 2.0, 3), rng.normal(0, 2, (3, d)), covs=covs)


def _row(q, i):
    return jax.tree_util.tree_map(lambda a: a[i], q)


def _moments(p: MvGaussianMixture):
    """Mean and covariance from the mixture's parameters, in numpy."""
    w = np.asarray(p.weights) / np.sum(np.asarray(p.weights))
    m, a = np.asarray(p.locs), np.asarray(p.scale_trils)
    mean = w @ m
    diff = m - mean
    return mean, np.einsum(
        "k,kij->ij", w, a @ np.swapaxes(a, -1, -2) + np.einsum("ki,kj->kij", diff, diff)
    )


def _params(q) -> np.ndarray:
    """An independent flat parameterization: loc, then the scale's free entries."""
    if isinstance(q, DiagGaussian):
        return np.concatenate([np.asarray(q.loc), np.asarray(q.log_scale)])
    d = q.dim
    return np.concatenate([np.asarray(q.loc), np.asarray(q.chol)[np.tril_indices(d)]])


def _unparams(x, d: int, family: str):
    if family == "diag":
        return DiagGaussian._make((x[:d], x[d:]))
    return FullRankGaussian._make(
        (x[:d], jnp.zeros((d, d), x.dtype).at[np.tril_indices(d)].set(x[d:]))
    )


@pytest.fixture(scope="module")
def optima():
    """Every optimum computed once per scenario (in float64)."""
    cache = {}

    def get(name, scenario, family):
        if (name, scenario, family) not in cache:
            with jax.enable_x64(True):
                p = {"product": _product, "correlated": _correlated}[scenario]()
                cache[name, scenario, family] = (p, mv_optimal_q(name, p, family=family))
        return cache[name, scenario, family]

    return get


def _value_and_grad(name, p, family):
    """Jitted ``x -> (divergence, gradient)`` in the flat parameters of `_params`."""
    f = jax.value_and_grad(lambda x: mv.mv_divergence(name, p, _unparams(x, p.dim, family)))
    jitted = jax.jit(f)

    def fun(x):
        v, g = jitted(jnp.asarray(x))
        return float(v), np.asarray(g)

    return fun


@pytest.mark.parametrize(("d", "family"), [(3, "full"), (5, "diag")])
def test_kl_forward_is_moment_matching(x64, d, family):
    p = _random_target(d, np.random.default_rng(d))
    opt = mv_optimal_q("kl_forward", p, family=family)
    mean, cov = _moments(p)
    q = _row(opt.q, 0)
    assert opt.value.shape == (1,) and q.loc.shape == (d,)
    np.testing.assert_allclose(q.loc, mean, rtol=1e-12, atol=1e-12)
    want = cov if family == "full" else np.diag(np.diag(cov))
    got = q.cov if family == "full" else np.diag(np.exp(2.0 * np.asarray(q.log_scale)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for g in mv.mv_exact_grad("kl_forward", p, q):
        assert np.max(np.abs(np.asarray(g))) < 1e-10
    # In d > 2 the value is the cross-entropy -E_p[log q] = (d log 2 pi + log det S + d) / 2.
    logdet = np.linalg.slogdet(want)[1]
    np.testing.assert_allclose(opt.value[0], 0.5 * (d * math.log(2 * math.pi) + logdet + d))


@pytest.mark.parametrize(("d", "family"), [(2, "full"), (3, "diag")])
def test_chi2_forward_minimum(x64, d, family):
    p = _random_target(d, np.random.default_rng(10 + d))
    opt = mv_optimal_q("chi2_forward", p, family=family)
    assert opt.value.shape == (1,)  # log-convex: one minimum
    q = _row(opt.q, 0)
    value = float(opt.value[0])
    fun = _value_and_grad("chi2_forward", p, family)
    x0 = _params(q)
    v0, g0 = fun(x0)
    np.testing.assert_allclose(v0, value, rtol=1e-12)
    assert np.max(np.abs(g0)) / (1 + value) < 1e-6  # the gradient of log(1 + chi^2)
    # No random nearby point is lower.
    f = jax.jit(jax.vmap(lambda x: mv.mv_divergence("chi2_forward", p, _unparams(x, d, family))))
    for size in (1e-4, 1e-2, 1e-1):
        steps = size * np.random.default_rng(0).normal(size=(200, x0.size))
        assert np.min(np.asarray(f(jnp.asarray(x0 + steps)))) >= value
    # An independent optimizer (BFGS on chi^2 itself) from a perturbed start comes back.
    start = x0 + 0.05 * np.random.default_rng(1).normal(size=x0.size)
    res = optimize.minimize(fun, start, jac=True, method="BFGS", options={"gtol": 1e-10})
    assert res.fun >= value - 1e-12
    np.testing.assert_allclose(res.x, x0, atol=1e-5)


@pytest.mark.parametrize("name", ["kl_reverse", "chi2_reverse"])
def test_product_target_matches_1d(x64, optima, name):
    """For a diag q, ``KL(q || p1 x N) = KL(q1 || p1) + KL(q2 || N)`` and ``1 + chi^2``
    factorizes, so the 2-D minima are exactly (1-D minimum, N(C, S^2))."""
    _, opt = optima(name, "product", "diag")
    ref = dj.optimal_q(name, _p1())
    assert opt.q.loc.shape == (len(ref.value), 2)
    np.testing.assert_allclose(opt.q.loc[:, 0], ref.q.loc, atol=1e-6)
    np.testing.assert_allclose(opt.q.log_scale[:, 0], ref.q.log_scale, atol=1e-6)
    np.testing.assert_allclose(opt.q.loc[:, 1], C, atol=1e-6)
    np.testing.assert_allclose(opt.q.log_scale[:, 1], math.log(S), atol=1e-6)
    np.testing.assert_allclose(opt.value, ref.value, rtol=1e-7, atol=1e-10)


@pytest.mark.slow  # about 40 s for both divergences: two searches and two BFGS runs
@pytest.mark.parametrize("name", ["kl_reverse", "chi2_reverse"])
def test_correlated_minima_are_minima(x64, optima, name):
    p, opt = optima(name, "correlated", "full")
    assert len(opt.value) == 2  # one per well-separated mode
    assert np.all(np.diff(np.asarray(opt.value)) >= 0)
    fun = _value_and_grad(name, p, "full")  # mv_divergence: multivariate's quadrature
    for i in range(len(opt.value)):
        value, grad = fun(_params(_row(opt.q, i)))
        np.testing.assert_allclose(value, opt.value[i], rtol=1e-12)
        scale = 1 + value if name == "chi2_reverse" else 1.0
        assert np.max(np.abs(grad)) / scale < 1e-6
    # BFGS from the global minimum, perturbed, finds nothing lower and comes back.
    x0 = _params(_row(opt.q, 0))
    start = x0 + 0.05 * np.random.default_rng(2).normal(size=x0.size)
    res = optimize.minimize(fun, start, jac=True, method="BFGS", options={"gtol": 1e-8})
    assert res.fun >= float(opt.value[0]) - 1e-10
    np.testing.assert_allclose(res.x, x0, atol=1e-4)


def test_d1_routes_to_1d(x64):
    p1 = _p1()
    p = MvGaussianMixture(p1.weights, p1.locs[:, None], p1.scales[:, None])
    ref = dj.optimal_q("kl_reverse", p1)
    full = mv_optimal_q("kl_reverse", p)
    diag = dj.optimal_q("kl_reverse", p, family="diag")
    assert full.q.chol.shape == (2, 1, 1) and diag.q.log_scale.shape == (2, 1)
    for got in (full.q.loc[:, 0], diag.q.loc[:, 0]):
        np.testing.assert_array_equal(got, ref.q.loc)
    np.testing.assert_array_equal(full.q.chol[:, 0, 0], ref.q.log_scale)
    np.testing.assert_array_equal(diag.q.log_scale[:, 0], ref.q.log_scale)
    np.testing.assert_array_equal(full.value, ref.value)


def test_optimal_q_dispatches(x64):
    p = _random_target(3, np.random.default_rng(3))
    a = dj.optimal_q("kl_forward", p, family="diag")
    b = mv_optimal_q("kl_forward", p, family="diag")
    assert isinstance(a.q, DiagGaussian)
    np.testing.assert_array_equal(a.q.log_scale, b.q.log_scale)


def test_errors():
    p3 = _random_target(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown family 'low_rank'; valid choices: full, diag"):
        mv_optimal_q("kl_forward", p3, family="low_rank")
    with pytest.raises(ValueError, match="unknown family"):
        dj.optimal_q("kl_forward", _p1(), family="low_rank")
    with pytest.raises(ValueError, match="unknown divergence 'kl'"):
        mv_optimal_q("kl", p3)
    for name in ("kl_reverse", "chi2_reverse"):
        with pytest.raises(ValueError, match="needs d <= 2, got d = 3") as err:
            mv_optimal_q(name, p3)
        assert mv.EXACTNESS in str(err.value)
    with pytest.raises(ValueError, match="must be a divjax.MvGaussianMixture, got GaussianMixture"):
        mv_optimal_q("kl_forward", _p1())
    with pytest.raises(ValueError, match="GaussianMixture or MvGaussianMixture, got DiagGaussian"):
        dj.optimal_q("kl_forward", DiagGaussian([0.0], [0.0]))
