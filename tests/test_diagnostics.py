"""grad_stats: shapes, agreement with a plain loop, honest reporting of infinite variance,
other coordinates, d-D families, callable targets; infinite_variance's boundaries.

Few programs (each a compile of seconds), shared through module fixtures:
``kl`` (two reverse-KL estimators at two K's and a batch of three q's),
``chi2`` (the reverse chi-square's score estimators and "exact" at q's on both
sides of the infinite-variance boundaries).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax.diagnostics import grad_stats_many, infinite_variance
from divjax.estimators import surrogate
from tests import _shared

KEY = jax.random.key(7)
P = dj.default_target()


def _vec(g):
    return np.array([g.loc, g.log_scale])


def _row(tree, *index):
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[index], tree)


# --- reverse KL: shapes and a plain loop over the same keys --------------------------

KL_QS = dj.Gaussian(jnp.array([0.0, 0.5, 2.0]), jnp.log(jnp.array([2.0, 1.2, 0.8])))
KL_EST = ("reparam", "reinforce_loo")
KL_KS = (2, 8)
KL_DRAWS = 400


@pytest.fixture(scope="module")
def kl():
    return grad_stats_many("kl_reverse", KL_EST, P, KL_QS, KL_KS, KL_DRAWS, KEY)


def test_shapes_for_k_sequence_and_q_batch(kl):
    for stats in kl.values():
        assert stats.mean.loc.shape == stats.cosine.shape == stats.mean_ess.shape == (2, 3)
        np.testing.assert_array_equal(stats.num_samples, [[2, 2, 2], [8, 8, 8]])
        assert np.all(stats.num_draws == KL_DRAWS)
        assert not np.any(stats.infinite_variance) and not np.any(stats.divergence_infinite)


def test_matches_a_python_loop_over_the_same_keys(kl):
    """Estimator i, K, q j: draws on split(fold_in(fold_in(key, i), K), num_draws)."""
    i, k, j = 1, 8, 1
    est, q = KL_EST[i], _row(KL_QS, j)
    stats = _row(kl[est], KL_KS.index(k), j)
    fn = jax.grad(surrogate("kl_reverse", est, P, k), has_aux=True)
    keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(KEY, i), k), KL_DRAWS)
    grads, aux = jax.jit(jax.vmap(fn, (None, 0)))(q, keys)
    g = np.stack([grads.loc, grads.log_scale], axis=1)  # (n, 2)
    n = len(g)
    exact = _vec(dj.exact_grad("kl_reverse", P, q))
    np.testing.assert_allclose(_vec(stats.exact), exact, rtol=1e-5)
    np.testing.assert_allclose(_vec(stats.mean), g.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_vec(stats.variance), g.var(0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(_vec(stats.stderr), np.sqrt(g.var(0, ddof=1) / n), rtol=1e-4)
    np.testing.assert_allclose(_vec(stats.bias), g.mean(0) - exact, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(_vec(stats.mse), ((g - exact) ** 2).mean(0), rtol=1e-4)
    np.testing.assert_allclose(_vec(stats.snr), np.abs(g.mean(0)) / g.std(0, ddof=1), rtol=1e-3)
    np.testing.assert_allclose(_vec(stats.snr_exact), np.abs(exact) / g.std(0, ddof=1), rtol=1e-4)
    cos = g @ exact / (np.linalg.norm(g, axis=1) * np.linalg.norm(exact))
    np.testing.assert_allclose(float(stats.cosine), cos.mean(), rtol=1e-4)
    ess = np.asarray(aux.ess)
    np.testing.assert_allclose(float(stats.mean_ess), ess.mean(), rtol=1e-5)


def test_unbiased_estimators_are_within_5_standard_errors(kl):
    for est, stats in kl.items():
        mean, exact, se = (_vec(getattr(stats, f)) for f in ("mean", "exact", "stderr"))
        assert np.all(se > 0) and np.all(np.abs(mean - exact) < 5 * se), (est, mean, exact, se)


def test_pathwise_variance_is_one_over_k(kl):
    """reparam averages K i.i.d. terms: its variance at K = 2 is 4 times that at K = 8.

    The ratio of two sample variances from 400 draws each: log-ratio SE about 0.1 for
    light tails (more for the log-scale gradient's heavier ones), so (2, 12) is wide; a
    per-draw (not per-sample) variance, or a mean over the wrong axis, gives a ratio of 1.
    """
    var = _vec(kl["reparam"].variance)  # (2 parameters, 2 Ks, 3 q's)
    ratio = var[:, 0] / var[:, 1]
    assert np.all((ratio > 2) & (ratio < 12)), ratio


# --- reverse chi-square: infinite divergence, infinite variance, exact ---------------

CHI2_QS = dj.Gaussian(
    jnp.array([0.0, 1.0, 1.0]), jnp.log(jnp.sqrt(jnp.array([5.0, 1.7, 0.81])))
)  # q0 (chi2 infinite), sigma^2 = 1.7 (finite chi2, infinite variance), N(1, 0.9^2) (finite)
CHI2_EST = ("score", "score_sn", "exact")


@pytest.fixture(scope="module")
def chi2():
    return grad_stats_many("chi2_reverse", CHI2_EST, P, CHI2_QS, (4, 16), 200, KEY)


def test_infinite_chi2_is_reported_not_printed_as_a_number(chi2):
    """q0 = N(0, 5) against the default target: chi^2(q || p) = inf (sigma^2 >= 2 s^2)."""
    stats = _row(chi2["score"], slice(None), 0)
    assert np.all(stats.divergence_infinite) and np.all(stats.infinite_variance)
    assert np.all(np.isposinf(_vec(stats.exact)))
    assert np.all(np.isposinf(_vec(stats.variance))) and np.all(np.isposinf(_vec(stats.mse)))
    assert np.all(_vec(stats.snr) == 0) and np.all(np.isnan(stats.cosine))
    # What the draws happened to show: huge, possibly beyond float32, never NaN.
    assert not np.any(np.isnan(_vec(stats.sample_variance)))
    sn = _row(chi2["score_sn"], slice(None), 0)  # self-normalized: finite at fixed K
    assert np.all(sn.infinite_variance) and np.all(np.isfinite(_vec(sn.variance)))


def test_finite_but_infinite_variance_region(chi2):
    """3/2 s^2 <= sigma^2 < 2 s^2: chi^2(q || p) finite, the score estimator's variance not."""
    stats = _row(chi2["score"], slice(None), 1)
    assert not np.any(stats.divergence_infinite) and np.all(stats.infinite_variance)
    assert np.all(np.isfinite(_vec(stats.exact))) and np.all(np.isposinf(_vec(stats.variance)))


def test_exact_estimator_has_zero_variance(chi2):
    stats = _row(chi2["exact"], 0, 2)
    ref = _shared.exact_default(((1.0, 0.9),), ("main",))["chi2_reverse:None"]  # float64
    exact = ref["exact"][0]
    np.testing.assert_allclose(_vec(stats.mean), exact, rtol=1e-5)
    assert np.all(_vec(stats.variance) == 0) and np.all(np.isposinf(_vec(stats.snr)))
    np.testing.assert_allclose(float(stats.cosine), 1.0, rtol=1e-5)
    assert not bool(stats.infinite_variance)


def test_score_estimand_is_the_gradient_over_z_and_log1p(chi2):
    """Where finite: score within 5 SE of grad chi2 / Z (Z = 1 here), scale 1; score_sn's
    estimand is grad log(1 + chi2), scale 1 / (1 + chi2)."""
    s, sn = _row(chi2["score"], 1, 2), _row(chi2["score_sn"], 1, 2)
    assert float(s.scale) == 1.0
    assert np.all(np.abs(_vec(s.mean) - _vec(s.exact)) < 5 * _vec(s.stderr))
    value = _shared.exact_default(((1.0, 0.9),), ("main",))["chi2_reverse:None"]["value"][0]
    np.testing.assert_allclose(float(sn.scale), 1 / (1 + value), rtol=1e-4)
    np.testing.assert_allclose(_vec(sn.exact), _vec(s.exact) / (1 + value), rtol=1e-4)


# --- other coordinates, families, targets --------------------------------------------


def test_grad_stats_in_other_coordinates(kl):
    """parameterization=: draws mapped before the statistics; unbiasedness kept."""
    q = _row(KL_QS, 1)
    stats = dj.grad_stats(
        "kl_reverse", "reparam", P, q, 8, KL_DRAWS, KEY, parameterization="natural"
    )
    expected = dj.grad_in("natural", dj.exact_grad("kl_reverse", P, q), q)
    np.testing.assert_allclose(np.asarray(stats.exact), np.asarray(expected), rtol=1e-5)
    for m, e, se in zip(stats.mean, stats.exact, stats.stderr):
        assert abs(float(m) - float(e)) < 5 * float(se)
    base = _row(kl["reparam"], 1, 1)
    assert not np.allclose(np.asarray(stats.variance), _vec(base.variance))


def test_callable_target_gives_the_mixtures_draws_without_exact_fields(kl):
    """The mixture's own log p~ as a plain function: the same draws; exact fields NaN."""
    out = grad_stats_many(
        "kl_reverse", KL_EST, P.unnormalized_log_prob, KL_QS, KL_KS, KL_DRAWS, KEY
    )
    for est in KL_EST:
        a, b = out[est], kl[est]
        np.testing.assert_allclose(_vec(a.mean), _vec(b.mean), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(_vec(a.variance), _vec(b.variance), rtol=1e-4)
        assert np.all(np.isnan(_vec(a.exact))) and np.all(np.isnan(_vec(a.bias)))
        assert np.all(np.isnan(a.cosine)) and not np.any(a.infinite_variance)


@functools.cache
def _three_d():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 3, 3))
    p = dj.GaussianMixture(
        [1.0, 2.0], rng.normal(0, 1, (2, 3)), covs=a @ a.transpose(0, 2, 1) / 3 + 0.5 * np.eye(3)
    )
    q = dj.FullRankGaussian.from_cov(np.zeros(3), 4.0 * np.eye(3) + 0.5)
    return p, q


