"""The variational families: densities vs scipy, sampling, moments, validation, pytrees.

Numbers come from a few jitted programs (eager evaluation compiles every
primitive on its own); shapes from ``jax.eval_shape`` (no compile at all).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import divjax as dj
from divjax.families import check_family, mean_and_log_sd

KEY = jax.random.key(5)
CHOL = np.array([[0.2, 0.0], [0.7, -0.3]])  # L = [[e^0.2, 0], [0.7, e^-0.3]]
L = np.tril(CHOL, -1) + np.diag(np.exp(np.diag(CHOL)))
MIX = dict(
    logits=[0.3, -0.4], locs=[[-1.0, 0.5], [2.0, 0.0]], log_scales=[[0.1, -0.2], [-0.5, 0.3]]
)


def _families(**replace):
    """One member of every family (built in the current float type)."""
    fams = {
        "gaussian": dj.Gaussian(0.7, -0.4),
        "diag": dj.DiagGaussian([0.5, -1.0], [0.3, -0.6]),
        "full": dj.FullRankGaussian([0.5, -1.0], CHOL),
        "mixture": dj.MixtureGaussian(**MIX),
    }
    return {**fams, **replace}


def _scipy_log_prob(family, x):
    if family == "gaussian":
        return stats.norm.logpdf(x, 0.7, math.exp(-0.4))
    if family == "diag":
        return stats.multivariate_normal.logpdf(x, [0.5, -1.0], np.diag(np.exp([0.6, -1.2])))
    if family == "full":
        return stats.multivariate_normal.logpdf(x, [0.5, -1.0], L @ L.T)
    w = np.exp(MIX["logits"]) / np.sum(np.exp(MIX["logits"]))
    comps = [
        np.log(wk) + stats.multivariate_normal.logpdf(x, m, np.diag(np.exp(2 * np.asarray(s))))
        for wk, m, s in zip(w, MIX["locs"], MIX["log_scales"])
    ]
    return logsumexp(np.stack(comps), axis=0)


@jax.jit
def _log_probs(qs, x1, x2):
    return {k: q.log_prob(x1 if k == "gaussian" else x2) for k, q in qs.items()}


def test_log_prob_matches_scipy(x64):
    x1 = np.linspace(-4.0, 5.0, 7)
    x2 = np.stack([np.linspace(-3.0, 4.0, 7), np.linspace(2.0, -5.0, 7)], -1)
    got = _log_probs(_families(), x1, x2)
    for family, value in got.items():
        x = x1 if family == "gaussian" else x2
        np.testing.assert_allclose(value, _scipy_log_prob(family, x), rtol=1e-12, err_msg=family)


def _shape(fn):
    return jax.eval_shape(fn).shape  # traced only: no compile


def test_log_prob_broadcasts_over_batch_shapes():
    q = dj.DiagGaussian([0.5, -1.0], [0.3, -0.6])
    assert _shape(lambda: q.log_prob(jnp.zeros((3, 4, 2)))) == (3, 4)
    g = dj.Gaussian(jnp.array([0.0, 1.0, 2.0]), jnp.zeros(3))  # a batch of 1-D q's
    assert _shape(lambda: g.log_prob(0.5)) == (3,)
    assert _shape(lambda: dj.MixtureGaussian(**MIX).log_prob(jnp.zeros((5, 2)))) == (5,)


def test_event_shapes_dims_and_names():
    fams = _families()
    assert fams["gaussian"].event_shape == () and fams["gaussian"].dim == 1
    for k in ("diag", "full", "mixture"):
        assert fams[k].event_shape == (2,) and fams[k].dim == 2
    assert [f.family for f in fams.values()] == list(fams)
    assert [f.reparameterized for f in fams.values()] == [True, True, True, False]
    assert all(f.dtype == jnp.float32 for f in fams.values())


def test_float64_when_enabled(x64):
    assert all(f.dtype == jnp.float64 for f in _families().values())


@jax.jit
def _summaries(qs):
    out = {}
    for k, q in qs.items():
        out[k] = dict(mean=q.mean(), cov=q.covariance(), log_sds=q.log_marginal_scales())
        if k != "mixture":
            out[k].update(entropy=q.entropy(), mvn=q.to_mvn())
    out["mixture"].update(probs=qs["mixture"].probs, mean_and_log_sd=mean_and_log_sd(qs["mixture"]))
    out["full"]["tril"] = qs["full"].scale_tril
    return out


def test_moments_entropy_and_mvn_views_in_closed_form(x64):
    s = _summaries(_families())
    g, d, f, m = (s[k] for k in ("gaussian", "diag", "full", "mixture"))
    assert float(g["mean"]) == 0.7 and float(g["cov"]) == pytest.approx(math.exp(-0.8))
    np.testing.assert_allclose(d["cov"], np.diag(np.exp([0.6, -1.2])), rtol=1e-14)
    np.testing.assert_allclose(f["cov"], L @ L.T, rtol=1e-14)
    np.testing.assert_allclose(f["tril"], L, rtol=1e-14)
    np.testing.assert_allclose(f["log_sds"], 0.5 * np.log(np.diag(L @ L.T)), rtol=1e-12)
    np.testing.assert_allclose(d["log_sds"], [0.3, -0.6])
    assert float(g["log_sds"]) == -0.4
    for r in (g, d, f):
        cov = np.atleast_2d(r["cov"])
        ref = stats.multivariate_normal(np.atleast_1d(r["mean"]), cov).entropy()
        assert float(r["entropy"]) == pytest.approx(ref, rel=1e-12)
        loc, tril, log_diag = r["mvn"]  # the (d,), (d, d), (d,) view; d = 1 for a Gaussian
        assert loc.shape == (cov.shape[0],) and tril.shape == cov.shape
        np.testing.assert_allclose(tril @ tril.T, cov, rtol=1e-13)
        np.testing.assert_allclose(log_diag, np.log(np.diag(tril)), rtol=1e-13)
    # The mixture's moments from its components.
    w = np.exp(MIX["logits"]) / np.sum(np.exp(MIX["logits"]))
    locs, var = np.asarray(MIX["locs"]), np.exp(2 * np.asarray(MIX["log_scales"]))
    mean = w @ locs
    cov = sum(
        wk * (np.diag(vk) + np.outer(mk - mean, mk - mean)) for wk, mk, vk in zip(w, locs, var)
    )
    np.testing.assert_allclose(m["probs"], w, rtol=1e-12)
    np.testing.assert_allclose(m["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(m["cov"], cov, rtol=1e-12)
    np.testing.assert_allclose(m["log_sds"], MIX["log_scales"])
    mm, sd = m["mean_and_log_sd"]
    np.testing.assert_allclose(mm, mean, rtol=1e-12)
    np.testing.assert_allclose(sd, 0.5 * np.log(np.diag(cov)), rtol=1e-12)


def test_full_rank_from_cov_round_trip(x64):
    cov = np.array([[2.0, 0.6], [0.6, 0.5]])
    s = _summaries(_families(full=dj.FullRankGaussian.from_cov([1.0, 2.0], cov)))["full"]
    np.testing.assert_allclose(s["cov"], cov, rtol=1e-13)
    np.testing.assert_allclose(s["mean"], [1.0, 2.0])


def test_full_rank_log_marginal_scales_do_not_overflow():
    """A factor beyond sqrt(float32 max): the covariance overflows, the log scales do not."""
    huge = dj.FullRankGaussian([0.0, 0.0], [[0.0, 0.0], [1e30, 0.0]])
    s = _summaries(_families(full=huge))["full"]
    assert np.isinf(float(s["cov"][1, 1]))
    np.testing.assert_allclose(s["log_sds"], [0.0, math.log(1e30)], rtol=1e-6)


@jax.jit
def _gradients(qs, x1, x2):
    """The upper-triangle check, the score and every family's gradient of a sampled sum."""
    f, g = qs["full"], qs["gaussian"]
    upper = f._replace(chol=f.chol.at[0, 1].set(5.0))

    def total(q_):
        return jnp.sum(q_.sample(KEY, 8))

    return dict(
        full=(f.log_prob(x2), upper.log_prob(x2), jax.grad(lambda q: jnp.sum(q.log_prob(x2)))(f)),
        score=(g.score(x1), jax.vmap(jax.grad(lambda q_, xi: q_.log_prob(xi)), (None, 0))(g, x1)),
        sample=({k: jax.grad(total)(q) for k, q in qs.items()}, g.sample(KEY, 8)),
    )


