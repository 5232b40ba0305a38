"""optimal_q in 1-D and d-D: every local minimum found, each verified, none missed; classify."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import divjax as dj
from divjax.divergences import EXACTNESS
from divjax.optima import classify

MEAN, VAR = 1.5, 6.025  # moment matching of the default target
C, S = 0.5, 0.8  # the second axis of the 2-D product target: N(C, S^2)


def _row(q, i):
    return jax.tree_util.tree_map(lambda a: a[i], q)


def _theta(q):
    """Flat ``(loc, log_scale)`` of a 1-D q, or (loc, log_scale) / (loc, tril(chol)) in d-D."""
    if q.family in ("gaussian", "diag"):
        return np.concatenate([np.atleast_1d(q.loc), np.atleast_1d(q.log_scale)])
    d = q.loc.shape[-1]
    return np.concatenate([np.asarray(q.loc), np.asarray(q.chol)[np.tril_indices(d)]])


def _unflat(x, d, family):
    if family == "gaussian":
        return dj.Gaussian._make((x[0], x[1]))
    if family == "diag":
        return dj.DiagGaussian._make((x[:d], x[d:]))
    chol = jnp.zeros((d, d), x.dtype).at[np.tril_indices(d)].set(x[d:])
    return dj.FullRankGaussian._make((x[:d], chol))


def _value_and_grad(name, p, family):
    """``x -> (D, grad D)`` in the flat parameters of `_theta`, jitted, for scipy."""
    d = 1 if p.event_shape == () else p.dim
    f = jax.jit(jax.value_and_grad(lambda x: dj.divergence(name, p, _unflat(x, d, family))))

    def fun(x):
        v, g = f(jnp.asarray(x))
        return float(v), np.asarray(g)

    return fun


# --- 1-D ------------------------------------------------------------------------------


# The searches cost seconds each (compiles): the KLs run by default, the chi-squares
# and the other targets behind the slow marker.
FAST = ("kl_forward", "kl_reverse")


def test_default_scenario(x64, default_optima):
    opts, _ = default_optima
    fwd, rev = opts["kl_forward"], opts["kl_reverse"]
    assert fwd.q.loc.shape == (1,)
    np.testing.assert_allclose(fwd.q.loc, [MEAN], atol=1e-8)
    np.testing.assert_allclose(fwd.q.variance, [VAR], rtol=1e-8)
    assert rev.q.loc.shape == (2,) and rev.value[0] < rev.value[1]
    # global near N(3, 1), local near N(-2, 0.5^2)
    np.testing.assert_allclose(rev.q.loc, [3.0, -2.0], atol=0.1)
    np.testing.assert_allclose(rev.q.scale, [1.0, 0.5], atol=0.05)


@pytest.mark.slow
def test_default_scenario_chi_squares(x64):
    p = dj.default_target()
    assert dj.optimal_q("chi2_forward", p).q.loc.shape == (1,)  # log-convex: one minimum
    assert dj.optimal_q("chi2_reverse", p).q.loc.shape == (2,)


@functools.partial(jax.jit, static_argnames="names")
def _checks_1d(p, qs, names):
    """Each divergence's exact gradient and Hessian eigenvalues at its batch of q's."""
    out = {}
    for name, q in zip(names, qs):

        def f(t, name=name):
            return dj.divergence(name, p, dj.Gaussian._make((t[0], t[1])))

        def one(q, name=name, f=f):
            theta = jnp.stack([q.loc, q.log_scale])
            return jnp.stack(dj.exact_grad(name, p, q)), jnp.linalg.eigvalsh(jax.hessian(f)(theta))

        out[name] = jax.vmap(one)(q)
    return out


def _verified(names):
    with jax.enable_x64(True):
        p = dj.default_target()
        opts = {n: dj.optimal_q(n, p) for n in names}
        checks = _checks_1d(p, tuple(o.q for o in opts.values()), tuple(names))
    return opts, jax.tree_util.tree_map(np.asarray, checks)


@pytest.fixture(scope="module")
def default_optima():
    """The KLs' optima on the default target and the checks at each (one compile)."""
    return _verified(FAST)