def test_stateful_estimator_in_3d_is_unbiased_after_burn_in():
    """msc in d = 3 (kl_forward's gradient is exact in any d): chains at stationarity."""
    p, q = _three_d()
    stats = dj.grad_stats("kl_forward", "msc", p, q, 8, 300, KEY, burn_in=20)
    assert stats.mean.chol.shape == (3, 3) and stats.mean.loc.shape == (3,)
    for m, e, se in zip(stats.mean, stats.exact, stats.stderr):
        m, e, se = (np.asarray(v) for v in (m, e, se))
        assert np.all(np.abs(m - e) <= 5 * se + 1e-7), (m, e, se)  # +: the ignored upper triangle


def test_mixture_q_reports_mean_and_variance_only():
    p = dj.GaussianMixture([0.4, 0.6], [[-2.0], [2.5]], [[0.9], [1.1]])
    q = dj.MixtureGaussian(
        jnp.array([0.2, -0.3]), jnp.array([[-1.5], [2.0]]), jnp.log(jnp.array([[0.6], [0.8]]))
    )
    stats = dj.grad_stats("kl_reverse", "reinforce", p, q, 4, 50, KEY)
    assert stats.mean.logits.shape == (2,) and np.all(np.isfinite(np.asarray(stats.mean.logits)))
    assert np.all(np.isnan(np.asarray(stats.exact.locs))) and np.isnan(stats.cosine)


