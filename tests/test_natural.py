"""Natural gradient, clipping and fixed-scale fits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import divjax as dj
from divjax.gradcheck import default_qs
from divjax.natural import hold_scale, natural_direction, natural_gradient, wrap_optimizer
from divjax.parameterizations import PARAMETERIZATIONS, grad_in, mu_log_sigma

NAMES = tuple(PARAMETERIZATIONS)
KEY = jax.random.key(11)
# Forward KL optimum for the default target: mean 1.5, variance 6.025 (moment matching).
MEAN, VAR = 1.5, 6.025
MOMENT_MATCH = dj.Optima(dj.Gaussian(jnp.array([MEAN]), jnp.array([0.5 * np.log(VAR)])), None)


def _tangents(grad: dj.Gaussian, q: dj.Gaussian) -> jax.Array:
    """The natural gradient in every parameterization, pushed forward to (loc, log_scale).

    ``grad`` is a gradient in (loc, log_scale); `grad_in` maps it into each
    parameterization's coordinates by ``jax.vjp`` through ``to_gaussian``
    (what ``jax.grad`` through the map does, see test_parameterizations), the
    `natural_gradient` transformation preconditions it there, and ``jax.jvp``
    of the map back to (loc, log_scale) pushes the direction forward.
    Returns shape ``(len(NAMES), 2)``.
    """
    rows = []
    for name in NAMES:
        param = PARAMETERIZATIONS[name]
        theta = param.from_gaussian(q)
        tx = natural_gradient(param)
        direction, _ = tx.update(grad_in(param, grad, q), tx.init(theta), theta)
        to_mls = lambda t, param=param: mu_log_sigma.from_gaussian(param.to_gaussian(t))  # noqa: E731
        rows.append(jax.jvp(to_mls, (theta,), (direction,))[1])
    return jnp.stack(rows)


def _assert_same_direction(out):
    """``out``: (..., len(NAMES), 2); every row equal to the (mu, log sigma) one."""
    ref = out[..., :1, :]
    scale = np.max(np.abs(ref), axis=-1, keepdims=True)
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out - ref) / scale) < 1e-9


@pytest.mark.parametrize("name", dj.DIVERGENCES)
def test_natural_gradient_is_the_same_direction_in_every_parameterization(x64, name):
    """check_grad style: on gradcheck's grid of q's, every parameterization agrees."""
    p = dj.default_target()
    qs = default_qs(p)
    finite = ~np.asarray(dj.is_infinite(name, p, qs))
    qs = jax.tree_util.tree_map(lambda a: a[finite], qs)

    @jax.jit
    @jax.vmap
    def per_q(q):
        g = dj.autodiff_grad(name, p, q)
        return _tangents(g, q), g

    out, g = per_q(qs)
    _assert_same_direction(np.asarray(out))
    # In (mu, log sigma) the Fisher is diag(1 / sigma^2, 2): the natural gradient is
    # (sigma^2 g_mu, g_log_sigma / 2), with g the hand-derived exact_grad.
    exact = jax.jit(jax.vmap(lambda q: dj.exact_grad(name, p, q)))(qs)
    expected = np.stack([exact.loc * qs.variance, 0.5 * exact.log_scale], axis=-1)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)


def test_natural_gradient_invariant_for_monte_carlo_estimators(x64):
    """Every estimator's draw, preconditioned in every parameterization, is the same tangent."""
    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.1)
    combos = [(n, e) for n in dj.DIVERGENCES for e in dj.ESTIMATORS[n] if e != "exact"]

    @jax.jit
    def tangents(q):
        rows = []
        for name, est in combos:
            g, _ = jax.grad(dj.surrogate(name, est, p, 16), has_aux=True)(q, KEY)
            rows.append(_tangents(g, q))
        return jnp.stack(rows)

    _assert_same_direction(np.asarray(tangents(q)))


