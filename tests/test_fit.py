"""fit: convergence, optimizers, divergence handling, status, traces."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import divjax as dj
from divjax.fit import NONFINITE_GRAD, SCALE_OUT_OF_RANGE, STUCK, UNKNOWN


@pytest.fixture(scope="module")
def p():
    return dj.default_target()


@pytest.fixture(scope="module")
def optima(p):
    return {name: dj.optimal_q(name, p) for name in ("kl_forward", "kl_reverse")}


def test_exact_forward_kl_reaches_moment_matching(p, optima):
    res = dj.fit(p, dj.default_q0(), "kl_forward", num_steps=800, optima=optima["kl_forward"])
    assert float(res.q.loc) == pytest.approx(1.5, abs=1e-3)
    assert float(res.q.variance) == pytest.approx(6.025, rel=1e-3)
    assert int(res.status.optimum) == 0 and int(res.status.diverged_at) == -1
    assert res.trace.q.loc.shape == (800,) and res.trace.value.shape == (800,)
    # the exact forward KL decreases along the exact fit once momentum settles
    assert float(res.trace.value[-1]) < float(res.trace.value[0])
    assert float(res.status.final_value) == pytest.approx(0.4964, abs=1e-3)
    assert "global" in res.status.describe()


def test_reverse_kl_mode_locking_is_a_local_optimum(p, optima):
    q0 = dj.Gaussian.from_loc_scale(-2.0, 0.5)
    res = dj.fit(p, q0, "kl_reverse", num_steps=500, optima=optima["kl_reverse"])
    assert int(res.status.optimum) == 1
    assert "local" in res.status.describe()


def test_any_optax_optimizer(p, optima):
    res = dj.fit(
        p,
        dj.default_q0(),
        "kl_forward",
        optimizer=optax.adam(0.05),
        num_steps=1500,
        optima=optima["kl_forward"],
    )
    assert int(res.status.optimum) == 0


def test_monte_carlo_fit_is_deterministic_given_key(p, optima):
    kw = dict(num_samples=16, num_steps=300, key=jax.random.key(3), optima=optima["kl_reverse"])
    a = dj.fit(p, dj.default_q0(), "kl_reverse", "reparam", **kw)
    b = dj.fit(p, dj.default_q0(), "kl_reverse", "reparam", **kw)
    np.testing.assert_array_equal(a.trace.q.loc, b.trace.q.loc)
    assert a.trace.ess.shape == (300,) and np.all(np.asarray(a.trace.ess) >= 1)


def test_negative_step_size_runs_away_and_is_reported(p, optima):
    res = dj.fit(
        p,
        dj.default_q0(),
        "kl_forward",
        learning_rate=-0.02,
        num_steps=500,
        optima=optima["kl_forward"],
    )
    at = int(res.status.diverged_at)
    assert 0 <= at < 500
    assert int(res.status.optimum) == UNKNOWN
    assert np.all(np.isfinite(np.asarray(res.trace.q.loc)))  # last finite q kept
    # after divergence the trace is frozen at the last finite q
    np.testing.assert_array_equal(res.trace.q.loc[at:], res.trace.q.loc[-1])
    assert "diverged at step" in res.status.describe()


def test_too_large_step_diverges(p, optima):
    res = dj.fit(
        p,
        dj.default_q0(),
        "kl_forward",
        learning_rate=5.0,
        num_steps=100,
        optima=optima["kl_forward"],
    )
    assert int(res.status.diverged_at) >= 0
    assert int(res.status.reason) in (NONFINITE_GRAD, SCALE_OUT_OF_RANGE)


def test_k1_snis_collapses_and_is_caught(p, optima):
    res = dj.fit(
        p,
        dj.default_q0(),
        "kl_forward",
        "snis",
        num_samples=1,
        num_steps=2000,
        key=jax.random.key(1),
        optima=optima["kl_forward"],
    )
    assert int(res.status.diverged_at) >= 0
    assert np.isfinite(float(res.q.loc)) and np.isfinite(float(res.q.log_scale))


def test_infinite_chi2_start_diverges_at_step_0(p):
    res = dj.fit(p, dj.default_q0(), "chi2_reverse", num_steps=10, optima=None, trace_value=False)
    assert int(res.status.diverged_at) == 0 and int(res.status.reason) == NONFINITE_GRAD
    assert float(res.q.loc) == 0.0  # q0 kept
    assert res.trace.value is None


def test_callable_target(p):
    res = dj.fit(
        p.log_prob,
        dj.default_q0(),
        "kl_reverse",
        "reparam",
        num_samples=16,
        num_steps=400,
        key=jax.random.key(0),
    )
    assert res.trace.value is None and np.isnan(float(res.status.final_value))
    assert int(res.status.optimum) == UNKNOWN
    assert abs(float(res.q.loc) - 3.0) < 0.5


def test_stuck_when_far_from_every_optimum(p, optima):
    res = dj.fit(p, dj.default_q0(), "kl_forward", num_steps=2, optima=optima["kl_forward"])
    assert int(res.status.optimum) == STUCK


def test_bad_arguments(p):
    with pytest.raises(ValueError, match="key is required"):
        dj.fit(p, dj.default_q0(), "kl_reverse", "reparam")
    with pytest.raises(ValueError, match="valid choices"):
        dj.fit(p, dj.default_q0(), "kl_reverse", "snis", key=jax.random.key(0))
    with pytest.raises(ValueError, match="optax"):
        dj.fit(p, dj.default_q0(), "kl_forward", optimizer="sgd")
    with pytest.raises(ValueError, match="num_steps"):
        dj.fit(p, dj.default_q0(), "kl_forward", num_steps=0)


def test_float64(optima):
    with jax.enable_x64(True):
        p = dj.default_target()
        res = dj.fit(p, dj.default_q0(), "kl_forward", num_steps=800, trace_value=False)
        assert res.q.loc.dtype == jnp.float64
        assert float(res.q.loc) == pytest.approx(1.5, abs=1e-6)


# --- d dimensions: the same fit, q in its own unconstrained parameters ---------


def _p2d():
    return dj.GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.7, 1.0], [1.0, 0.8]])


def test_mixture_q_recovers_a_2d_mixture_by_reinforce_cv():
    """A two-component MixtureGaussian can equal p, so reverse KL's minimum is p itself."""
    p = _p2d()
    q0 = dj.MixtureGaussian(jnp.zeros(2), jnp.array([[-1.0, 0.0], [1.0, 0.0]]), jnp.zeros((2, 2)))
    res = dj.fit(
        p, q0, "kl_reverse", "reinforce_cv", num_samples=32, key=jax.random.key(0),
        num_steps=3000, learning_rate=0.01,
    )  # fmt: skip
    order = np.argsort(np.asarray(res.q.locs[:, 0]))
    np.testing.assert_allclose(res.q.locs[order], p.locs, atol=0.02)
    np.testing.assert_allclose(np.exp(res.q.log_scales[order]), [[0.7, 1.0], [1.0, 0.8]], rtol=0.02)
    np.testing.assert_allclose(jax.nn.softmax(res.q.logits)[order], [0.3, 0.7], atol=0.01)
    # No exact value or optimum exists for a mixture q: said, not made up.
    assert res.trace.value is None and np.isnan(float(res.status.final_value))
    assert int(res.status.optimum) == UNKNOWN


