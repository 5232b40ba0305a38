"""Every estimator in d dimensions through the one `divjax.surrogate` API.

Covers what `test_multivariate` does not: the `GaussianMixture` constructor
for (M, d) locs, msc / msc_rb at their chain's stationarity, score-function
estimators on a `MixtureGaussian` q against a dense-grid reference, alpha
surrogates in 2-D against a product-structure exact gradient, and the errors.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax import alpha as A
from divjax.mv_families import MvGaussianMixture

KEY = jax.random.key(11)


def _p2():
    return dj.GaussianMixture(
        [0.3, 0.7],
        [[-2.0, 0.0], [2.0, 1.0]],
        covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.8, -0.2], [-0.2, 1.2]]],
    )


def _assert_within_5se(draws, exact, label):
    for a, b in zip(jax.tree_util.tree_leaves(draws), jax.tree_util.tree_leaves(exact)):
        a, b = np.asarray(a), np.asarray(b)
        se = a.std(0, ddof=1) / math.sqrt(a.shape[0])
        assert np.all(np.abs(a.mean(0) - b) <= 5 * se), (label, a.mean(0), b, se)


def test_constructor_builds_d_dimensional_targets(x64):
    p = dj.GaussianMixture([1.0, 2.0], [[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.5], [2.0, 1.0]])
    assert isinstance(p, MvGaussianMixture) and p.dim == 2
    np.testing.assert_allclose(p.covs[1], np.diag([4.0, 1.0]))
    assert isinstance(_p2(), MvGaussianMixture)
    # d = 1 passed explicitly: the same numbers as the 1-D target, through the
    # same public functions.
    p1, q1 = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.2)
    pd = dj.GaussianMixture(p1.weights, p1.locs[:, None], p1.scales[:, None])
    qd = dj.DiagGaussian([1.0], [math.log(1.2)])
    for name in dj.DIVERGENCES:
        assert float(dj.divergence(name, pd, qd)) == float(dj.divergence(name, p1, q1))
        g1, gd = dj.exact_grad(name, p1, q1), dj.exact_grad(name, pd, qd)
        np.testing.assert_allclose([gd.loc[0], gd.log_scale[0]], [*g1], rtol=1e-9, atol=1e-12)
    # Built inside jit (no validation on tracers), as the 1-D target is.
    locs = jax.jit(lambda m: dj.GaussianMixture([1.0, 1.0], m, jnp.ones((2, 2))).locs)(
        jnp.zeros((2, 2))
    )
    assert locs.shape == (2, 2)


@pytest.mark.parametrize("estimator", ["msc", "msc_rb"])
def test_msc_unbiased_at_stationarity_in_2d(x64, estimator):
    """Independent chains run 30 steps at a fixed q: the last gradients vs the exact one."""
    p = _p2()
    q = dj.FullRankGaussian.from_cov([0.5, 0.5], [[6.0, 0.5], [0.5, 2.5]])
    chain = dj.stateful_surrogate("kl_forward", estimator, p, 8)

    def last_grad(key):
        k0, k1 = jax.random.split(key)

        def body(state, kk):
            g, (_, new) = jax.grad(chain.loss_fn, has_aux=True)(q, kk, state)
            return new, g

        _, gs = jax.lax.scan(body, chain.init(q, k0), jax.random.split(k1, 30))
        return jax.tree_util.tree_map(lambda a: a[-1], gs)

    draws = jax.jit(jax.vmap(last_grad))(jax.random.split(KEY, 400))
    assert draws.chol.shape == (400, 2, 2)
    _assert_within_5se(draws, dj.exact_grad("kl_forward", p, q), estimator)


def _mixture_q():
    return dj.MixtureGaussian(
        jnp.array([0.2, -0.3]), jnp.array([[-1.5], [2.0]]), jnp.log(jnp.array([[0.6], [0.8]]))
    )


def _grid_reference(p, q):
    """Dense-grid integrals in float64 (independent of divjax's quadrature)."""
    x = np.linspace(-14.0, 14.0, 28_001)[:, None]
    dx = x[1, 0] - x[0, 0]
    lq, lp = np.asarray(q.log_prob(x)), np.asarray(p.normalized_log_prob(x))
    score = jax.vmap(jax.grad(lambda q_, xi: q_.log_prob(xi)), (None, 0))(q, jnp.asarray(x))

    def integral(f):
        return jax.tree_util.tree_map(
            lambda s: np.tensordot(f, np.asarray(s), axes=(0, 0)) * dx, score
        )

    return {
        "kl_reverse": integral(np.exp(lq) * (lq - lp)),
        "chi2_reverse": integral(2.0 * np.exp(2.0 * lq - lp)),
    }


def test_score_function_estimators_on_a_mixture_q(x64):
    """reinforce(-loo, -cv) and score(-cv) are unbiased for every q parameter, logits included."""
    p = dj.GaussianMixture([0.4, 0.6], [[-2.0], [2.5]], [[0.9], [1.1]])
    q = _mixture_q()
    ref = _grid_reference(p, q)
    for name, est in [
        ("kl_reverse", "reinforce"),
        ("kl_reverse", "reinforce_loo"),
        ("kl_reverse", "reinforce_cv"),
        ("chi2_reverse", "score"),
        ("chi2_reverse", "score_cv"),
    ]:
        f = dj.surrogate(name, est, p, 16)
        draws = jax.jit(jax.vmap(lambda k, f=f: jax.grad(f, has_aux=True)(q, k)[0]))(
            jax.random.split(KEY, 2000)
        )
        assert draws.logits.shape == (2000, 2)
        _assert_within_5se(draws, ref[name], (name, est))


def _product_target():
    """p(x1, x2) = p1(x1) N(x2; 0.5, 0.8^2): 1-D alpha-divergences add (Renyi) or multiply."""
    return (
        dj.GaussianMixture([0.3, 0.7], [[-2.0, 0.5], [3.0, 0.5]], [[0.5, 0.8], [1.0, 0.8]]),
        dj.GaussianMixture([0.3, 0.7], [-2.0, 3.0], [0.5, 1.0]),
        dj.GaussianMixture([1.0], [0.5], [0.8]),
    )


def _product_alpha_value(kind, alpha, factors, q):
    a = A._exponent(kind, alpha)
    log_i = sum(
        A.log_integral(p_j, dj.Gaussian._make((q.loc[j], q.log_scale[j])), a)
        for j, p_j in enumerate(factors)
    )
    if kind.startswith("renyi"):
        return log_i / (alpha - 1.0)
    return -jnp.expm1(log_i) / (1.0 if kind == "hellinger" else alpha * (1.0 - alpha))


@pytest.mark.parametrize(
    "kind,alpha,est",
    [
        ("renyi_reverse", 0.5, "sn"),
        ("renyi_reverse", 0.5, "reparam"),
        ("renyi_forward", 0.5, "sn"),
        ("renyi_forward", 0.5, "reparam"),
        ("amari", 0.5, "score"),
        ("amari", 0.5, "reparam"),
        ("hellinger", None, "score"),
    ],
)
def test_alpha_surrogates_in_2d(x64, kind, alpha, est):
    p, *factors = _product_target()
    q = dj.DiagGaussian([1.0, 0.2], [math.log(1.1), math.log(0.9)])
    exact = jax.grad(lambda q_: _product_alpha_value(kind, alpha, factors, q_))(q)
    # Consistent Renyi estimators (bias O(1/K)): fewer, larger batches.
    reps, k = (64, 4096) if kind.startswith("renyi") else (300, 64)
    f = A.alpha_surrogate(kind, alpha, est, p, k)
    draws = jax.jit(jax.vmap(lambda kk: jax.grad(f, has_aux=True)(q, kk)[0]))(
        jax.random.split(KEY, reps)
    )
    _assert_within_5se(draws, exact, (kind, alpha, est))


def test_product_reference_matches_1d_alpha_divergence(x64):
    """The reference itself: with q2 = the axis-2 factor, Renyi reduces to the 1-D value."""
    p, p1, p2 = _product_target()
    q = dj.DiagGaussian([1.0, 0.5], [math.log(1.1), math.log(0.8)])
    value = _product_alpha_value("renyi_reverse", 0.5, (p1, p2), q)
    one_d = A.alpha_divergence("renyi_reverse", 0.5, p1, dj.Gaussian.from_loc_scale(1.0, 1.1))
    np.testing.assert_allclose(value, one_d, rtol=1e-10, atol=1e-12)


def test_errors_name_the_problem(x64):
    p2, q2 = _p2(), dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="needs a divjax.Gaussian q"):
        dj.surrogate("kl_reverse", "reinforce", dj.default_target(), 8)(q2, KEY)
    with pytest.raises(ValueError, match="needs a DiagGaussian, FullRankGaussian"):
        dj.surrogate("kl_reverse", "reinforce", p2, 8)(dj.Gaussian(0.0, 0.0), KEY)
    with pytest.raises(ValueError, match="dimension mismatch"):
        dj.surrogate("kl_forward", "msc", p2, 8)(dj.DiagGaussian([0.0] * 3, [0.0] * 3), KEY)
    with pytest.raises(ValueError, match="within components"):
        A.alpha_surrogate("amari", 0.5, "reparam", p2, 8)(
            dj.MixtureGaussian(jnp.zeros(2), jnp.zeros((2, 2)), jnp.zeros((2, 2))), KEY
        )
    # "exact" where nothing is exact fails at construction, before any tracing.
    p3 = dj.GaussianMixture([1.0], [[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="not exact in d = 3"):
        dj.surrogate("kl_reverse", "exact", p3, 8)
    dj.surrogate("chi2_forward", "exact", p3, 8)  # closed form in any d
    with pytest.raises(ValueError, match="scales is required"):
        dj.GaussianMixture([1.0], [0.0])
    with pytest.raises(ValueError, match=r"scales must be \(M, d\)"):
        dj.GaussianMixture([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0])