def _grads(**kw):
    x1 = jnp.linspace(-2.0, 3.0, 5)
    x2 = jnp.array([[0.3, 0.1], [-2.0, 1.0]])
    return _gradients(_families(**kw), x1, x2)


def test_full_rank_ignores_the_upper_triangle():
    a, b, g = _grads()["full"]
    np.testing.assert_array_equal(a, b)
    assert float(g.chol[0, 1]) == 0.0 and float(g.chol[1, 0]) != 0.0


def test_score_is_the_gradient_of_log_prob():
    score, auto = _grads()["score"]
    np.testing.assert_allclose(score.loc, auto.loc, rtol=1e-6)
    np.testing.assert_allclose(score.log_scale, auto.log_scale, rtol=1e-6, atol=1e-6)


def test_samples_are_reparameterized_except_the_mixture_component():
    g, x = _grads()["sample"]
    assert float(g["gaussian"].loc) == pytest.approx(8.0)
    assert float(g["gaussian"].log_scale) == pytest.approx(float(jnp.sum(x - 0.7)), rel=1e-5)
    np.testing.assert_allclose(g["diag"].loc, [8.0, 8.0])
    np.testing.assert_allclose(g["full"].loc, [8.0, 8.0])
    np.testing.assert_array_equal(g["mixture"].logits, 0.0)  # the discrete draw: no gradient
    assert float(jnp.sum(g["mixture"].locs)) == pytest.approx(16.0)  # within components: yes


