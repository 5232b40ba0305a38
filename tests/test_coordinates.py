"""The 1-D Gaussian's five coordinate systems, and the natural gradient, clipping and fixed scale.

Maps and Fisher informations against autodiff and Monte Carlo; the natural
gradient as one tangent vector in every coordinate system (exact gradients
from `tests._shared`, Monte Carlo draws); the two exact facts of the forward
KL (Newton in natural coordinates, moment matching in one step in expectation
coordinates); and the optax transformations inside `divjax.fit`.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import divjax as dj
from divjax import status
from divjax.coordinates import (
    PARAMETERIZATIONS,
    convert,
    get_parameterization,
    grad_in,
    mu_log_sigma,
)
from divjax.gradcheck import default_qs
from divjax.natural import hold_scale, natural_direction, natural_gradient, wrap_optimizer
from tests import _shared

NAMES = tuple(PARAMETERIZATIONS)
KEY = jax.random.key(11)
QS = dict(loc=[0.3, -4.0, 2.5, 0.0], log_scale=[0.1, -1.5, 1.2, 0.0])
# One point outside each domain (None: the domain is everything).
OUTSIDE = {
    "mu_log_sigma": None,
    "mu_sigma": [0.0, -1.0],
    "mu_tau": [0.0, 0.0],
    "natural": [1.0, 0.5],
    "expectation": [2.0, 3.0],
}
# Forward KL optimum for the default target: mean 1.5, variance 6.025 (moment matching).
MEAN, VAR = 1.5, 6.025
MOMENT_MATCH = dj.Optima(dj.Gaussian(jnp.array([MEAN]), jnp.array([0.5 * np.log(VAR)])), None)


def _qs():
    return dj.Gaussian(jnp.asarray(QS["loc"]), jnp.asarray(QS["log_scale"]))


# --- maps, domains, Fisher information ------------------------------------------------


def test_round_trip_every_pair(x64):
    qs = _qs()
    for a, b in itertools.product(NAMES, NAMES):
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


@jax.jit
def _fisher_checks(qs, x):
    """Per coordinate system: the closed-form Fisher, the Hessian of the expected NLL and
    the Monte Carlo score covariance at ``N(0.8, e^-0.6)`` from draws ``x``."""
    out = {}
    for name, param in PARAMETERIZATIONS.items():

        def hess(q0, param=param):
            def cross_entropy(theta):
                q = param.to_gaussian(theta)
                return q.log_scale + 0.5 * (q0.variance + (q0.loc - q.loc) ** 2) / q.variance

            theta0 = param.from_gaussian(q0)
            return param.fisher(theta0), jax.hessian(cross_entropy)(theta0)

        theta0 = param.from_gaussian(dj.Gaussian(0.8, -0.3))
        score = jax.vmap(
            jax.grad(lambda t, xi, param=param: param.to_gaussian(t).log_prob(xi)), (None, 0)
        )
        out[name] = (*jax.vmap(hess)(qs), param.fisher(theta0), score(theta0, x))
    return out


@pytest.fixture(scope="module")
def fisher():
    with jax.enable_x64(True):
        x = dj.Gaussian(0.8, -0.3).sample(jax.random.key(3), 200_000)
        return jax.tree_util.tree_map(np.asarray, _fisher_checks(_qs(), x))


@pytest.mark.parametrize("name", NAMES)
def test_fisher_is_hessian_of_expected_nll(fisher, name):
    """F(theta0) = hessian of E_{q_theta0}[-log q_theta] at theta0 (closed-form cross-entropy)."""
    closed, hessian, _, _ = fisher[name]
    np.testing.assert_allclose(closed, hessian, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_fisher_is_score_covariance_monte_carlo(fisher, name):
    """F = E_q[s s^T] with s = grad_theta log q_theta(x), within 5 standard errors."""
    _, _, closed, s = fisher[name]
    outer = s[:, :, None] * s[:, None, :]
    mean, stderr = outer.mean(0), outer.std(0, ddof=1) / np.sqrt(len(s))
    assert np.all(np.abs(mean - closed) < 5 * stderr)


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
    g = jax.grad(lambda t: jnp.sum(param.to_gaussian(t).log_prob(jnp.array([0.1, 2.0]))))(inside)
    assert np.all(np.isfinite(g))


def test_unknown_parameterization_names_the_choices():
    with pytest.raises(ValueError, match="parameterization 'polar'.*mu_tau.*expectation"):
        get_parameterization("polar")
    with pytest.raises(ValueError, match="parameterization 'polar'.*natural"):
        dj.fit(dj.default_target(), dj.default_q0(), "kl_forward", parameterization="polar")
    assert get_parameterization(PARAMETERIZATIONS["natural"]) is PARAMETERIZATIONS["natural"]


def test_grad_in_matches_grad_through_the_map(x64):
    p = dj.default_target()
    pairs = ((1.0, 1.2), (3.0, 1.0))
    qs = _shared.gaussians(pairs)
    exact = _shared.exact_default(pairs, ("main",))["chi2_forward:None"]["exact"]  # (2, 2)
    grad = dj.Gaussian._make((jnp.asarray(exact[:, 0]), jnp.asarray(exact[:, 1])))

    @jax.jit
    def direct(qs):
        out = []
        for param in PARAMETERIZATIONS.values():
            f = lambda t, param=param: dj.divergence("chi2_forward", p, param.to_gaussian(t))  # noqa: E731
            out.append(jax.vmap(jax.grad(f))(param.from_gaussian(qs)))
        return out

    for name, expected in zip(NAMES, direct(qs)):
        np.testing.assert_allclose(grad_in(name, grad, qs), expected, rtol=1e-7, atol=1e-10)
        # chi2_forward infinite (sigma^2 <= s_max^2 / 2): no gradient in any coordinates
        inf_grad = dj.Gaussian._make((jnp.inf, jnp.inf))
        assert np.all(np.isposinf(grad_in(name, inf_grad, dj.Gaussian(0.0, -2.0)))), name


# --- the natural gradient: one tangent vector in every coordinate system ----------------


@jax.jit
def _tangents(grad: dj.Gaussian, q: dj.Gaussian) -> jax.Array:
    """The natural gradient in every parameterization, pushed forward to (loc, log_scale).

    ``grad`` (a (loc, log_scale) gradient, leaves ``(n,)``) goes into each
    parameterization's coordinates by `grad_in`, the `natural_gradient`
    transformation preconditions it there, and ``jax.jvp`` of the map back to
    (loc, log_scale) pushes the direction forward. Returns ``(n, len(NAMES), 2)``.
    """

    def one(g, q):
        rows = []
        for param in PARAMETERIZATIONS.values():
            theta = param.from_gaussian(q)
            tx = natural_gradient(param)
            direction, _ = tx.update(grad_in(param, g, q), tx.init(theta), theta)
            to_mls = lambda t, param=param: mu_log_sigma.from_gaussian(param.to_gaussian(t))  # noqa: E731
            rows.append(jax.jvp(to_mls, (theta,), (direction,))[1])
        return jnp.stack(rows)

    return jax.vmap(one)(grad, q)


def _assert_same_direction(out):
    """``out``: (..., len(NAMES), 2); every row equal to the (mu, log sigma) one."""
    ref = out[..., :1, :]
    scale = np.max(np.abs(ref), axis=-1, keepdims=True)
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out - ref) / scale) < 1e-9


@pytest.mark.parametrize("name", dj.DIVERGENCES)
def test_natural_gradient_is_the_same_direction_in_every_parameterization(x64, name):
    """On gradcheck's grid of q's (where finite), every parameterization agrees, and in
    (mu, log sigma), where the Fisher is diag(1 / sigma^2, 2), the natural gradient is
    (sigma^2 g_mu, g_log_sigma / 2) with g the hand-derived exact gradient."""
    qs = default_qs(dj.default_target())
    pairs = tuple(zip(np.asarray(qs.loc).tolist(), np.exp(np.asarray(qs.log_scale)).tolist()))
    ref = _shared.exact_default(pairs, ("main",))[f"{name}:None"]
    finite = ~ref["infinite"]
    qs = jax.tree_util.tree_map(lambda a: a[finite], qs)
    auto, exact = ref["auto"][finite], ref["exact"][finite]
    out = np.asarray(
        _tangents(dj.Gaussian._make((jnp.asarray(auto[:, 0]), jnp.asarray(auto[:, 1]))), qs)
    )
    _assert_same_direction(out)
    expected = np.stack([exact[:, 0] * np.asarray(qs.variance), 0.5 * exact[:, 1]], axis=-1)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)


def test_natural_gradient_invariant_for_monte_carlo_estimators(x64):
    """Estimators' draws of every kind, preconditioned in every parameterization: one tangent."""
    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.1)
    combos = [("kl_forward", "snis"), ("kl_reverse", "reparam"), ("chi2_reverse", "score")]

    @jax.jit
    def draws(q):
        gs = [jax.grad(dj.surrogate(n, e, p, 16), has_aux=True)(q, KEY)[0] for n, e in combos]
        return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *gs)

    g = draws(q)
    qs = jax.tree_util.tree_map(lambda a: jnp.full(len(combos), a), q)
    _assert_same_direction(np.asarray(_tangents(g, qs)))


