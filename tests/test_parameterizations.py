"""Parameterizations: round trips, Fisher information, domains, landscapes and convexity."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import divjax as dj
from divjax.fit import OUT_OF_DOMAIN
from divjax.parameterizations import (
    PARAMETERIZATIONS,
    convert,
    get_parameterization,
    grad_in,
    hessian_eigenvalues,
    landscape_grid,
)

NAMES = tuple(PARAMETERIZATIONS)
QS = dict(loc=[0.3, -4.0, 2.5, 0.0], log_scale=[0.1, -1.5, 1.2, 0.0])
# One point outside each domain (None: the domain is everything).
OUTSIDE = {
    "mu_log_sigma": None,
    "mu_sigma": [0.0, -1.0],
    "mu_tau": [0.0, 0.0],
    "natural": [1.0, 0.5],
    "expectation": [2.0, 3.0],
}


def _qs(dtype=jnp.float64):
    return dj.Gaussian._make(tuple(jnp.asarray(QS[k], dtype) for k in ("loc", "log_scale")))


@pytest.mark.parametrize("a,b", list(itertools.product(NAMES, NAMES)))
def test_round_trip_every_pair(x64, a, b):
    qs = _qs()
    theta_a = PARAMETERIZATIONS[a].from_gaussian(qs)
    assert theta_a.shape == (4, 2)
    theta_b = convert(theta_a, a, b)
    np.testing.assert_allclose(theta_b, PARAMETERIZATIONS[b].from_gaussian(qs), rtol=1e-12)
    np.testing.assert_allclose(convert(theta_b, b, a), theta_a, rtol=1e-12, atol=1e-14)
    q = PARAMETERIZATIONS[b].to_gaussian(theta_b)
    np.testing.assert_allclose(q.loc, qs.loc, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(q.log_scale, qs.log_scale, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_float32_and_single_q(name):
    param = PARAMETERIZATIONS[name]
    q = dj.Gaussian._make((jnp.float32(0.7), jnp.float32(-0.4)))
    theta = param.from_gaussian(q)
    assert theta.shape == (2,) and theta.dtype == jnp.float32
    back = jax.jit(param.to_gaussian)(theta)
    assert back.loc.dtype == jnp.float32
    np.testing.assert_allclose([back.loc, back.log_scale], [0.7, -0.4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_fisher_is_hessian_of_expected_nll(x64, name):
    """F(theta0) = hessian of E_{q_theta0}[-log q_theta] at theta0 (closed-form cross-entropy)."""
    param = PARAMETERIZATIONS[name]
    for loc, log_scale in zip(QS["loc"], QS["log_scale"]):
        q0 = dj.Gaussian(loc, log_scale)
        theta0 = param.from_gaussian(q0)

        def cross_entropy(theta, q0=q0):
            q = param.to_gaussian(theta)
            return q.log_scale + 0.5 * (q0.variance + (q0.loc - q.loc) ** 2) / q.variance

        expected = jax.hessian(cross_entropy)(theta0)
        np.testing.assert_allclose(param.fisher(theta0), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_fisher_is_score_covariance_monte_carlo(x64, name):
    """F = E_q[s s^T] with s = grad_theta log q_theta(x), within 5 standard errors."""
    param = PARAMETERIZATIONS[name]
    q0 = dj.Gaussian(0.8, -0.3)
    theta0 = param.from_gaussian(q0)
    x = q0.sample(jax.random.key(3), 200_000)
    score = jax.vmap(jax.grad(lambda t, xi: param.to_gaussian(t).log_prob(xi)), (None, 0))
    s = np.asarray(score(theta0, x))
    outer = s[:, :, None] * s[:, None, :]
    mean, stderr = outer.mean(0), outer.std(0, ddof=1) / np.sqrt(len(x))
    assert np.all(np.abs(mean - np.asarray(param.fisher(theta0))) < 5 * stderr)


@pytest.mark.parametrize("name", NAMES)
def test_domain_rule(x64, name):
    param = PARAMETERIZATIONS[name]
    inside = param.from_gaussian(dj.Gaussian(0.5, 0.2))
    assert bool(param.in_domain(inside))
    if OUTSIDE[name] is None:
        assert bool(param.in_domain(jnp.array([1e3, -1e3])))
        return
    outside = jnp.asarray(OUTSIDE[name])
    assert not bool(param.in_domain(outside))
    q = param.to_gaussian(outside)
    assert np.isnan(q.loc) and np.isnan(q.log_scale)
    # Inside, the guard leaves gradients through the map finite.
    p = dj.default_target()
    g = jax.grad(lambda t: dj.divergence("chi2_forward", p, param.to_gaussian(t)))
    assert np.all(np.isfinite(jax.jit(g)(inside)))


def test_unknown_parameterization_names_the_choices():
    with pytest.raises(ValueError, match="parameterization 'polar'.*mu_tau.*expectation"):
        get_parameterization("polar")
    with pytest.raises(ValueError, match="parameterization 'polar'.*natural"):
        dj.fit(dj.default_target(), dj.default_q0(), "kl_forward", parameterization="polar")


def test_grad_in_matches_grad_through_the_map(x64):
    p = dj.default_target()
    qs = dj.Gaussian(jnp.array([0.3, 1.5]), jnp.array([0.2, 0.6]))
    exact = jax.jit(jax.vmap(lambda q: dj.exact_grad("chi2_forward", p, q)))(qs)

    @jax.jit
    def direct(qs):
        out = []
        for param in PARAMETERIZATIONS.values():
            f = lambda t, param=param: dj.divergence("chi2_forward", p, param.to_gaussian(t))  # noqa: E731
            out.append(jax.vmap(jax.grad(f))(param.from_gaussian(qs)))
        return out

    narrow = dj.Gaussian(0.0, -2.0)  # chi2_forward is infinite there: no gradient anywhere
    inf_grad = dj.exact_grad("chi2_forward", p, narrow)
    for name, expected in zip(NAMES, direct(qs)):
        np.testing.assert_allclose(grad_in(name, exact, qs), expected, rtol=1e-7, atol=1e-10)
        assert np.all(np.isposinf(grad_in(name, inf_grad, narrow))), name


def test_landscape_grid(x64):
    p = dj.default_target()
    t1, t2, v = landscape_grid("chi2_forward", p, "natural", (-1.0, 1.0), (-2.9, 0.6), 8)
    assert t1.shape == t2.shape == v.shape == (8, 8)
    eta2 = np.asarray(t2)
    assert np.all(np.isnan(v[eta2 >= 0]))  # outside the domain
    assert np.all(np.isposinf(v[(eta2 < 0) & (eta2 <= -1.0)]))  # sigma^2 <= s_max^2 / 2
    finite = (eta2 < 0) & (eta2 > -1.0)
    assert finite.any() and np.all(np.isfinite(v[finite]))
    i, j = np.argwhere(finite)[0]
    q = PARAMETERIZATIONS["natural"].to_gaussian(jnp.array([t1[i, j], t2[i, j]]))
    np.testing.assert_allclose(v[i, j], dj.divergence("chi2_forward", p, q), rtol=1e-12)
    with pytest.raises(ValueError, match="num"):
        landscape_grid("kl_forward", p, "natural", (0, 1), (-1, -0.1), 1)


def _grid(lo, hi, num=7):
    loc, scale = np.meshgrid(np.linspace(-6.0, 7.0, num), np.geomspace(lo, hi, num))
    return dj.Gaussian(jnp.asarray(loc.ravel()), jnp.asarray(np.log(scale.ravel())))


def _min_rel_eig(name, qs, params, log=False):
    """min over the grid of smallest / largest |eigenvalue|, per parameterization; one compile."""
    p = dj.default_target()
    ev = jax.jit(lambda q: [hessian_eigenvalues(name, p, n, q, log=log) for n in params])(qs)
    out = {}
    for n, e in zip(params, ev):
        e = np.asarray(e)
        assert np.all(np.isfinite(e)), n
        out[n] = np.min(e[:, 0] / np.max(np.abs(e), axis=1))
    return out


OTHERS = ("mu_log_sigma", "mu_sigma", "mu_tau", "expectation")


def test_forward_kl_convex_in_natural_only(x64):
    rel = _min_rel_eig("kl_forward", _grid(0.2, 6.0), NAMES)
    assert rel["natural"] > 0
    assert all(rel[n] < -1e-3 for n in OTHERS), rel


def test_forward_kl_counterexample_in_mu_log_sigma_is_the_closed_form_one(x64):
    # Hessian of log sigma + (v + (m - mu)^2) / (2 sigma^2) in (mu, log sigma) has
    # determinant 2 (v - (m - mu)^2) / sigma^4: indefinite iff |mu - m| > sqrt(v).
    p = dj.default_target()
    m, sd = float(p.mean()), float(jnp.sqrt(p.variance()))
    qs = dj.Gaussian(jnp.array([m, m + 0.9 * sd, m + 1.1 * sd]), jnp.zeros(3))
    ev = np.asarray(hessian_eigenvalues("kl_forward", p, "mu_log_sigma", qs))
    assert np.all(ev[:2, 0] > 0) and ev[2, 0] < 0


def test_forward_chi2_log_convex_in_natural_only(x64):
    # sigma^2 > s_max^2 / 2: finite. Log-convex implies convex, so log(1 + chi^2) suffices.
    rel = _min_rel_eig("chi2_forward", _grid(0.75, 6.0), NAMES, log=True)
    assert rel["natural"] > 0
    assert all(rel[n] < -1e-3 for n in OTHERS), rel


def test_reverse_chi2_nonconvex_in_natural(x64):
    qs = _grid(0.2, 1.35)  # sigma^2 < 2 s_max^2: finite
    assert _min_rel_eig("chi2_reverse", qs, ("natural",))["natural"] < -1e-3
    assert _min_rel_eig("chi2_reverse", qs, ("natural",), log=True)["natural"] < -1e-3


# ---------------------------------------------------------------------------
# Fits in every parameterization

# (learning rate, momentum) per parameterization: the stable step size depends on the coordinates.
SGD = {
    "mu_log_sigma": (0.05, 0.9),
    "mu_sigma": (0.05, 0.9),
    "mu_tau": (0.05, None),
    "natural": (0.005, 0.9),
    "expectation": (0.05, 0.9),
}
# Forward KL optimum: moment matching, mean 1.5, variance 0.3 / 4 + 0.7 + 0.21 * 25 = 6.025.
MOMENT_MATCH = dj.Optima(dj.Gaussian(jnp.array([1.5]), jnp.array([0.5 * np.log(6.025)])), None)


def test_exact_fit_same_optimum_different_trajectories(x64):
    p, q0 = dj.default_target(), dj.Gaussian.from_loc_scale(-1.0, 1.5)
    paths = {}
    for name, (lr, momentum) in SGD.items():
        res = dj.fit(
            p,
            q0,
            "kl_forward",
            parameterization=name,
            num_steps=3000,
            trace_value=False,
            optimizer=optax.sgd(lr, momentum=momentum),
            optima=MOMENT_MATCH,
        )
        assert int(res.status.optimum) == 0, (name, res.status.describe())
        np.testing.assert_allclose(res.q.loc, 1.5, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(res.q.variance, 6.025, rtol=1e-5, err_msg=name)
        paths[name] = np.stack([res.trace.q.loc[:20], res.trace.q.log_scale[:20]], axis=-1)
    for a, b in itertools.combinations(paths, 2):
        assert np.max(np.abs(paths[a] - paths[b])) > 0.05, (a, b)


def test_step_leaving_the_domain_is_reported(x64):
    p, q0 = dj.default_target(), dj.default_q0()
    res = dj.fit(
        p,
        q0,
        "kl_forward",
        parameterization="natural",
        learning_rate=0.05,
        num_steps=5,
        optima=MOMENT_MATCH,
    )
    assert int(res.status.diverged_at) == 0
    assert int(res.status.reason) == OUT_OF_DOMAIN
    assert "domain" in res.status.describe()
    np.testing.assert_allclose(res.q.loc, q0.loc)
    np.testing.assert_allclose(res.q.log_scale, q0.log_scale)


@pytest.mark.parametrize("coords", ["natural", "mu_tau"])
def test_grad_stats_in_other_coordinates(coords):
    """grad_stats(parameterization=): draws mapped before the statistics; unbiasedness kept."""
    p = dj.default_target()
    q = dj.Gaussian.from_loc_scale(1.0, 1.2)
    stats = dj.grad_stats(
        "kl_reverse", "reparam", p, q, 16, 4000, jax.random.key(7), parameterization=coords
    )
    expected = dj.grad_in(coords, dj.exact_grad("kl_reverse", p, q), q)
    np.testing.assert_allclose(np.asarray(stats.exact), np.asarray(expected), rtol=1e-5)
    for m, e, se in zip(stats.mean, stats.exact, stats.stderr):
        assert abs(float(m) - float(e)) < 5 * float(se)
    base = dj.grad_stats("kl_reverse", "reparam", p, q, 16, 4000, jax.random.key(7))
    assert not np.allclose(np.asarray(stats.variance), np.asarray(base.variance))