def _check_minima(opt, checks):
    value = np.asarray(opt.value)
    grad, eig = checks
    assert np.all(np.diff(value) >= 0)
    assert np.all(np.linalg.norm(grad, axis=1) < 1e-6 * (1 + value)), grad
    assert np.all(eig > 0), eig


@pytest.mark.parametrize("name", FAST)
def test_minima_are_verified(default_optima, name):
    """Sorted; at each: gradient ~ 0 (hand-derived), positive-definite autodiff Hessian."""
    opts, checks = default_optima
    _check_minima(opts[name], checks[name])


@pytest.mark.slow
def test_chi_square_minima_are_verified():
    names = ("chi2_forward", "chi2_reverse")
    opts, checks = _verified(names)
    for name in names:
        _check_minima(opts[name], checks[name])


MIXTURES = {
    "two_far": ([0.5, 0.5], [-10.0, 10.0], [1.0, 0.3]),
    "three": ([0.2, 0.5, 0.3], [-6.0, 0.0, 7.0], [0.6, 1.0, 0.8]),
    "four": ([1.0, 2.0, 1.5, 0.5], [-12.0, -4.0, 4.0, 12.0], [1.0, 0.7, 1.2, 0.5]),
}


def _grid_local_minima(v, loc, ls):
    """Strict local minima of a grid of values (an independent search)."""
    out = []
    for i in range(1, v.shape[0] - 1):
        for j in range(1, v.shape[1] - 1):
            patch = v[i - 1 : i + 2, j - 1 : j + 2]
            if np.isfinite(v[i, j]) and v[i, j] == patch.min() and (patch == v[i, j]).sum() == 1:
                out.append((loc[i, j], ls[i, j]))
    return out


def _none_missed(name, mixture):
    """Every grid minimum, polished by scipy's BFGS on log(1 + D), must be one of ours."""
    p = dj.GaussianMixture(*(MIXTURES[mixture] if mixture else _shared_p1()))
    opt = dj.optimal_q(name, p)
    m, s = np.asarray(p.locs), np.asarray(p.scales)
    loc, ls = np.meshgrid(
        np.linspace(m.min() - 3, m.max() + 3, 81),
        np.linspace(np.log(s.min()) - 1.0, np.log(1.4 * s.max()), 30),
        indexing="ij",
    )
    qs = dj.Gaussian(jnp.asarray(loc.ravel()), jnp.asarray(ls.ravel()))
    v = np.asarray(dj.path_values(name, p, qs)).reshape(loc.shape)
    grid = _grid_local_minima(v, loc, ls)
    assert grid
    value_and_grad = _value_and_grad(name, p, "gaussian")

    def fun(theta):
        value, grad = value_and_grad(theta)
        if not np.isfinite(value):
            return np.inf, np.zeros(2)
        return np.log1p(value), grad / (1 + value)

    found = np.stack([np.asarray(opt.q.loc), np.asarray(opt.q.log_scale)], axis=1)
    for start in grid:
        res = optimize.minimize(
            fun, np.asarray(start), jac=True, method="BFGS", options={"gtol": 1e-9}
        )
        assert np.abs(found - res.x).max(axis=1).min() < 1e-3, (start, res.x, found)
    assert len(found) == len(m)  # well-separated modes: one minimum per mode


def _shared_p1():
    return ([0.3, 0.7], [-2.0, 3.0], [0.5, 1.0])


def test_none_missed_against_grid_search(x64):
    _none_missed("kl_reverse", None)  # the default target: its search is shared


@pytest.mark.slow
@pytest.mark.parametrize("mixture", sorted(MIXTURES))
@pytest.mark.parametrize("name", ["kl_reverse", "chi2_reverse"])
def test_none_missed_against_grid_search_every_mixture(x64, mixture, name):
    _none_missed(name, mixture)