@pytest.mark.parametrize("family", ["diag", "full"])
def test_exact_forward_fits_in_2d_reach_optimal_q(family):
    p = dj.GaussianMixture(
        [0.3, 0.7],
        [[-2.0, 0.0], [2.0, 1.0]],
        covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.8, -0.2], [-0.2, 1.2]]],
    )
    q0 = (
        dj.DiagGaussian([0.0, 0.0], [0.7, 0.7])
        if family == "diag"
        else dj.FullRankGaussian.from_cov([0.0, 0.0], [[4.0, 0.0], [0.0, 4.0]])
    )
    # chi2_forward's value is closed form in any d, so it is traced; kl_forward's
    # needs 2-D quadrature at every step, so only its final value is computed.
    res = dj.fit(p, q0, "chi2_forward", num_steps=1500, learning_rate=0.02)
    assert int(res.status.optimum) == 0, res.status.describe()
    assert res.trace.value.shape == (1500,)
    assert float(res.status.final_value) < float(res.trace.value[0])
    res = dj.fit(p, q0, "kl_forward", num_steps=1500, learning_rate=0.02, trace_value=False)
    assert int(res.status.optimum) == 0, res.status.describe()
    assert res.trace.value is None and np.isfinite(float(res.status.final_value))
    np.testing.assert_allclose(res.q.loc, p.mean(), atol=1e-3)
    cov = p.covariance() if family == "full" else jnp.diag(jnp.diagonal(p.covariance()))
    np.testing.assert_allclose(res.q.cov, cov, atol=2e-3)


def test_d_dimensional_fit_errors():
    p, q = _p2d(), dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="needs a DiagGaussian, FullRankGaussian"):
        dj.fit(p, dj.default_q0(), "kl_forward")
    with pytest.raises(ValueError, match="needs a divjax.Gaussian q0"):
        dj.fit(dj.default_target(), q, "kl_forward")
    with pytest.raises(ValueError, match="own unconstrained parameters"):
        dj.fit(p, q, "kl_forward", parameterization="natural")
    with pytest.raises(ValueError, match="own unconstrained parameters"):
        dj.fit(p, q, "kl_forward", natural_gradient=True)
    with pytest.raises(ValueError, match="q0 must be"):
        dj.fit(p, (0.0, 0.0), "kl_forward")