def test_isotropic():
    fams = _families()
    assert float(fams["gaussian"].isotropic(0.5).log_scale) == 0.5
    np.testing.assert_allclose(fams["diag"].isotropic(0.5).log_scale, [0.5, 0.5])
    full = fams["full"].isotropic(0.5)
    np.testing.assert_allclose(jnp.diagonal(full.chol), [0.5, 0.5])
    np.testing.assert_array_equal(jnp.tril(full.chol, -1), 0.0)
    np.testing.assert_array_equal(full.loc, fams["full"].loc)


# --- sampling -------------------------------------------------------------------


def test_sample_shapes_and_key_conventions():
    q1, q2 = dj.Gaussian(0.0, 0.0), dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])
    assert _shape(lambda: q1.sample(KEY)) == ()
    assert _shape(lambda: q1.sample(KEY, 3)) == (3,)
    assert _shape(lambda: q1.sample(KEY, (3, 4))) == (3, 4)
    assert _shape(lambda: q2.sample(KEY, 3)) == (3, 2)
    assert _shape(lambda: q2.sample(KEY, np.int64(3))) == (3, 2)
    assert _shape(lambda: q2.sample(seed=KEY, sample_shape=(2, 5))) == (2, 5, 2)
    assert _shape(lambda: dj.MixtureGaussian(**MIX).sample(KEY, (2, 3))) == (2, 3, 2)
    same = jax.jit(lambda: (q2.sample(seed=KEY, sample_shape=4), q2.sample(KEY, 4)))()
    np.testing.assert_array_equal(*same)
    with pytest.raises(ValueError, match="exactly one PRNG key"):
        q1.sample()
    with pytest.raises(ValueError, match="exactly one PRNG key"):
        q1.sample(KEY, 3, seed=KEY)
    with pytest.raises(ValueError, match="not an int"):
        q1.sample(0, 3)


@jax.jit
def _draws(qs, key):
    return {k: q.sample(jax.random.fold_in(key, i), 40_000) for i, (k, q) in enumerate(qs.items())}