def test_update_without_params_and_bad_arguments_raise():
    tx = natural_gradient("natural")
    theta = jnp.array([0.1, -0.5])
    with pytest.raises(ValueError, match="params"):
        tx.update(theta, tx.init(theta))
    with pytest.raises(ValueError, match="damping"):
        natural_gradient("natural", damping=-1.0)
    with pytest.raises(ValueError, match="parameterization 'polar'"):
        natural_gradient("polar")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        natural_direction("natural", jnp.zeros(3), jnp.zeros(3))


def test_damping_and_batched_theta(x64):
    theta = jnp.array([[0.1, -0.5], [1.0, -2.0]])
    g = jnp.array([[1.0, 2.0], [-0.5, 0.3]])
    out = natural_direction("natural", theta, g, damping=0.5)
    for t, gi, o in zip(theta, g, out):
        f = PARAMETERIZATIONS["natural"].fisher(t) + 0.5 * jnp.eye(2)
        np.testing.assert_allclose(o, np.linalg.solve(f, gi), rtol=1e-12)


def test_expectation_coordinates_one_step_is_moment_matching(x64):
    p, q0 = dj.default_target(), dj.default_q0()
    e_p = jnp.array([MEAN, VAR + MEAN**2])  # E_p[T], T(x) = (x, x^2)
    exp_, nat = PARAMETERIZATIONS["expectation"], PARAMETERIZATIONS["natural"]

    @jax.jit
    def directions(m, eta):
        def kl(param):
            return lambda t: dj.divergence("kl_forward", p, param.to_gaussian(t))

        return natural_direction(exp_, m, jax.grad(kl(exp_))(m)), jax.grad(kl(nat))(eta)

    m = exp_.from_gaussian(q0)
    direction, grad_eta = directions(m, nat.from_gaussian(q0))
    # The natural gradient in expectation coordinates = the ordinary gradient in natural
    # ones = E_q[T] - E_p[T].
    np.testing.assert_allclose(direction, m - e_p, rtol=1e-12)
    np.testing.assert_allclose(grad_eta, m - e_p, rtol=1e-12)
    res = dj.fit(
        p, q0, "kl_forward", parameterization="expectation", natural_gradient=True,
        optimizer=optax.sgd(1.0), num_steps=1, optima=MOMENT_MATCH,
    )  # fmt: skip
    np.testing.assert_allclose(res.q.loc, MEAN, rtol=1e-13)
    np.testing.assert_allclose(res.q.variance, VAR, rtol=1e-13)