@pytest.mark.slow
def test_alpha_divergence_optima_are_verified(x64):
    """An order of each kind: sorted, gradient ~ 0 and a positive-definite Hessian at each."""
    p = dj.default_target()
    for name, alpha in [("renyi_reverse", 0.5), ("amari", 1.7), ("hellinger", None)]:
        opt = dj.optimal_q(name, p, alpha=alpha)
        assert np.all(np.diff(np.asarray(opt.value)) >= 0)
        for i in range(len(opt.value)):
            q = _row(opt.q, i)
            g = np.asarray(jnp.stack(dj.exact_grad(name, p, q, alpha=alpha)))
            assert np.linalg.norm(g) < 1e-6 * (1 + float(opt.value[i])), (name, g)


def test_fixed_log_scale_minimizes_over_the_location_only(x64):
    """With sigma held, KL(p || q) is minimized at mu = E_p[x]."""
    p = dj.default_target()
    opt = dj.optimal_q("kl_forward", p, fixed_log_scale=0.3)
    np.testing.assert_allclose(opt.q.loc, [MEAN], rtol=1e-10)
    np.testing.assert_allclose(opt.q.log_scale, [0.3])


@pytest.mark.slow
def test_fixed_log_scale_reverse_kl(x64):
    p = dj.default_target()
    rev = dj.optimal_q("kl_reverse", p, fixed_log_scale=0.0)
    g = np.asarray(
        [dj.exact_grad("kl_reverse", p, _row(rev.q, i)).loc for i in range(len(rev.value))]
    )
    assert np.all(np.abs(g) < 1e-6) and np.all(np.asarray(rev.q.log_scale) == 0.0)


@pytest.mark.slow
def test_float32_default_scenario():
    rev = dj.optimal_q("kl_reverse", dj.default_target())
    assert rev.q.loc.dtype == jnp.float32 and rev.q.loc.shape == (2,)
    np.testing.assert_allclose(rev.q.loc, [3.0, -2.0], atol=0.1)


def test_classify():
    opt = dj.Optima(dj.Gaussian(jnp.array([3.0, -2.0]), jnp.log(jnp.array([1.0, 0.5]))), None)
    qs = dj.Gaussian(jnp.array([3.1, -2.05, 0.0, 3.0]), jnp.log(jnp.array([1.1, 0.5, 1.0, 2.0])))
    np.testing.assert_array_equal(classify(qs, opt), [0, 1, -1, -1])
    np.testing.assert_array_equal(classify(qs, None), [-1] * 4)
    assert int(classify(dj.Gaussian(-2.0, math.log(0.5)), opt)) == 1


# --- d-D ------------------------------------------------------------------------------


def _random_target(d, rng):
    a = rng.normal(size=(3, d, d))
    covs = a @ np.swapaxes(a, -1, -2) / d + 0.3 * np.eye(d)
    return dj.GaussianMixture(rng.uniform(0.5, 2.0, 3), rng.normal(0, 2, (3, d)), covs=covs)


def _moments(p):
    """Mean and covariance from the mixture's parameters, in numpy."""
    w = np.asarray(p.probs)
    m, a = (np.asarray(v) for v in p.mvn())
    mean = w @ m
    diff = m - mean
    cov = np.einsum("k,kij->ij", w, a @ np.swapaxes(a, -1, -2) + diff[:, :, None] * diff[:, None])
    return mean, cov


def _product():
    """``p(x1, x2) = p1(x1) N(x2; C, S^2)`` with p1 the default target."""
    p1 = dj.default_target()
    locs = jnp.stack([p1.locs, jnp.full(2, C)], 1)
    return dj.GaussianMixture(p1.weights, locs, jnp.stack([p1.scales, jnp.full(2, S)], 1))