def test_update_without_params_raises():
    tx = natural_gradient("natural")
    theta = jnp.array([0.1, -0.5])
    with pytest.raises(ValueError, match="params"):
        tx.update(theta, tx.init(theta))
    with pytest.raises(ValueError, match="damping"):
        natural_gradient("natural", damping=-1.0)
    with pytest.raises(ValueError, match="parameterization 'polar'"):
        natural_gradient("polar")


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
    kl = lambda param: lambda t: dj.divergence("kl_forward", p, param.to_gaussian(t))  # noqa: E731
    m = exp_.from_gaussian(q0)
    direction = natural_direction(exp_, m, jax.jit(jax.grad(kl(exp_)))(m))
    # The natural gradient in expectation coordinates = the ordinary gradient in natural ones
    # = E_q[T] - E_p[T].
    np.testing.assert_allclose(direction, m - e_p, rtol=1e-12)
    grad_eta = jax.jit(jax.grad(kl(nat)))(nat.from_gaussian(q0))
    np.testing.assert_allclose(grad_eta, m - e_p, rtol=1e-12)
    res = dj.fit(
        p,
        q0,
        "kl_forward",
        parameterization="expectation",
        natural_gradient=True,
        optimizer=optax.sgd(1.0),
        num_steps=1,
        optima=MOMENT_MATCH,
    )
    np.testing.assert_allclose(res.q.loc, MEAN, rtol=1e-13)
    np.testing.assert_allclose(res.q.variance, VAR, rtol=1e-13)


def newton_errors(num_steps=8):
    """Errors ||eta_k - eta*|| of natural-gradient descent (lr 1) in natural coordinates."""
    p, nat = dj.default_target(), PARAMETERIZATIONS["natural"]
    res = dj.fit(
        p,
        dj.default_q0(),
        "kl_forward",
        parameterization="natural",
        natural_gradient=True,
        optimizer=optax.sgd(1.0),
        num_steps=num_steps,
        trace_value=False,
        optima=MOMENT_MATCH,
    )
    eta_star = nat.from_gaussian(dj.Gaussian.from_loc_variance(MEAN, VAR))
    eta = np.concatenate([nat.from_gaussian(dj.default_q0())[None], nat.from_gaussian(res.trace.q)])
    return np.linalg.norm(eta - eta_star, axis=-1)


def test_natural_coordinates_natural_gradient_is_newton(x64):
    p, nat = dj.default_target(), PARAMETERIZATIONS["natural"]
    kl = lambda t: dj.divergence("kl_forward", p, nat.to_gaussian(t))  # noqa: E731

    @jax.jit
    def both(eta):
        g = jax.grad(kl)(eta)
        return natural_direction(nat, eta, g), jnp.linalg.solve(jax.hessian(kl)(eta), g)

    for q in (dj.default_q0(), dj.Gaussian.from_loc_scale(-1.0, 0.7)):
        natural, newton = both(nat.from_gaussian(q))
        np.testing.assert_allclose(natural, newton, rtol=1e-10)
    err = newton_errors()
    assert err[-1] < 1e-12
    # Quadratic convergence: once in the basin, e_{k+1} <= C e_k^2 (C bounded).
    close = (err[:-1] < 0.05) & (err[:-1] > 1e-6)
    ratios = err[1:][close] / err[:-1][close] ** 2
    assert close.sum() >= 3 and np.all(ratios < 10), (err, ratios)


def test_natural_gradient_with_momentum_and_monte_carlo():
    p = dj.default_target()
    opt = optax.chain(natural_gradient("natural"), optax.sgd(0.02, momentum=0.9))
    res = dj.fit(
        p,
        dj.default_q0(),
        "kl_forward",
        "snis",
        num_samples=64,
        key=KEY,
        parameterization="natural",
        optimizer=opt,
        num_steps=400,
        optima=MOMENT_MATCH,
    )
    assert not bool(res.status.diverged), res.status.describe()
    assert res.q.loc.dtype == jnp.float32
    assert abs(float(res.q.loc) - MEAN) < 0.3 and abs(float(res.q.variance) / VAR - 1) < 0.2


def test_fixed_scale_holds_the_scale_exactly(x64):
    p, q0 = dj.default_target(), dj.Gaussian.from_loc_scale(-2.0, 1.3)
    for name, natural in (("mu_log_sigma", False), ("mu_tau", True)):
        res = dj.fit(
            p,
            q0,
            "kl_forward",
            parameterization=name,
            fixed_scale=True,
            natural_gradient=natural,
            num_steps=300,
            trace_value=False,
            optima=MOMENT_MATCH,
        )
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


def test_clip_norm_bounds_every_step(x64):
    p, q0, lr, clip = dj.default_target(), dj.Gaussian.from_loc_scale(6.0, 0.8), 0.1, 0.5
    res = dj.fit(
        p,
        q0,
        "chi2_forward",
        optimizer=optax.sgd(lr),
        clip_norm=clip,
        num_steps=5,
        trace_value=False,
        optima=MOMENT_MATCH,
    )
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
