"""grad_stats: shapes, agreement with a plain loop, and honest reporting of infinite variance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax.diagnostics import grad_stats, infinite_variance
from divjax.estimators import surrogate

KEY = jax.random.key(7)


def _vec(g):
    return np.array([g.loc, g.log_scale])


def test_shapes_for_k_sequence_and_q_batch():
    p = dj.default_target()
    qs = dj.Gaussian(jnp.array([0.0, 1.0, 2.0]), jnp.log(jnp.array([2.0, 1.0, 0.8])))
    batched = grad_stats("kl_reverse", "reparam", p, qs, (2, 8), 64, KEY)
    assert batched.mean.loc.shape == batched.cosine.shape == (2, 3)
    np.testing.assert_array_equal(batched.num_samples, [[2, 2, 2], [8, 8, 8]])
    single = grad_stats("kl_reverse", "reparam", p, dj.default_q0(), 8, 64, KEY)
    assert single.mean.loc.shape == single.mean_ess.shape == single.infinite_variance.shape == ()
    assert int(single.num_draws) == 64 and int(single.num_samples) == 8


def test_matches_a_python_loop_over_the_same_keys():
    p, q, k, n = dj.default_target(), dj.Gaussian.from_loc_scale(0.5, 1.2), 4, 50
    stats = grad_stats("kl_reverse", "reinforce_loo", p, q, k, n, KEY)
    fn = jax.jit(jax.grad(surrogate("kl_reverse", "reinforce_loo", p, k), has_aux=True))
    keys = jax.random.split(jax.random.fold_in(KEY, k), n)
    draws = [fn(q, key) for key in keys]
    g = np.array([_vec(d[0]) for d in draws])  # (n, 2)
    exact = _vec(dj.exact_grad("kl_reverse", p, q))
    np.testing.assert_allclose(_vec(stats.mean), g.mean(0), rtol=1e-5)
    np.testing.assert_allclose(_vec(stats.variance), g.var(0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(_vec(stats.stderr), np.sqrt(g.var(0, ddof=1) / n), rtol=1e-4)
    np.testing.assert_allclose(_vec(stats.bias), g.mean(0) - exact, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_vec(stats.mse), ((g - exact) ** 2).mean(0), rtol=1e-4)
    np.testing.assert_allclose(_vec(stats.snr), np.abs(g.mean(0)) / g.std(0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(_vec(stats.snr_exact), np.abs(exact) / g.std(0, ddof=1), rtol=1e-4)
    cos = g @ exact / (np.linalg.norm(g, axis=1) * np.linalg.norm(exact))
    np.testing.assert_allclose(float(stats.cosine), cos.mean(), rtol=1e-4)
    ess = np.array([float(d[1].ess) for d in draws])
    np.testing.assert_allclose(float(stats.mean_ess), ess.mean(), rtol=1e-5)


def test_exact_estimator_has_zero_variance():
    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 0.9)
    stats = grad_stats("chi2_reverse", "exact", p, q, 4, 8, KEY)
    np.testing.assert_allclose(
        _vec(stats.mean), _vec(dj.exact_grad("chi2_reverse", p, q)), rtol=1e-6
    )
    assert np.all(_vec(stats.variance) == 0) and np.all(np.isposinf(_vec(stats.snr)))
    np.testing.assert_allclose(float(stats.cosine), 1.0, rtol=1e-5)
    assert not bool(stats.infinite_variance)


def test_infinite_chi2_is_reported_not_printed_as_a_number():
    """q0 = N(0, 5) against the default target: chi^2(q || p) = inf (sigma^2 >= 2 s^2)."""
    p, q0 = dj.default_target(), dj.default_q0()
    stats = grad_stats("chi2_reverse", "score", p, q0, (4, 16), 200, KEY)
    assert np.all(stats.divergence_infinite) and np.all(stats.infinite_variance)
    assert np.all(np.isposinf(_vec(stats.exact)))
    assert np.all(np.isposinf(_vec(stats.variance))) and np.all(np.isposinf(_vec(stats.mse)))
    assert np.all(_vec(stats.snr) == 0) and np.all(np.isnan(stats.cosine))
    # What the draws happened to show: huge, possibly beyond float32, never NaN.
    assert not np.any(np.isnan(_vec(stats.sample_variance)))
    sn = grad_stats("chi2_reverse", "score_sn", p, q0, 4, 200, KEY)
    assert bool(sn.infinite_variance) and np.all(
        np.isfinite(_vec(sn.variance))
    )  # finite at fixed K


def test_finite_but_infinite_variance_region():
    """3/2 s^2 <= sigma^2 < 2 s^2: chi^2(q || p) finite, the score estimator's variance not."""
    p, q = dj.default_target(), dj.Gaussian.from_loc_variance(1.0, 1.7)
    stats = grad_stats("chi2_reverse", "score", p, q, 8, 100, KEY)
    assert not bool(stats.divergence_infinite) and bool(stats.infinite_variance)
    assert np.all(np.isfinite(_vec(stats.exact))) and np.all(np.isposinf(_vec(stats.variance)))


@pytest.mark.parametrize(
    "name, est, boundary, infinite_side",
    [
        ("kl_forward", "snis", 0.5, "below"),
        ("chi2_forward", "snis2", 0.75, "below"),
        ("chi2_reverse", "score", 1.5, "above"),
        ("chi2_reverse", "score_sn", 1.5, "above"),
        ("chi2_reverse", "reparam", 1.5, "above"),
    ],
)
def test_infinite_variance_boundaries(name, est, boundary, infinite_side):
    p = dj.GaussianMixture([1.0, 2.0], [0.0, 3.0], [0.5, 2.0])  # s_max^2 = 4
    flags = [
        bool(infinite_variance(name, est, p, dj.Gaussian.from_loc_variance(0.0, 4 * boundary * f)))
        for f in (0.99, 1.01)
    ]
    assert flags == ([True, False] if infinite_side == "below" else [False, True])
    assert not bool(infinite_variance(name, "exact", p, dj.default_q0()))


@pytest.mark.parametrize("est", ["reinforce", "reinforce_loo", "reparam", "stl"])
def test_reverse_kl_estimators_never_flagged(est):
    p = dj.GaussianMixture([1.0, 2.0], [0.0, 3.0], [0.05, 0.05])
    for var in (1e-4, 1.0, 1e4):
        assert not bool(
            infinite_variance("kl_reverse", est, p, dj.Gaussian.from_loc_variance(0, var))
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_draws=1), "num_draws"),
        (dict(num_samples=(4, 0)), "num_samples >= 1"),
        (dict(num_samples=()), "non-empty"),
        (dict(estimator="snis"), "valid choices"),
        (dict(target=dj.default_target().log_prob), "GaussianMixture"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(
        name="kl_reverse",
        estimator="reparam",
        target=dj.default_target(),
        q=dj.default_q0(),
        num_samples=4,
        num_draws=10,
        key=KEY,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        grad_stats(**args)


def test_works_inside_an_outer_jit():
    p, q0 = dj.default_target(), dj.default_q0()

    @jax.jit
    def both(key):
        return [grad_stats("kl_reverse", e, p, q0, 4, 16, key) for e in ("reinforce", "stl")]

    a, b = both(KEY)
    assert np.all(np.isfinite(_vec(a.mean))) and np.all(np.isfinite(_vec(b.mean)))