@pytest.mark.parametrize(
    ("d", "family"), [(3, "full"), pytest.param(5, "diag", marks=pytest.mark.slow)]
)
def test_kl_forward_is_moment_matching(x64, d, family):
    p = _random_target(d, np.random.default_rng(d))
    opt = dj.optimal_q("kl_forward", p, family=family)
    mean, cov = _moments(p)
    q = _row(opt.q, 0)
    assert opt.value.shape == (1,) and q.loc.shape == (d,) and q.family == family
    np.testing.assert_allclose(q.loc, mean, rtol=1e-12, atol=1e-12)
    want = cov if family == "full" else np.diag(np.diag(cov))
    np.testing.assert_allclose(q.covariance(), want, rtol=1e-10, atol=1e-12)
    for g in dj.exact_grad("kl_forward", p, q):
        assert np.max(np.abs(np.asarray(g))) < 1e-10
    # In d > 2 the value is the cross-entropy -E_p[log q] = (d log 2 pi + log det S + d) / 2.
    logdet = np.linalg.slogdet(want)[1]
    np.testing.assert_allclose(opt.value[0], 0.5 * (d * math.log(2 * math.pi) + logdet + d))


@pytest.mark.slow
@pytest.mark.parametrize(("d", "family"), [(2, "full"), (3, "diag")])
def test_chi2_forward_minimum(x64, d, family):
    p = _random_target(d, np.random.default_rng(10 + d))
    opt = dj.optimal_q("chi2_forward", p, family=family)
    assert opt.value.shape == (1,)  # log-convex: one minimum
    value = float(opt.value[0])
    fun = _value_and_grad("chi2_forward", p, family)
    x0 = _theta(_row(opt.q, 0))
    v0, g0 = fun(x0)
    np.testing.assert_allclose(v0, value, rtol=1e-12)
    assert np.max(np.abs(g0)) / (1 + value) < 1e-6  # the gradient of log(1 + chi^2)
    # No random nearby point is lower.
    f = jax.jit(jax.vmap(lambda x: dj.divergence("chi2_forward", p, _unflat(x, d, family))))
    for size in (1e-4, 1e-2, 1e-1):
        steps = size * np.random.default_rng(0).normal(size=(200, x0.size))
        assert np.min(np.asarray(f(jnp.asarray(x0 + steps)))) >= value
    # An independent optimizer (BFGS on chi^2 itself) from a perturbed start comes back.
    start = x0 + 0.05 * np.random.default_rng(1).normal(size=x0.size)
    res = optimize.minimize(fun, start, jac=True, method="BFGS", options={"gtol": 1e-10})
    assert res.fun >= value - 1e-12
    np.testing.assert_allclose(res.x, x0, atol=1e-5)


@pytest.mark.slow  # a 2-D quadrature search: about 20 s for kl_reverse, minutes for chi2_reverse
@pytest.mark.parametrize("name", ["kl_reverse", "chi2_reverse"])
def test_2d_product_target_matches_1d(x64, name):
    """For a diag q, ``KL(q || p1 x N) = KL(q1 || p1) + KL(q2 || N)`` and ``1 + chi^2``
    factorizes, so the 2-D minima are exactly (1-D minimum, N(C, S^2))."""
    opt = dj.optimal_q(name, _product(), family="diag")
    ref = dj.optimal_q(name, dj.default_target())
    assert opt.q.loc.shape == (len(ref.value), 2)
    np.testing.assert_allclose(opt.q.loc[:, 0], ref.q.loc, atol=1e-6)
    np.testing.assert_allclose(opt.q.log_scale[:, 0], ref.q.log_scale, atol=1e-6)
    np.testing.assert_allclose(opt.q.loc[:, 1], C, atol=1e-6)
    np.testing.assert_allclose(opt.q.log_scale[:, 1], math.log(S), atol=1e-6)
    np.testing.assert_allclose(opt.value, ref.value, rtol=1e-7, atol=1e-10)