# --- infinite_variance ---------------------------------------------------------------


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


@pytest.mark.parametrize("est", ["reinforce", "reinforce_loo", "reparam", "stl", "msc"])
def test_estimators_never_flagged(est):
    p = dj.GaussianMixture([1.0, 2.0], [0.0, 3.0], [0.05, 0.05])
    name = "kl_forward" if est == "msc" else "kl_reverse"
    for var in (1e-4, 1.0, 1e4):
        assert not bool(infinite_variance(name, est, p, dj.Gaussian.from_loc_variance(0, var)))
    assert not bool(infinite_variance("chi2_reverse", "score", P.log_prob, dj.default_q0()))


# --- errors, and inside an outer jit ------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_draws=1), "num_draws"),
        (dict(num_samples=(4, 0)), "num_samples >= 1"),
        (dict(num_samples=()), "non-empty"),
        (dict(estimator="snis"), "valid choices"),
        (dict(estimator="msc", name="kl_forward", burn_in=-1), "burn_in"),
        (dict(q=dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])), "event_shape"),
        (
            dict(
                parameterization="natural",
                q=dj.DiagGaussian([0.0], [0.0]),
                target=dj.GaussianMixture([1.0], [[0.0]], [[1.0]]),
            ),
            "1-D Gaussian q only",
        ),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(
        name="kl_reverse",
        estimator="reparam",
        target=P,
        q=dj.default_q0(),
        num_samples=4,
        num_draws=10,
        key=KEY,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dj.grad_stats(**args)


def test_works_inside_an_outer_jit_and_single_q_has_no_batch_axes():
    q0 = dj.default_q0()

    @jax.jit
    def both(key):
        return [dj.grad_stats("kl_reverse", e, P, q0, 4, 16, key) for e in ("reinforce", "stl")]

    a, b = both(KEY)
    assert a.mean.loc.shape == a.mean_ess.shape == a.infinite_variance.shape == ()
    assert int(a.num_draws) == 16 and int(a.num_samples) == 4
    assert np.all(np.isfinite(_vec(a.mean))) and np.all(np.isfinite(_vec(b.mean)))