def test_natural_coordinates_natural_gradient_is_newton(x64):
    p, nat = dj.default_target(), PARAMETERIZATIONS["natural"]

    @jax.jit
    def both(eta):
        kl = lambda t: dj.divergence("kl_forward", p, nat.to_gaussian(t))  # noqa: E731
        g = jax.grad(kl)(eta)
        return natural_direction(nat, eta, g), jnp.linalg.solve(jax.hessian(kl)(eta), g)

    for q in (dj.default_q0(), dj.Gaussian.from_loc_scale(-1.0, 0.7)):
        natural, newton = both(nat.from_gaussian(q))
        np.testing.assert_allclose(natural, newton, rtol=1e-10)
    # Natural-gradient descent (lr 1) in natural coordinates: quadratic convergence.
    res = dj.fit(
        p, dj.default_q0(), "kl_forward", parameterization="natural", natural_gradient=True,
        optimizer=optax.sgd(1.0), num_steps=8, trace_value=False, optima=MOMENT_MATCH,
    )  # fmt: skip
    eta_star = nat.from_gaussian(dj.Gaussian.from_loc_variance(MEAN, VAR))
    eta = np.concatenate([nat.from_gaussian(dj.default_q0())[None], nat.from_gaussian(res.trace.q)])
    err = np.linalg.norm(eta - eta_star, axis=-1)
    assert err[-1] < 1e-12
    close = (err[:-1] < 0.05) & (err[:-1] > 1e-6)  # once in the basin, e_{k+1} <= C e_k^2
    ratios = err[1:][close] / err[:-1][close] ** 2
    assert close.sum() >= 3 and np.all(ratios < 10), (err, ratios)


def test_natural_gradient_with_momentum_and_monte_carlo():
    opt = optax.chain(natural_gradient("natural"), optax.sgd(0.02, momentum=0.9))
    res = dj.fit(
        dj.default_target(), dj.default_q0(), "kl_forward", "snis", num_samples=64, key=KEY,
        parameterization="natural", optimizer=opt, num_steps=400, optima=MOMENT_MATCH,
    )  # fmt: skip
    assert not bool(res.status.diverged), res.status.describe()
    assert res.q.loc.dtype == jnp.float32
    assert abs(float(res.q.loc) - MEAN) < 0.3 and abs(float(res.q.variance) / VAR - 1) < 0.2


# --- fixed scale, clipping, the optimizer chain -------------------------------------------