@pytest.mark.slow  # two full-rank searches and two BFGS runs on the 2-D quadrature
@pytest.mark.parametrize("name", ["kl_reverse", "chi2_reverse"])
def test_correlated_minima_are_minima(x64, name):
    p = dj.GaussianMixture(
        [0.4, 0.6],
        [[-3.0, -1.0], [2.5, 2.0]],
        covs=[[[1.0, 0.6], [0.6, 0.8]], [[0.7, -0.3], [-0.3, 1.1]]],
    )
    opt = dj.optimal_q(name, p, family="full")
    assert len(opt.value) == 2  # one per well-separated mode
    assert np.all(np.diff(np.asarray(opt.value)) >= 0)
    fun = _value_and_grad(name, p, "full")
    for i in range(len(opt.value)):
        value, grad = fun(_theta(_row(opt.q, i)))
        np.testing.assert_allclose(value, opt.value[i], rtol=1e-12)
        assert np.max(np.abs(grad)) / (1 + value if name == "chi2_reverse" else 1.0) < 1e-6
    x0 = _theta(_row(opt.q, 0))
    start = x0 + 0.05 * np.random.default_rng(2).normal(size=x0.size)
    res = optimize.minimize(fun, start, jac=True, method="BFGS", options={"gtol": 1e-8})
    assert res.fun >= float(opt.value[0]) - 1e-10
    np.testing.assert_allclose(res.x, x0, atol=1e-4)


@pytest.mark.slow
def test_d1_mixture_gives_the_1d_optima(x64):
    """A target with (M, 1) locs: the same minima as the 1-D one, in the d-dim families."""
    p1 = dj.default_target()
    p = dj.GaussianMixture(p1.weights, p1.locs[:, None], p1.scales[:, None])
    ref = dj.optimal_q("kl_reverse", p1)
    full = dj.optimal_q("kl_reverse", p)
    diag = dj.optimal_q("kl_reverse", p, family="diag")
    assert full.q.chol.shape == (2, 1, 1) and diag.q.log_scale.shape == (2, 1)
    for got in (full.q.loc[:, 0], diag.q.loc[:, 0]):
        np.testing.assert_allclose(got, ref.q.loc, atol=1e-8)
    np.testing.assert_allclose(full.q.chol[:, 0, 0], ref.q.log_scale, atol=1e-8)
    np.testing.assert_allclose(diag.q.log_scale[:, 0], ref.q.log_scale, atol=1e-8)
    np.testing.assert_allclose(full.value, ref.value, rtol=1e-8)


def test_results_are_cached_per_target(x64):
    p = _random_target(3, np.random.default_rng(3))  # the search of test_kl_forward's d = 3
    a = dj.optimal_q("kl_forward", p, family="full")
    assert dj.optimal_q("kl_forward", p, family="full") is a
    assert isinstance(a.q, dj.FullRankGaussian)


def test_errors():
    p3 = _random_target(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown family 'low_rank'; valid choices: full, diag"):
        dj.optimal_q("kl_forward", p3, family="low_rank")
    with pytest.raises(ValueError, match="unknown divergence 'kl'"):
        dj.optimal_q("kl", p3)
    with pytest.raises(ValueError, match="valid choices"):
        dj.optimal_q("kl", dj.default_target())
    for name in ("kl_reverse", "chi2_reverse"):
        with pytest.raises(ValueError, match="not exact in d = 3") as err:
            dj.optimal_q(name, p3)
        assert EXACTNESS in str(err.value)
    with pytest.raises(ValueError, match="GaussianMixture target, got DiagGaussian"):
        dj.optimal_q("kl_forward", dj.DiagGaussian([0.0], [0.0]))
    with pytest.raises(ValueError, match="GaussianMixture target, got LogDensity"):
        dj.optimal_q("kl_forward", dj.LogDensity(lambda x: -0.5 * x**2))
    with pytest.raises(ValueError, match="fixed_log_scale is for a 1-D target"):
        dj.optimal_q("kl_forward", p3, fixed_log_scale=0.0)