def _assert_moments(x, mean, cov, label):
    """Sample mean and second moments within 5 standard errors of the exact ones."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    n = len(x)
    se_mean = x.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean), (label, x.mean(0), mean)
    dev = x - mean
    outer = dev[:, :, None] * dev[:, None, :]
    se_cov = outer.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(outer.mean(0) - np.atleast_2d(cov)) < 5 * se_cov), (label, outer.mean(0))


def test_sample_moments_within_5_standard_errors():
    fams = _families()
    draws, s = _draws(fams, KEY), _summaries(fams)
    for family in fams:
        _assert_moments(draws[family], np.atleast_1d(s[family]["mean"]), s[family]["cov"], family)


# --- validation and pytrees ---------------------------------------------------------


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: dj.Gaussian(np.nan, 0.0), "loc must be finite"),
        (lambda: dj.Gaussian(0.0, np.inf), "log_scale must be finite"),
        (lambda: dj.Gaussian("a", 0.0), "loc must be numeric"),
        (lambda: dj.Gaussian(None, 0.0), "loc must be numeric"),
        (lambda: dj.Gaussian.from_loc_scale(0.0, -1.0), "scale must be positive"),
        (lambda: dj.Gaussian.from_loc_scale(0.0, 0.0), "scale must be positive"),
        (lambda: dj.Gaussian.from_loc_variance(0.0, -1.0), "variance must be positive"),
        (lambda: dj.DiagGaussian([0.0, 0.0], [0.0]), r"loc and log_scale must both be \(d,\)"),
        (lambda: dj.DiagGaussian([[0.0]], [[0.0]]), r"must both be \(d,\)"),
        (lambda: dj.DiagGaussian.from_loc_scale([0.0, 0.0], [1.0, -1.0]), "scale must be positive"),
        (lambda: dj.FullRankGaussian([0.0, 0.0], [[0.0]]), r"chol \(d, d\)"),
        (
            lambda: dj.FullRankGaussian.from_cov([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]]),
            "positive definite",
        ),
        (lambda: dj.FullRankGaussian.from_cov([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (lambda: dj.FullRankGaussian.from_cov([0.0], [[[1.0]]]), r"\(d, d\) matrix"),
        (lambda: dj.MixtureGaussian([0.0, 0.0], [[0.0], [1.0]], [[0.0]]), r"logits must be \(C,\)"),
        (lambda: dj.MixtureGaussian([0.0], [[0.0]], [[np.nan]]), "log_scales must be finite"),
    ],
)
def test_bad_parameters_raise_value_errors_naming_them(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_built_from_constants_inside_jit():
    """Validation runs on the constants; the arrays inside jit are tracers (no error)."""

    @jax.jit
    def build():
        return (
            dj.Gaussian(0.0, 0.0),
            dj.DiagGaussian([0.0, 1.0], [0.0, 0.0]),
            dj.FullRankGaussian.from_cov([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]),
            dj.MixtureGaussian(**MIX),
            dj.default_q0(),
        )

    g, d, f, m, q0 = build()
    assert isinstance(m, dj.MixtureGaussian) and d.loc.shape == (2,) and float(q0.log_scale) > 0
    with pytest.raises(ValueError, match="loc must be finite"):
        jax.jit(lambda: dj.Gaussian(np.nan, 0.0))()


def test_pytree_rebuilds_skip_validation():
    q = dj.DiagGaussian([0.5, -1.0], [0.3, -0.6])
    inf = jax.tree_util.tree_map(lambda a: a * np.inf, q)  # a gradient may be inf
    assert isinstance(inf, dj.DiagGaussian) and np.all(np.isinf(inf.log_scale))
    nan = jax.jit(lambda m: dj.Gaussian(m, m).loc)(jnp.float32(np.nan))  # traced: unchecked
    assert np.isnan(float(nan))
    with pytest.raises(ValueError, match="q must be a divjax family"):
        check_family((0.0, 0.0))


def test_default_q0_is_n_0_5():
    q0 = dj.default_q0()
    assert float(q0.loc) == 0.0 and float(q0.variance) == pytest.approx(5.0)
