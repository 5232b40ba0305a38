"""Targets: Gaussian mixtures of every dimension, log densities, `as_target`, input validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import divjax as dj
from divjax.targets import check_pair

KEY = jax.random.key(9)
W1, M1, S1 = [0.6, 1.4], [-2.0, 3.0], [0.5, 1.0]  # Z = 2
W2, M2 = [2.0, 5.0], [[-2.0, 0.0], [2.0, 1.0]]
COVS = [[[1.0, 0.3], [0.3, 0.5]], [[0.8, -0.2], [-0.2, 1.2]]]
SCALES2 = [[0.7, 1.0], [1.0, 0.8]]


def _targets():
    return {
        "1d": dj.GaussianMixture(W1, M1, S1),
        "covs": dj.GaussianMixture(W2, M2, covs=COVS),
        "diag": dj.GaussianMixture(W2, M2, SCALES2),
    }


def _scipy(kind, x):
    """``(log p, log Z)`` of the normalized mixture by scipy."""
    if kind == "1d":
        w, comps = np.asarray(W1), [stats.norm(m, s) for m, s in zip(M1, S1)]
    else:
        covs = COVS if kind == "covs" else [np.diag(np.square(s)) for s in SCALES2]
        w, comps = np.asarray(W2), [stats.multivariate_normal(m, c) for m, c in zip(M2, covs)]
    z = w.sum()
    return logsumexp([np.log(wk / z) + c.logpdf(x) for wk, c in zip(w, comps)], axis=0), np.log(z)


@jax.jit
def _evaluate(ps, xs):
    out = {}
    for k, p in ps.items():
        x = xs[k]
        auto = jax.vmap(jax.grad(lambda xi, p=p: p.log_prob(xi)))(x)
        out[k] = dict(
            log_prob=p.log_prob(x),
            unnormalized=p.unnormalized_log_prob(x),
            components=p.component_log_probs(x),
            grad=p.grad_log_prob(x),
            auto_grad=auto,
            mean=p.mean(),
            cov=p.covariance(),
            var=p.variance(),
            log_z=p.log_normalizer,
        )
    return out


def _points():
    return {
        "1d": jnp.linspace(-4.0, 6.0, 9),
        "covs": jnp.stack([jnp.linspace(-4.0, 4.0, 9), jnp.linspace(3.0, -2.0, 9)], -1),
        "diag": jnp.stack([jnp.linspace(-4.0, 4.0, 9), jnp.linspace(3.0, -2.0, 9)], -1),
    }


def test_densities_gradients_and_moments_vs_scipy_and_numpy(x64):
    ps, xs = _targets(), _points()
    got = _evaluate(ps, xs)
    for kind, r in got.items():
        ref, log_z = _scipy(kind, np.asarray(xs[kind]))
        np.testing.assert_allclose(r["log_prob"], ref, rtol=1e-12, err_msg=kind)
        np.testing.assert_allclose(r["unnormalized"], ref + log_z, rtol=1e-12, err_msg=kind)
        np.testing.assert_allclose(float(r["log_z"]), log_z, rtol=1e-14)
        np.testing.assert_allclose(logsumexp(r["components"], axis=-1), ref, rtol=1e-12)
        np.testing.assert_allclose(r["grad"], r["auto_grad"], rtol=1e-10, atol=1e-12, err_msg=kind)
        p = ps[kind]
        w = np.asarray(p.probs)
        m = np.asarray(p.locs)
        if kind == "1d":
            mean = w @ m
            var = w @ (np.square(S1) + (m - mean) ** 2)
            np.testing.assert_allclose(
                [r["mean"], r["cov"], r["var"]], [mean, var, var], rtol=1e-13
            )
            continue
        covs = np.asarray(p.covs)
        mean = w @ m
        cov = np.einsum("k,kij->ij", w, covs + np.einsum("ki,kj->kij", m - mean, m - mean))
        np.testing.assert_allclose(r["mean"], mean, rtol=1e-13)
        np.testing.assert_allclose(r["cov"], cov, rtol=1e-13)
        np.testing.assert_allclose(r["var"], np.diag(cov), rtol=1e-13)


def test_properties_and_views(x64):
    ps = _targets()
    p1, pc, pd = ps["1d"], ps["covs"], ps["diag"]
    assert p1.event_shape == () and p1.dim == 1 and p1.num_components == 2
    assert pc.event_shape == (2,) and pc.dim == 2
    np.testing.assert_allclose(p1.weights, W1, rtol=1e-14)
    np.testing.assert_allclose(p1.probs, np.asarray(W1) / 2, rtol=1e-14)
    np.testing.assert_allclose(p1.log_probs, np.log(np.asarray(W1) / 2), rtol=1e-14)
    np.testing.assert_allclose(p1.scales, S1)
    np.testing.assert_allclose(p1.covs, np.square(S1))
    np.testing.assert_allclose(pc.covs, COVS, rtol=1e-13)
    np.testing.assert_allclose(pd.covs[1], np.diag([1.0, 0.64]), rtol=1e-13)
    np.testing.assert_allclose(pd.scales, SCALES2, rtol=1e-13)
    np.testing.assert_allclose(pc.scales, np.sqrt(np.diagonal(COVS, axis1=1, axis2=2)), rtol=1e-13)
    locs, trils = p1.mvn()
    assert locs.shape == (2, 1) and trils.shape == (2, 1, 1)
    locs, trils = pc.mvn()
    np.testing.assert_allclose(trils @ np.swapaxes(trils, -1, -2), COVS, rtol=1e-13)
    assert dj.default_target().num_components == 2


@jax.jit
def _samples(ps, key):
    return {k: p.sample(jax.random.fold_in(key, i), 40_000) for i, (k, p) in enumerate(ps.items())}


def test_sample_moments_within_5_standard_errors():
    ps = _targets()
    draws, exact = _samples(ps, KEY), _evaluate(ps, _points())
    for kind, x in draws.items():
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        mean, cov = np.atleast_1d(exact[kind]["mean"]), np.atleast_2d(exact[kind]["cov"])
        n = len(x)
        assert np.all(np.abs(x.mean(0) - mean) < 5 * x.std(0, ddof=1) / math.sqrt(n)), kind
        outer = (x - mean)[:, :, None] * (x - mean)[:, None, :]
        se = outer.std(0, ddof=1) / math.sqrt(n)
        assert np.all(np.abs(outer.mean(0) - cov) < 5 * se), kind
    assert jax.eval_shape(lambda: ps["covs"].sample(seed=KEY, sample_shape=(3, 4))).shape == (
        3,
        4,
        2,
    )
    assert jax.eval_shape(lambda: ps["1d"].sample(KEY, 5)).shape == (5,)


# --- weights: unnormalized, huge, tiny ----------------------------------------------


@jax.jit
def _weights_view(p, x):
    return p.probs, p.log_normalizer, p.log_prob(x), p.unnormalized_log_prob(x), p.sample(KEY, 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("w", [1e300, 1e-300, 1e30, 1.0], ids=["1e300", "1e-300", "1e30", "1"])
def test_weights_beyond_the_float_range_are_valid(dtype, w):
    """Normalized in log space in float64 before the cast: [w, w] is the same target as [1, 1]."""
    with jax.enable_x64(dtype == "float64"):
        p = dj.GaussianMixture([w, w], M1, S1)
        assert p.log_weights.dtype == jnp.dtype(dtype)
        probs, log_z, log_p, log_pu, x = _weights_view(p, jnp.asarray(M1))
        np.testing.assert_allclose(probs, [0.5, 0.5], rtol=1e-6)
        np.testing.assert_allclose(float(log_z), math.log(2.0) + math.log(w), rtol=1e-6)
        ref = logsumexp([np.log(0.5) + stats.norm.logpdf(M1, m, s) for m, s in zip(M1, S1)], 0)
        np.testing.assert_allclose(log_p, ref, rtol=1e-5)
        np.testing.assert_allclose(log_pu, ref + math.log(2.0 * w), rtol=1e-5)
        assert np.all(np.isfinite(x))
    logw = dj.GaussianMixture.from_log_weights([1000.0, 1000.0], M1, S1)  # beyond float64 too
    np.testing.assert_allclose(logw.probs, [0.5, 0.5])
    assert np.isinf(float(logw.weights[0]))  # as documented: use log_weights


@jax.jit
def _some_divergences(p, q):
    return {n: dj.divergence(n, p, q) for n in ("kl_reverse", "chi2_forward", "chi2_reverse")}


def test_unnormalized_weights_give_the_same_divergences():
    """The divergences are between the normalized p and q, whatever the mass."""
    q = dj.Gaussian.from_loc_scale(1.0, 1.2)
    ref = _some_divergences(dj.GaussianMixture([0.3, 0.7], M1, S1), q)
    for w in ([3e5, 7e5], [3e-300, 7e-300], [3e300, 7e300]):
        got = _some_divergences(dj.GaussianMixture(w, M1, S1), q)
        # log w is stored in float32: |log w| ~ 690 carries an absolute error ~ 3e-5.
        rtol = 1e-5 if w[0] == 3e5 else 1e-4
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], rtol=rtol, err_msg=(w, name))


# --- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights=[], locs=[], scales=[]), "at least one component"),
        (dict(weights=["a", "b"], locs=[0, 1], scales=[1, 1]), "weights must be numeric"),
        (dict(weights="a", locs=[1.0], scales=[1.0]), "weights must be numeric"),
        (dict(weights=None, locs=[0, 1], scales=[1, 1]), "weights must be numeric"),
        (dict(weights=[[1.0]], locs=[0], scales=[1]), "weights must be"),
        (dict(weights=[0.3, -0.7], locs=[0, 1], scales=[1, 1]), "weights must be positive"),
        (dict(weights=[0.3, 0.0], locs=[0, 1], scales=[1, 1]), "weights must be positive"),
        (dict(weights=[0.3, np.inf], locs=[0, 1], scales=[1, 1]), "weights must be finite"),
        (dict(weights=[0.3, np.nan], locs=[0, 1], scales=[1, 1]), "weights must be finite"),
        (dict(weights=[0.3, 0.7], locs=[0, 1], scales=[1, 0]), "scales must be positive"),
        (dict(weights=[0.3, 0.7], locs=[0, 1], scales=[1, np.inf]), "scales must be finite"),
        (dict(weights=[0.3, 0.7], locs=[0, 1, 2], scales=[1, 1]), "M = 2 components"),
        (dict(weights=[0.3, 0.7], locs=[0, np.nan], scales=[1, 1]), "locs must be finite"),
        (dict(weights=[0.3, 0.7], locs=["a", "b"], scales=[1, 1]), "locs must be numeric"),
        (dict(weights=[0.3, 0.7], locs=[0, 1], scales=[1, 1, 1]), r"scales must be \(M,\)"),
        (dict(weights=[1.0], locs=[0.0]), "1-D mixture takes scales"),
        (dict(weights=[1.0], locs=[0.0], covs=[[1.0]]), "1-D mixture takes scales"),
        (dict(weights=[1.0, 1.0], locs=[[0.0, 0.0], [1.0, 1.0]], scales=[1.0, 1.0]), r"\(M, d\)"),
        (dict(weights=[1.0], locs=[[0.0, 0.0]]), "exactly one of scales"),
        (dict(weights=[1.0], locs=[[0.0, 0.0]], scales=[[1.0, 1.0]], covs=[np.eye(2)]), "exactly"),
        (dict(weights=[1.0], locs=[[0.0, 0.0]], covs=[[[1.0, 2.0], [2.0, 1.0]]]), "positive def"),
        (dict(weights=[1.0], locs=[[0.0, 0.0]], covs=[[[1.0, 0.5], [0.0, 1.0]]]), "symmetric"),
        (dict(weights=[1.0], locs=[[0.0, 0.0]], covs=[np.eye(3)]), r"covs must be \(M, d, d\)"),
        (dict(weights=[1.0], locs=[[[0.0]]], scales=[[1.0]]), r"locs must be \(M,\) or \(M, d\)"),
    ],
)
def test_bad_mixtures_raise_value_errors_naming_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dj.GaussianMixture(**kwargs)


def test_bad_log_weights():
    with pytest.raises(ValueError, match="log_weights must be finite"):
        dj.GaussianMixture.from_log_weights([0.0, -np.inf], M1, S1)
    with pytest.raises(ValueError, match=r"log_weights must be \(M,\)"):
        dj.GaussianMixture.from_log_weights([], [], [])


def test_constructed_inside_jit():
    """Traced inputs are not checked (and nothing breaks); constants still are."""
    locs = jax.jit(lambda m: dj.GaussianMixture([1.0, 1.0], m, jnp.ones((2, 2))).locs)(
        jnp.zeros((2, 2))
    )
    assert locs.shape == (2, 2)
    covs = jax.jit(lambda c: dj.GaussianMixture([1.0], jnp.zeros((1, 2)), covs=c).covs)(
        jnp.eye(2)[None]
    )
    np.testing.assert_allclose(covs, np.eye(2)[None], rtol=1e-6)
    p = jax.jit(lambda: dj.GaussianMixture(W1, M1, S1))()
    np.testing.assert_allclose(p.probs, [0.3, 0.7], rtol=1e-6)


# --- log densities ---------------------------------------------------------------


def banana(x):
    """A per-point 2-D log density (unnormalized)."""
    return -0.5 * (x[0] ** 2 / 4.0 + (x[1] - 0.25 * x[0] ** 2) ** 2)


def banana_batched(x):
    return -0.5 * (x[:, 0] ** 2 / 4.0 + (x[:, 1] - 0.25 * x[:, 0] ** 2) ** 2)


def test_log_density_per_point_and_batched_conventions_agree():
    per_point = dj.LogDensity(banana).bind((2,))
    batched = dj.LogDensity(banana_batched, batched=True).bind((2,))
    x = jax.random.normal(KEY, (3, 5, 2))
    a, b = jax.jit(
        lambda x: (per_point.unnormalized_log_prob(x), batched.unnormalized_log_prob(x))
    )(x)
    assert a.shape == b.shape == (3, 5)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(a[0, 0], banana(x[0, 0]), rtol=1e-6)
    one_d = dj.LogDensity(lambda x: -0.5 * x**2).bind(())
    assert jax.eval_shape(lambda: one_d.unnormalized_log_prob(jnp.zeros((4, 3)))).shape == (4, 3)
    assert per_point.dim == 2 and one_d.dim == 1
    assert "per-point" in repr(per_point) and "batched" in repr(batched)


@pytest.mark.parametrize(
    "density, shape, match",
    [
        (dj.LogDensity(lambda x: -0.5 * x**2), (2,), r"returned shape \(2,\).*expected \(\)"),
        (dj.LogDensity(lambda x: -0.5 * x**2 * jnp.ones(1)), (), r"shape \(1,\).*expected \(\)"),
        (
            dj.LogDensity(lambda x: -0.5 * jnp.sum(x**2), batched=True),
            (2,),
            r"returned shape \(\) for a batch of shape \(3, 2\); expected \(3,\)",
        ),
        (
            dj.LogDensity(lambda x: -0.5 * x**2, batched=True),
            (2,),
            r"returned shape \(3, 2\).*expected \(3,\)",
        ),
        (dj.LogDensity(banana_batched), (2,), "failed on one point.*declare batched=True"),
        (dj.LogDensity(banana, (3,)), (2,), r"event_shape \(3,\) does not match q's \(2,\)"),
    ],
    ids=["vector-for-point", "1d-shape-1", "scalar-for-batch", "batch-by-d", "batched-fn", "dim"],
)
def test_log_density_output_shape_errors_name_the_expected_shape(density, shape, match):
    with pytest.raises(ValueError, match=match):
        density.bind(shape)


def test_wrong_output_shape_is_an_error_never_a_silent_gradient():
    """Through the estimators and fit: the ValueError comes before anything is computed."""
    q1, q2 = dj.Gaussian(0.0, 0.0), dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])
    loss = dj.surrogate("kl_reverse", "reparam", lambda x: -0.5 * x**2 * jnp.ones(1), 8)
    with pytest.raises(ValueError, match=r"expected \(\)"):
        jax.eval_shape(jax.grad(loss, has_aux=True), q1, KEY)
    loss = dj.surrogate("kl_reverse", "reparam", banana_batched, 8)
    with pytest.raises(ValueError, match="declare batched=True"):
        jax.eval_shape(jax.grad(loss, has_aux=True), q2, KEY)
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        dj.fit(
            dj.LogDensity(lambda x: jnp.sum(x), batched=True), q2, "kl_reverse", "reparam", key=KEY
        )
    with pytest.raises(ValueError, match=r"expected \(\)"):
        dj.grad_stats("kl_reverse", "stl", lambda x: x, q2, 4, 8, KEY)


def test_log_density_pytree_and_validation():
    d = dj.LogDensity(banana, (2,))
    assert d == dj.LogDensity(banana, (2,)) and hash(d) == hash(dj.LogDensity(banana, (2,)))
    assert d != dj.LogDensity(banana, (2,), normalized=True)
    leaves, tree = jax.tree_util.tree_flatten(d)
    assert leaves == [] and jax.tree_util.tree_unflatten(tree, leaves) == d
    with pytest.raises(ValueError, match="callable"):
        dj.LogDensity(3.0)
    with pytest.raises(ValueError, match=r"event_shape must be \(\) or \(d,\)"):
        dj.LogDensity(banana, (2, 2))
    with pytest.raises(ValueError, match="not known yet"):
        _ = dj.LogDensity(banana).dim
    with pytest.raises(ValueError, match="not known yet"):
        dj.LogDensity(banana).unnormalized_log_prob(jnp.zeros(2))
    with pytest.raises(ValueError, match="unnormalized: log_prob is unknown"):
        d.log_prob(jnp.zeros(2))
    with pytest.raises(ValueError, match="cannot be sampled"):
        d.sample(KEY, 3)
    assert float(dj.LogDensity(banana, (2,), normalized=True).log_prob(jnp.zeros(2))) == 0.0


class _Distribution:
    """A stand-in for a numpyro / TFP / distrax distribution: batched, normalized."""

    event_shape = (2,)

    def log_prob(self, x):
        return -0.5 * jnp.sum(x**2, -1) - math.log(2 * math.pi)


def test_as_target_wraps_everything_once():
    p = dj.default_target()
    assert dj.as_target(p) is p
    d = dj.LogDensity(banana)
    assert dj.as_target(d) is d
    bound = dj.as_target(banana, (2,))
    assert isinstance(bound, dj.LogDensity) and bound.event_shape == (2,) and not bound.batched
    dist = dj.as_target(_Distribution())
    assert dist.batched and dist.normalized and dist.event_shape == (2,)
    np.testing.assert_allclose(dist.log_prob(jnp.zeros((1, 2))), [-math.log(2 * math.pi)])
    with pytest.raises(ValueError, match="target must be a divjax.GaussianMixture"):
        dj.as_target(3.0)
    with pytest.raises(ValueError, match="does not match"):
        dj.as_target(_Distribution(), (3,))


def test_check_pair_names_the_mismatch():
    p1, p2 = dj.default_target(), dj.GaussianMixture(W2, M2, SCALES2)
    q1, q2 = dj.Gaussian(0.0, 0.0), dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])
    check_pair(p1, q1)
    check_pair(p2, q2)
    check_pair(dj.LogDensity(banana), q2)  # shape taken from q
    with pytest.raises(
        ValueError, match=r"1-D target \(event_shape \(\)\) needs a divjax.Gaussian"
    ):
        check_pair(p1, q2)
    with pytest.raises(ValueError, match="d = 2 target needs a DiagGaussian, FullRankGaussian"):
        check_pair(p2, q1)
    with pytest.raises(ValueError, match="dimension mismatch: p has d = 2, q has d = 3"):
        check_pair(p2, dj.DiagGaussian([0.0] * 3, [0.0] * 3))
    with pytest.raises(ValueError, match="q must be a divjax.Gaussian"):
        check_pair(p1, (0.0, 0.0))


def test_default_target():
    p = dj.default_target()
    np.testing.assert_allclose(p.probs, [0.3, 0.7], rtol=1e-6)
    np.testing.assert_allclose(p.locs, [-2.0, 3.0])
    np.testing.assert_allclose(p.scales, [0.5, 1.0])