def test_fixed_scale_holds_the_scale_exactly(x64):
    p, q0 = dj.default_target(), dj.Gaussian.from_loc_scale(-2.0, 1.3)
    for name, natural in (("mu_log_sigma", False), ("mu_tau", True)):
        res = dj.fit(
            p, q0, "kl_forward", parameterization=name, fixed_scale=True,
            natural_gradient=natural, num_steps=300, trace_value=False, optima=MOMENT_MATCH,
        )  # fmt: skip
        assert np.all(np.asarray(res.trace.q.scale) == float(q0.scale)), name
        # With sigma fixed, KL(p || q) is minimized at mu = E_p[x].
        np.testing.assert_allclose(res.q.loc, MEAN, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", ["natural", "expectation"])
def test_fixed_scale_rejects_coordinates_without_a_scale(name):
    with pytest.raises(ValueError, match=f"{name}.*mu_log_sigma, mu_sigma, mu_tau"):
        dj.fit(
            dj.default_target(),
            dj.default_q0(),
            "kl_forward",
            parameterization=name,
            fixed_scale=True,
        )
    with pytest.raises(ValueError, match="valid choices"):
        hold_scale(name)


def test_coordinates_options_are_for_the_1d_gaussian_only():
    p2 = dj.GaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 1.0]])
    q2 = dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])
    for kw in (
        dict(parameterization="natural"),
        dict(natural_gradient=True),
        dict(fixed_scale=True),
    ):
        with pytest.raises(ValueError, match="own unconstrained parameters"):
            dj.fit(p2, q2, "kl_forward", **kw)


def test_clip_norm_bounds_every_step(x64):
    p, q0, lr, clip = dj.default_target(), dj.Gaussian.from_loc_scale(6.0, 0.8), 0.1, 0.5
    res = dj.fit(
        p, q0, "chi2_forward", optimizer=optax.sgd(lr), clip_norm=clip, num_steps=5,
        trace_value=False, optima=MOMENT_MATCH,
    )  # fmt: skip
    theta = np.concatenate(
        [mu_log_sigma.from_gaussian(q0)[None], mu_log_sigma.from_gaussian(res.trace.q)]
    )
    steps = np.linalg.norm(np.diff(theta, axis=0), axis=-1)
    assert np.all(np.asarray(res.trace.grad_norm) > clip)  # so every step was clipped
    np.testing.assert_allclose(steps, lr * clip, rtol=1e-10)
    with pytest.raises(ValueError, match="clip_norm"):
        wrap_optimizer(optax.sgd(lr), "mu_sigma", clip_norm=0.0)


def test_wrap_optimizer_without_options_is_the_optimizer():
    opt = optax.sgd(0.1)
    assert wrap_optimizer(opt, "natural") is opt


def test_step_leaving_the_domain_is_reported(x64):
    p, q0 = dj.default_target(), dj.default_q0()
    res = dj.fit(
        p, q0, "kl_forward", parameterization="natural", learning_rate=0.05, num_steps=5,
        optima=MOMENT_MATCH,
    )  # fmt: skip
    assert int(res.status.diverged_at) == 0
    assert int(res.status.reason) == status.OUT_OF_DOMAIN
    assert "domain" in res.status.describe()
    np.testing.assert_allclose(res.q.loc, q0.loc)
    np.testing.assert_allclose(res.q.log_scale, q0.log_scale)


# (learning rate, momentum) per parameterization: the stable step size depends on the coordinates.
SGD = {
    "mu_log_sigma": (0.05, 0.9),
    "mu_sigma": (0.05, 0.9),
    "mu_tau": (0.05, None),
    "natural": (0.005, 0.9),
    "expectation": (0.05, 0.9),
}


@pytest.mark.slow  # five compiled fits of 3000 steps
def test_exact_fit_same_optimum_different_trajectories(x64):
    p, q0 = dj.default_target(), dj.Gaussian.from_loc_scale(-1.0, 1.5)
    paths = {}
    for name, (lr, momentum) in SGD.items():
        res = dj.fit(
            p, q0, "kl_forward", parameterization=name, num_steps=3000, trace_value=False,
            optimizer=optax.sgd(lr, momentum=momentum), optima=MOMENT_MATCH,
        )  # fmt: skip
        assert int(res.status.optimum) == 0, (name, res.status.describe())
        np.testing.assert_allclose(res.q.loc, MEAN, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(res.q.variance, VAR, rtol=1e-5, err_msg=name)
        paths[name] = np.stack([res.trace.q.loc[:20], res.trace.q.log_scale[:20]], axis=-1)
    for a, b in itertools.combinations(paths, 2):
        assert np.max(np.abs(paths[a] - paths[b])) > 0.05, (a, b)
