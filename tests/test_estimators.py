"""Monte Carlo gradient estimators: plumbing, unbiasedness and consistency, scale, families.

Statistical tests use fixed keys and tolerances of 5 standard errors estimated
from the draws; each has a power check or an exact reference that a wrong
estimator misses. Exact gradients come from `tests._shared.exact_1d` (float64,
checked against scipy in test_divergences).

Programs (one compile each, shared by the tests through module fixtures):
``_one_draw`` (every estimator, one draw with its aux, a batch of targets and
q's), ``_draws`` (every Monte Carlo estimator, many draws, gradients only),
``_large_k`` (self-normalized estimators at large K), ``_bias_1_over_k``
(float64), ``_small_k`` (K = 1 and 2 identities), ``_msc`` (chains at
stationarity), ``_mixture_q``, ``_two_d`` (float64), ``_callable``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import divjax as dj
from divjax.estimators import REGISTRY, estimator_info, min_samples
from tests import _shared

KEY = jax.random.key(20240601)
K = 16
ALPHA = _shared.DEFAULT_ALPHA
MAIN = dj.DIVERGENCES


def _entry(name, est, alpha="default"):
    return (name, est, ALPHA.get(name) if alpha == "default" else alpha)


def _id(entry):
    name, est, alpha = entry
    return f"{name}/{est}" + ("" if alpha is None else f"/{alpha}")


ALL = [_entry(n, e) for n, es in dj.ESTIMATORS.items() for e in es]
MC = [e for e in ALL if e[1] != "exact"]
# The exact route (compiled by every exact fit in test_fit) here for the closed-form
# gradients; the quadrature ones and the alpha family in the slow tests.
EXACT_FAST = ("kl_forward", "chi2_forward")
ONE_DRAW = [e for e in ALL if e[1] != "exact" or e[0] in EXACT_FAST] + [
    ("renyi_forward", "sn", 2.0),  # snis2
    ("renyi_forward", "sn", 1.0),  # snis
    ("renyi_reverse", "reparam", 1.0),  # reparam
    ("renyi_reverse", "sn", 1.0),  # reinforce with the batch-mean baseline
]


def _flat(tree):
    """A 1-D gradient pytree (``(..., 2)``: loc, log_scale) as one float64 array."""
    return np.stack([np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(tree)], -1)


def _loss_fn(entry, target, k=K):
    name, est, alpha = entry
    return dj.surrogate(name, est, target, k, alpha=alpha)


# --- the registry and bad input ----------------------------------------------------------


def test_estimators_table_follows_divergences():
    assert tuple(dj.ESTIMATORS) == dj.DIVERGENCES + dj.ALPHA_DIVERGENCES
    assert all(ests[0] == "exact" for ests in dj.ESTIMATORS.values())
    for (name, est), info in REGISTRY.items():
        assert info.divergence == name and info.name == est and est in dj.ESTIMATORS[name]
        assert info.estimand in ("gradient", "gradient_log1p", "gradient_over_z", "bound")
        assert (info.fn is None) == (est == "exact")
        if info.pathwise or est == "exact":
            assert info.families == ("gaussian", "diag", "full")
        else:
            assert info.families == ("gaussian", "diag", "full", "mixture")
    assert estimator_info("kl_forward", "snis").self_normalized


def test_minimum_k_and_mixture_support():
    assert {
        e: min_samples(e) for e in ("msc", "msc_rb", "reinforce_loo", "reinforce_cv")
    } == dict.fromkeys(("msc", "msc_rb", "reinforce_loo", "reinforce_cv"), 2)
    assert min_samples("score_cv", "chi2_reverse") == 2
    assert all(min_samples(e) == 1 for e in ("snis", "snis_dreg", "iwae", "iwae_dreg", "exact"))
    assert dj.estimators_for("kl_reverse", "mixture") == (
        "reinforce",
        "reinforce_loo",
        "reinforce_cv",
    )
    assert dj.estimators_for("chi2_reverse", "mixture") == ("score", "score_sn", "score_cv")
    assert dj.estimators_for("kl_forward", "mixture") == ("snis", "msc", "msc_rb")
    assert dj.estimators_for("kl_reverse") == dj.ESTIMATORS["kl_reverse"]
    for name in dj.ESTIMATORS:
        for est in dj.estimators_for(name, "mixture"):
            assert not REGISTRY[(name, est)].pathwise and est != "exact"


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("kl_forward", "reinforce", 8), {}, "valid choices: exact, snis, snis_dreg, msc, msc_rb"),
        (
            ("chi2_reverse", "snis", 8),
            {},
            "valid choices: exact, score, score_sn, reparam, score_cv",
        ),
        (("kl_sideways", "snis", 8), {}, "valid choices: kl_forward"),
        (("renyi_reverse", "score", 8), {"alpha": 0.5}, "valid choices: exact, sn, reparam"),
        (("kl_reverse", "reparam", 0), {}, "num_samples >= 1"),
        (("kl_reverse", "reinforce_loo", 1), {}, "num_samples >= 2"),
        (("kl_forward", "msc", 1), {}, "num_samples >= 2"),
        (("kl_reverse", "reparam", 2.0), {}, "positive int"),
        (("kl_reverse", "reparam", True), {}, "positive int"),
        (("amari", "score", 8), {}, "needs a finite float alpha"),
        (("amari", "reparam", 8), {"alpha": 1.0}, "undefined at alpha = 1"),
        (("renyi_forward", "reparam", 8), {"alpha": 1.0}, "undefined at alpha = 1"),
        (("kl_reverse", "reparam", 8), {"alpha": 0.5}, "takes no alpha"),
    ],
)
def test_bad_input_raises_before_tracing(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dj.surrogate(*args[:2], dj.default_target(), args[2], **kwargs)


def test_targets_an_estimator_cannot_use():
    p = dj.default_target()
    with pytest.raises(ValueError, match="no exact kl_reverse for a LogDensity target"):
        dj.surrogate("kl_reverse", "exact", p.log_prob, 4)
    with pytest.raises(ValueError, match="target must be"):
        dj.surrogate("kl_reverse", "reparam", 3.0, 4)
    with pytest.raises(ValueError, match="needs the normalized log p"):
        dj.surrogate("jensen_shannon", "score", p.unnormalized_log_prob, 4)
    dj.surrogate("jensen_shannon", "score", dj.LogDensity(p.log_prob, normalized=True), 4)
    p3 = dj.GaussianMixture([1.0, 1.0], [[0.0] * 3, [1.0] * 3], [[1.0] * 3] * 2)
    with pytest.raises(ValueError, match="not exact in d = 3"):
        dj.surrogate("kl_reverse", "exact", p3, 8)
    dj.surrogate("chi2_forward", "exact", p3, 8)  # closed form in any d
    dj.surrogate("kl_forward", "exact", p3, 8)  # the gradient is closed form in any d


def test_q_that_does_not_fit_raises_when_traced():
    p1, p2 = (
        dj.default_target(),
        dj.GaussianMixture([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 1.0]] * 2),
    )
    q1, q2 = dj.Gaussian(0.0, 0.0), dj.DiagGaussian([0.0, 0.0], [0.0, 0.0])
    m = dj.MixtureGaussian(jnp.zeros(2), jnp.zeros((2, 2)), jnp.zeros((2, 2)))

    def trace(name, est, p, q, **kw):
        return jax.eval_shape(jax.grad(dj.surrogate(name, est, p, 8, **kw), has_aux=True), q, KEY)

    with pytest.raises(ValueError, match="needs a divjax.Gaussian q"):
        trace("kl_reverse", "reinforce", p1, q2)
    with pytest.raises(ValueError, match="needs a DiagGaussian, FullRankGaussian"):
        trace("kl_reverse", "reinforce", p2, q1)
    with pytest.raises(ValueError, match="dimension mismatch"):
        trace("kl_forward", "msc", p2, dj.DiagGaussian([0.0] * 3, [0.0] * 3))
    with pytest.raises(ValueError, match="use one of: reinforce, reinforce_loo, reinforce_cv"):
        trace("kl_reverse", "reparam", p2, m)
    with pytest.raises(ValueError, match="use one of: score"):
        trace("amari", "reparam", p2, m, alpha=0.5)
    with pytest.raises(ValueError, match="MixtureGaussian"):
        trace("kl_reverse", "exact", p2, m)
    g, aux = trace("kl_reverse", "reinforce", p2, m)
    assert g.logits.shape == (2,) and aux.samples.shape == (8, 2)


# --- one draw of every estimator: aux, contributions, exact route, scale, hard cases ------


# Targets (all two components, so one compile): the default, the default times 1e4,
# Z = 7, then three hard ones: modes 60 apart with scales 0.05, huge Z, tiny Z.
C_SCALE = 1e4
TARGETS = [
    (P := _shared.P1),
    ([w * C_SCALE for w in P[0]], P[1], P[2]),
    ([2.0, 5.0], [-1.0, 1.5], [1.2, 0.6]),
    ([0.5, 0.5], [-30.0, 30.0], [0.05, 0.05]),
    ([1e30, 3e30], [-2.0, 3.0], [0.5, 1.0]),
    ([1e-30, 3e-30], [-2.0, 3.0], [0.5, 1.0]),
]
HARD = (3, 4, 5)
# q's: two ordinary ones, the default q0 (chi2_reverse infinite) and the hard ones.
ONE_QS = [(1.0, 1.1), (1.0, 0.9), (0.0, 5.0**0.5), (0.0, 1.0), (100.0, 0.05), (-31.0, 0.04)]
Q_HARD = (3, 4, 5)


@jax.jit
def _one_draw(ps, qs, key):
    def per(p, q):
        return {_id(e): jax.value_and_grad(_loss_fn(e, p), has_aux=True)(q, key) for e in ONE_DRAW}

    return jax.vmap(jax.vmap(per, (None, 0)), (0, None))(ps, qs)


@pytest.fixture(scope="module")
def one_draw():
    ps = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[dj.GaussianMixture(*t) for t in TARGETS])
    out = _one_draw(ps, _shared.gaussians(ONE_QS), KEY)
    return jax.tree_util.tree_map(np.asarray, out)


def _at(tree, t, i):
    return jax.tree_util.tree_map(lambda a: a[t, i], tree)


@pytest.mark.parametrize("entry", ONE_DRAW, ids=_id)
def test_aux_shapes_and_contributions_sum_to_the_estimate(one_draw, entry):
    for i in (0, 1):
        (loss, aux), g = _at(one_draw[_id(entry)], 0, i)
        for leaf in (aux.samples, aux.log_weights, aux.weights, *aux.contributions):
            assert leaf.shape == (K,) and leaf.dtype == np.float32
        assert aux.ess.shape == aux.ess_sq.shape == () and loss.dtype == np.float32
        assert float(np.sum(aux.weights)) == pytest.approx(1.0, rel=1e-5)
        assert 1.0 - 1e-5 <= float(aux.ess) <= K * (1 + 1e-5)
        assert 1.0 - 1e-5 <= float(aux.ess_sq) <= float(aux.ess) * (1 + 1e-5)
        np.testing.assert_allclose(
            aux.weights, np.exp(aux.log_weights - logsumexp(aux.log_weights)), rtol=1e-4
        )
        summed = _flat([np.sum(c, 0) for c in aux.contributions])
        g = _flat(g)
        np.testing.assert_allclose(summed, g, rtol=1e-4, atol=1e-5 * np.abs(g).max())


def test_log_weights_are_log_p_tilde_minus_log_q(one_draw):
    for t in (0, 1, 2):
        w, m, s = (np.asarray(a, np.float64) for a in TARGETS[t])
        for i in (0, 1):
            (_, aux), _ = _at(one_draw[_id(_entry("kl_reverse", "reinforce"))], t, i)
            x = aux.samples.astype(np.float64)
            log_p = logsumexp(np.log(w)[:, None] + stats.norm.logpdf(x, m[:, None], s[:, None]), 0)
            log_q = stats.norm.logpdf(x, ONE_QS[i][0], ONE_QS[i][1])
            np.testing.assert_allclose(aux.log_weights, log_p - log_q, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", EXACT_FAST)
def test_exact_routes_to_exact_grad(one_draw, name):
    """The "exact" estimator is exact_grad and its loss the divergence (float32 vs float64)."""
    ref = _shared.exact_default(tuple(ONE_QS[:3]), ("main",))[_shared.key_of((name, None))]
    for i in range(3):
        (loss, aux), g = _at(one_draw[_id(_entry(name, "exact"))], 0, i)
        if ref["infinite"][i]:
            assert np.isposinf(loss) and np.all(np.isposinf(_flat(g)))
            continue
        np.testing.assert_allclose(loss, ref["value"][i], rtol=1e-4)
        np.testing.assert_allclose(_flat(g), ref["exact"][i], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(
            _flat(aux.contributions), np.broadcast_to(_flat(g) / K, (K, 2)), rtol=1e-6
        )


@pytest.mark.parametrize(
    "special, plain, log1p_loss",
    [
        (("renyi_forward", "sn", 2.0), ("chi2_forward", "snis2", None), True),
        (("renyi_forward", "sn", 1.0), ("kl_forward", "snis", None), False),
        (("renyi_reverse", "reparam", 1.0), ("kl_reverse", "reparam", None), False),
    ],
    ids=["renyi_forward-2-is-snis2", "renyi_forward-1-is-snis", "renyi_reverse-1-is-reparam"],
)
def test_alpha_estimators_at_special_orders_are_the_kl_and_chi2_ones(
    one_draw, special, plain, log1p_loss
):
    for i in (0, 1):
        (l1, _), g1 = _at(one_draw[_id(special)], 0, i)
        (l2, _), g2 = _at(one_draw[_id(plain)], 0, i)
        np.testing.assert_allclose(_flat(g1), _flat(g2), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.expm1(l1) if log1p_loss else l1, l2, rtol=1e-4)


def _scaled_expectation(entry, g, aux, q):
    """What an estimator gives on ``c p~`` from what it gives on ``p~`` (same samples)."""
    name, est, _ = entry
    info = REGISTRY[(name, est)]
    if info.estimand == "gradient_over_z":  # unbiased for grad chi2 / Z
        return g / C_SCALE
    if (name, est) == ("kl_reverse", "reinforce"):  # the reward shifts by log c
        z = (aux.samples - q[0]) / q[1]
        return g - math.log(C_SCALE) * np.array([np.mean(z / q[1]), np.mean(z**2 - 1)])
    return g  # every other estimator is invariant to the scale of p~


@pytest.mark.parametrize("entry", ONE_DRAW, ids=_id)
def test_multiplying_the_target_by_a_constant(one_draw, entry):
    for i in (0, 1):
        (loss, aux), g = _at(one_draw[_id(entry)], 0, i)
        (loss_c, _), g_c = _at(one_draw[_id(entry)], 1, i)
        g, g_c = _flat(g), _flat(g_c)
        expected = _scaled_expectation(entry, g, aux, ONE_QS[i])
        # float32: log w shifts by log 1e4 = 9.2, rounding at 1e-6 of it
        np.testing.assert_allclose(g_c, expected, rtol=2e-4, atol=1e-5 * np.abs(expected).max())
        np.testing.assert_allclose(loss_c, loss, rtol=1e-4, atol=1e-5)  # loss values are Z-free


@pytest.mark.parametrize("entry", ONE_DRAW, ids=_id)
def test_no_nan_in_hard_cases(one_draw, entry):
    """q far from every mode, narrow modes, huge or tiny Z (float32): never NaN.

    Only ``score``, ``score_cv`` and chi2_reverse ``reparam`` (true value ~ q / p~,
    beyond the float range here) and the exact chi-squares (infinite, or finite
    beyond the float range) may be +-inf; every other estimator is finite.
    """
    name, est, _ = entry
    may_be_inf = est == "exact" or (
        name == "chi2_reverse" and est in ("score", "reparam", "score_cv")
    )
    for t in HARD:
        for i in Q_HARD + (0,):
            (_, aux), g = _at(one_draw[_id(entry)], t, i)
            g = _flat(g)
            assert not np.any(np.isnan(g)), (t, i, g)
            assert not np.any(np.isnan(aux.weights)) and np.isfinite(aux.ess)
            if not may_be_inf:
                assert np.all(np.isfinite(g)), (t, i, g)


# --- many draws: unbiasedness, equal means, variances -------------------------------------

N = 10_000
KL_QS = [(0.0, 5.0**0.5), (1.0, 0.8), (2.5, 1.5)]
# sigma^2 < 5/4 s_max^2 keeps the chi-square score estimators' fourth moment finite.
CHI2_QS = [(1.0, 0.8), (2.5, 1.0), (-1.0, 0.7)]
ALPHA_QS = [(1.0, 1.1)]
DRAW_QS = KL_QS + CHI2_QS + ALPHA_QS
DRAW_TARGETS = (0, 2)  # the default target and Z = 7
DRAWS = MC + [("amari", "score", 0.0), ("amari", "score", 1.7), ("renyi_reverse", "sn", 1.0)]


@jax.jit
def _draws(ps, qs, keys):
    def per(p, q):
        out = {}
        for e in DRAWS:
            grad = jax.grad(_loss_fn(e, p), has_aux=True)
            out[_id(e)] = jax.vmap(
                lambda k, grad=grad: jnp.stack(jax.tree_util.tree_leaves(grad(q, k)[0]))
            )(keys)
        return out

    return jax.vmap(jax.vmap(per, (None, 0)), (0, None))(ps, qs)


@pytest.fixture(scope="module")
def draws():
    ps = jax.tree_util.tree_map(
        lambda *a: jnp.stack(a), *[dj.GaussianMixture(*TARGETS[t]) for t in DRAW_TARGETS]
    )
    out = _draws(ps, _shared.gaussians(DRAW_QS), jax.random.split(KEY, N))
    refs = [
        _shared.exact_1d(lambda t=t: dj.GaussianMixture(*TARGETS[t]), DRAW_QS) for t in DRAW_TARGETS
    ]
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out), refs


def _estimand(entry, ref, i, log_z):
    """The exact quantity the estimator is unbiased or consistent for, at q ``i``."""
    name, est, alpha = entry
    r = _case_ref(ref, name, alpha)
    info = REGISTRY[(name, est)]
    exact = r["exact"][i]
    if info.estimand == "gradient_over_z":
        return exact * math.exp(-log_z)
    if info.estimand == "gradient_log1p":
        return exact / (1 + r["value"][i])
    return exact


def _case_ref(ref, name, alpha):
    """A case of `_shared.exact_1d`'s output; Amari at 1/2 is four times Hellinger."""
    if (name, alpha) == ("amari", 0.5):
        return {k: 4 * v for k, v in ref[_shared.key_of(("hellinger", None))].items()}
    return ref[_shared.key_of((name, alpha))]


UNBIASED = (
    [
        (_entry("kl_reverse", e), KL_QS)
        for e in ("reinforce", "reinforce_loo", "reparam", "stl", "reinforce_cv")
    ]
    + [(_entry("chi2_reverse", e), CHI2_QS) for e in ("score", "reparam", "score_cv")]
    + [
        (_entry(n, e), ALPHA_QS)
        for n in ("amari", "hellinger", "jensen_shannon")
        for e in ("score", "reparam")
    ]
)


@pytest.mark.parametrize("entry, qs", UNBIASED, ids=[_id(e) for e, _ in UNBIASED])
def test_unbiased_mean_within_5_standard_errors(draws, entry, qs):
    out, refs = draws
    for t, (target, ref) in enumerate(zip(DRAW_TARGETS, refs)):
        log_z = math.log(sum(TARGETS[target][0]))
        for q in qs:
            i = DRAW_QS.index(q)
            d = out[_id(entry)][t, i]
            exact = _estimand(entry, ref, i, log_z)
            se = d.std(0, ddof=1) / math.sqrt(N)
            assert np.all(se > 0)
            assert np.all(np.abs(d.mean(0) - exact) < 5 * se), (entry, t, q, d.mean(0), exact, se)


@pytest.mark.parametrize("order", [0.0, 1.7])
def test_amari_score_at_other_orders(draws, order):
    """Unbiased at alpha = 0 (REINFORCE for the reverse KL) and alpha = 1.7."""
    out, refs = draws
    i = DRAW_QS.index(ALPHA_QS[0])
    case = ("kl_reverse", None) if order == 0.0 else ("amari", order)
    for t in range(len(DRAW_TARGETS)):
        d = out[_id(("amari", "score", order))][t, i]
        exact = refs[t][_shared.key_of(case)]["exact"][i]
        se = d.std(0, ddof=1) / math.sqrt(N)
        assert np.all(np.abs(d.mean(0) - exact) < 5 * se), (t, d.mean(0), exact, se)


def test_renyi_reverse_sn_at_order_one_is_reinforce_with_a_batch_mean_baseline(draws):
    """The baseline includes the sample itself: the mean is exactly (1 - 1/K) grad KL(q || p)."""
    out, refs = draws
    biased = []
    for q in KL_QS:
        i = DRAW_QS.index(q)
        d = out[_id(("renyi_reverse", "sn", 1.0))][0, i]
        exact = refs[0][_shared.key_of(("kl_reverse", None))]["exact"][i]
        se = d.std(0, ddof=1) / math.sqrt(N)
        assert np.all(np.abs(d.mean(0) - (1 - 1 / K) * exact) < 5 * se)
        biased.append(np.any(np.abs(d.mean(0) - exact) > 5 * se))
    assert any(biased)  # so it is not unbiased at K = 16


@pytest.mark.parametrize(
    "plain, dreg", [("snis", "snis_dreg"), ("iwae", "iwae_dreg")], ids=["snis", "iwae"]
)
def test_dreg_mean_equals_the_plain_mean_while_both_are_biased(draws, plain, dreg):
    """Paired draws (same keys): |mean(dreg - plain)| < 5 SE; both miss the KL gradient."""
    out, refs = draws
    name = "kl_forward" if plain == "snis" else "kl_reverse"
    for q in ((0.0, 5.0**0.5), (2.5, 1.5)):
        i = DRAW_QS.index(q)
        a, b = out[_id(_entry(name, plain))][0, i], out[_id(_entry(name, dreg))][0, i]
        d = b - a
        assert np.all(np.abs(d.mean(0)) < 5 * d.std(0, ddof=1) / math.sqrt(N)), (q, d.mean(0))
        exact = refs[0][_shared.key_of((name, None))]["exact"][i]
        bias = a.mean(0) - exact  # the power check: the common mean is not the gradient
        assert np.any(np.abs(bias) > 5 * a.std(0, ddof=1) / math.sqrt(N)), (q, bias)


def _paired_variance_z(hi, lo):
    """z-scores of Var(hi) - Var(lo) per parameter, from paired draws."""
    d = (hi - hi.mean(0)) ** 2 - (lo - lo.mean(0)) ** 2
    return d.mean(0) / (d.std(0, ddof=1) / math.sqrt(len(d)))


def test_reverse_kl_variance_ordering_reparam_rloo_reinforce(draws):
    """Var reparam < Var reinforce_loo < Var reinforce per parameter at K = 16 on q0.

    Paired: the three share keys, hence samples. At K = 16 on q0 the exact
    variances are loc 1.09 / 1.00 and log_scale 37.5 / 34.1 for reinforce /
    reinforce_loo; for K = 2 the loc order of those two reverses.
    """
    out, _ = draws
    i = DRAW_QS.index((0.0, 5.0**0.5))
    reinforce, rloo, reparam = (
        out[_id(_entry("kl_reverse", e))][0, i] for e in ("reinforce", "reinforce_loo", "reparam")
    )
    assert np.all(_paired_variance_z(reinforce, rloo) > 5)
    assert np.all(_paired_variance_z(rloo, reparam) > 5)


def test_score_cv_reduces_the_score_estimators_variance(draws):
    """At q = N(2.5, 1), K = 16. Not everywhere: at N(1, 0.8^2), K = 4 it is worse."""
    out, _ = draws
    i = DRAW_QS.index((2.5, 1.0))
    a, b = (out[_id(_entry("chi2_reverse", e))][0, i] for e in ("score", "score_cv"))
    assert np.all(_paired_variance_z(a, b) > 5)


# --- self-normalized estimators: consistent, bias O(1/K) -------------------------------

LARGE_K, LARGE_N = 4096, 64
LARGE_QS = [(1.0, 1.1), (1.0, 0.8), (1.0, 2.0)]
CONSISTENT = [
    (_entry("kl_forward", "snis"), 0),
    (_entry("kl_forward", "snis_dreg"), 0),
    (_entry("kl_forward", "msc_rb"), 0),  # a fresh chain: SNIS on the K particles
    (_entry("chi2_forward", "snis2"), 2),  # the squared weights: a wide q keeps them light
    (_entry("chi2_reverse", "score_sn"), 1),  # weights q / p: a narrow q
    (_entry("renyi_reverse", "sn"), 0),
    (_entry("renyi_reverse", "reparam"), 0),
    (("renyi_reverse", "reparam", 1.5), 1),  # alpha > 1: a narrower q keeps the weights light
    (_entry("renyi_forward", "sn"), 0),
    (_entry("renyi_forward", "reparam"), 0),
    (("renyi_forward", "sn", 2.5), 2),  # alpha > 1: a wider q
]
CV_K = 256


@jax.jit
def _large_k(p, qs, keys):
    def per(q):
        out = {}
        for e, _ in CONSISTENT:
            grad = jax.grad(_loss_fn(e, p, LARGE_K), has_aux=True)
            out[_id(e)] = jax.vmap(
                lambda k, grad=grad: jnp.stack(jax.tree_util.tree_leaves(grad(q, k)[0]))
            )(keys[:LARGE_N])
        for est in ("reinforce", "reinforce_cv"):
            grad = jax.grad(_loss_fn(_entry("kl_reverse", est), p, CV_K), has_aux=True)
            out[est] = jax.vmap(
                lambda k, grad=grad: jnp.stack(jax.tree_util.tree_leaves(grad(q, k)[0]))
            )(keys)
        return out

    return jax.lax.map(per, qs)


@pytest.fixture(scope="module")
def large_k():
    qs = LARGE_QS + [(0.0, 5.0**0.5)]
    out = _large_k(dj.default_target(), _shared.gaussians(qs), jax.random.split(KEY, 4000))
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out), _shared.exact_default(
        tuple(qs)
    )


@pytest.mark.parametrize("entry, qi", CONSISTENT, ids=[_id(e) for e, _ in CONSISTENT])
def test_self_normalized_estimators_are_consistent(large_k, entry, qi):
    """At K = 4096 the O(1/K) bias is far below 5 standard errors of 64 draws."""
    out, ref = large_k
    d = out[_id(entry)][qi]
    name, est, alpha = entry
    r = _case_ref(ref, name, alpha)
    exact = r["exact"][qi] / (
        (1 + r["value"][qi]) if REGISTRY[(name, est)].estimand == "gradient_log1p" else 1.0
    )
    se = d.std(0, ddof=1) / math.sqrt(len(d))
    assert np.all(np.abs(d.mean(0) - exact) < 5 * se), (d.mean(0), exact, se)


def test_reinforce_cv_reduces_variance_at_large_k(large_k):
    """At q0 and K = 256 (with K = 4 or 16 the leave-one-out coefficient makes loc worse)."""
    out, _ = large_k
    assert np.all(_paired_variance_z(out["reinforce"][3], out["reinforce_cv"][3]) > 5)


def _first_order_bias(est, p, q):
    r"""Limit ``mu`` and leading bias ``b1`` of ``sum u_i f_i / sum u_i`` (dense quadrature).

    ``b1 = -E_q[ubar^2 (f - mu)]`` with ``ubar`` the normalized weight function.
    """
    x = np.linspace(-30.0, 30.0, 300_001)
    dx = x[1] - x[0]
    mu, sd = q
    lq = stats.norm.logpdf(x, mu, sd)
    w, m, s = (np.asarray(a, np.float64) for a in p)
    lp = logsumexp(np.log(w)[:, None] + stats.norm.logpdf(x, m[:, None], s[:, None]), axis=0)
    score = np.stack([(x - mu) / sd**2, ((x - mu) / sd) ** 2 - 1.0])
    log_u, f = {
        "snis": (lp - lq, -score),
        "snis2": (2.0 * (lp - lq), -score),
        "score_sn": (lq - lp, 2.0 * score),
    }[est]
    qx = np.exp(lq)
    u = np.exp(log_u - log_u.max())
    u /= np.sum(qx * u) * dx
    mean_f = np.sum(qx * u * f, axis=-1) * dx
    return mean_f, -np.sum(qx * u**2 * (f - mean_f[:, None]), axis=-1) * dx


SN_KS = (8, 32, 128)
SN = [
    _entry("kl_forward", "snis"),
    _entry("chi2_forward", "snis2"),
    _entry("chi2_reverse", "score_sn"),
]
SN_P = ([2.0, 1.0, 3.0], [-1.0, 0.5, 2.0], [0.7, 1.0, 0.5])
SN_Q = (0.5, 1.0)


@jax.jit
def _bias_1_over_k(p, q, keys):
    out = {}
    for e in SN:
        for k in SN_KS:
            grad = jax.grad(_loss_fn(e, p, k), has_aux=True)
            out[f"{e[1]}/{k}"] = jax.vmap(
                lambda kk, grad=grad: jnp.stack(jax.tree_util.tree_leaves(grad(q, kk)[0]))
            )(keys)
    return out


@pytest.fixture(scope="module")
def bias_1_over_k():
    with jax.enable_x64(True):
        out = _bias_1_over_k(
            dj.GaussianMixture(*SN_P),
            dj.Gaussian.from_loc_scale(*SN_Q),
            jax.random.split(KEY, 20_000),
        )
        assert all(a.dtype == jnp.float64 for a in out.values())
        return jax.tree_util.tree_map(np.asarray, out)


@pytest.mark.parametrize("entry", SN, ids=_id)
def test_self_normalized_bias_shrinks_like_one_over_k(bias_1_over_k, entry):
    """Float64: biased at K = 8 beyond 5 SE (power), and K * bias -> b1 within 5 SE."""
    limit, b1 = _first_order_bias(entry[1], SN_P, SN_Q)
    ks = np.asarray(SN_KS)
    draws = [bias_1_over_k[f"{entry[1]}/{k}"] for k in SN_KS]
    bias = np.stack([d.mean(0) - limit for d in draws])
    se = np.stack([d.std(0, ddof=1) / math.sqrt(len(d)) for d in draws])
    assert np.any(np.abs(bias[0]) > 5 * se[0])
    for j in (1, 2):
        assert np.all(np.abs(ks[j] * bias[j] - b1) < 5 * ks[j] * se[j]), (ks[j], bias, b1)


@pytest.mark.slow
def test_the_limit_is_the_exact_estimand():
    """The dense-quadrature limit of the ratio agrees with divjax's exact estimand."""
    ref = _shared.exact_1d(lambda: dj.GaussianMixture(*SN_P), [SN_Q], ("main",))
    for e in SN:
        limit, _ = _first_order_bias(e[1], SN_P, SN_Q)
        r = ref[_shared.key_of((e[0], None))]
        exact = r["exact"][0] / ((1 + r["value"][0]) if e[1] != "snis" else 1.0)
        np.testing.assert_allclose(exact, limit, rtol=1e-6, atol=1e-9)


# --- K = 1 and K = 2 identities (float64) ----------------------------------------------

SMALL = [
    ("kl_reverse", "reinforce_cv", 2),
    ("kl_reverse", "reinforce_loo", 2),
    ("kl_forward", "msc", 2),
    ("kl_forward", "snis", 2),
    ("kl_reverse", "iwae", 1),
    ("kl_reverse", "reparam", 1),
    ("kl_reverse", "iwae_dreg", 1),
    ("kl_reverse", "stl", 1),
]


@jax.jit
def _small_k(p, q, keys):
    out = {}
    for name, est, k in SMALL:
        grad = jax.grad(dj.surrogate(name, est, p, k), has_aux=True)
        out[est] = jax.vmap(
            lambda kk, grad=grad: jnp.stack(jax.tree_util.tree_leaves(grad(q, kk)[0]))
        )(keys)
    return out


@pytest.fixture(scope="module")
def small_k():
    with jax.enable_x64(True):
        out = _small_k(dj.default_target(), dj.default_q0(), jax.random.split(KEY, 20_000))
        return jax.tree_util.tree_map(np.asarray, out)


def test_k1_identities_iwae_is_reparam_and_iwae_dreg_is_stl(small_k):
    np.testing.assert_allclose(small_k["iwae"], small_k["reparam"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(small_k["iwae_dreg"], small_k["stl"], rtol=1e-10, atol=1e-12)


def test_reinforce_cv_at_k2_is_rloo(small_k):
    """With one other sample the leave-one-out coefficient is that sample's reward."""
    # Equal up to rounding in the coefficient's ratio (relative 1e-8 where a score is ~ 0).
    np.testing.assert_allclose(
        small_k["reinforce_cv"], small_k["reinforce_loo"], rtol=1e-6, atol=1e-12
    )


def test_msc_through_plain_surrogate_is_one_sir_step_with_snis_mean(small_k):
    """A fresh chain (no carried state) resamples K draws of q: its mean is SNIS's."""
    snis, msc = small_k["snis"], small_k["msc"]
    n = len(snis)
    se = np.sqrt(snis.var(0, ddof=1) / n + msc.var(0, ddof=1) / n)
    assert np.all(np.abs(msc.mean(0) - snis.mean(0)) < 5 * se)
    assert not np.allclose(msc, snis)  # different draws, the same mean


# --- Markovian score climbing at stationarity ---------------------------------------------

MSC_TARGETS = [_shared.P1, ([0.5, 0.5], [-1.0, 1.5], [1.0, 0.8])]
MSC_QS = [(0.0, 5.0**0.5), (0.5, 1.5)]
MSC_RUNS = (("msc", 2), ("msc_rb", 8))
BURN_IN = 60


def _chains(p, q, k, est, keys, burn_in):
    """One gradient per independent chain, after ``burn_in`` kernel steps at the fixed q."""
    chain = dj.stateful_surrogate("kl_forward", est, p, k)
    grad = jax.grad(chain.loss_fn, has_aux=True)

    def one(key):
        k0, k1, k2 = jax.random.split(key, 3)

        def step(state, kk):
            return chain.loss_fn(q, kk, state)[1][1], None

        state, _ = jax.lax.scan(step, chain.init(q, k0), jax.random.split(k1, burn_in))
        return grad(q, k2, state)[0]

    return jax.vmap(one)(keys)


@jax.jit
def _msc(ps, qs, keys):
    def per(p, q):
        out = {f"{e}/{k}": _chains(p, q, k, e, keys, BURN_IN) for e, k in MSC_RUNS}
        snis = jax.grad(dj.surrogate("kl_forward", "snis", p, 2), has_aux=True)
        out["snis/2"] = jax.vmap(lambda kk: snis(q, kk)[0])(keys)
        return out

    return jax.vmap(per)(ps, qs)


def _kl_forward_grad(p, q):
    """``-E_p[grad log q]`` in closed form from p's moments (1-D or d-D, diag or full)."""
    return jax.jit(jax.grad(lambda q_, p: dj.cross_entropy(p, q_)))(q, p)


@pytest.fixture(scope="module")
def msc():
    ps = jax.tree_util.tree_map(
        lambda *a: jnp.stack(a), *[dj.GaussianMixture(*t) for t in MSC_TARGETS]
    )
    out = _msc(ps, _shared.gaussians(MSC_QS), jax.random.split(KEY, 4000))
    exact = [
        _kl_forward_grad(dj.GaussianMixture(*t), dj.Gaussian.from_loc_scale(*q))
        for t, q in zip(MSC_TARGETS, MSC_QS)
    ]
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), (out, exact))


def _within_5se(draws, exact, label):
    for a, b in zip(jax.tree_util.tree_leaves(draws), jax.tree_util.tree_leaves(exact)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        se = a.std(0, ddof=1) / math.sqrt(a.shape[0])
        assert np.all(np.abs(a.mean(0) - b) <= 5 * se), (label, a.mean(0), b, se)


@pytest.mark.parametrize("t", [0, 1], ids=["default-q0", "overlapping"])
def test_msc_is_unbiased_at_stationarity_where_snis_is_not(msc, t):
    out, exact = msc
    for est, k in MSC_RUNS:
        _within_5se(jax.tree_util.tree_map(lambda a: a[t], out[f"{est}/{k}"]), exact[t], (est, k))
    snis = jax.tree_util.tree_map(lambda a: a[t], out["snis/2"])
    bias = _flat(snis).mean(0) - _flat(exact[t])
    se = _flat(snis).std(0, ddof=1) / math.sqrt(4000)
    assert np.any(np.abs(bias) > 5 * se)  # K = 2: SNIS's bias is far beyond 5 SE (power)


@pytest.mark.slow
def test_msc_is_unbiased_at_stationarity_in_2d():
    """Independent chains run 30 steps at a fixed full-rank q: the last gradients are unbiased."""
    p2 = _correlated()
    q2 = dj.FullRankGaussian.from_cov([0.5, 0.5], [[6.0, 0.5], [0.5, 2.5]])
    run = jax.jit(lambda p, q, keys: {e: _chains(p, q, 8, e, keys, 30) for e in ("msc", "msc_rb")})
    exact = _kl_forward_grad(p2, q2)
    for est, draws in run(p2, q2, jax.random.split(KEY, 400)).items():
        assert draws.chol.shape == (400, 2, 2)
        _within_5se(draws, exact, est)


def _correlated():
    return dj.GaussianMixture(
        [0.3, 0.7],
        [[-2.0, 0.0], [2.0, 1.0]],
        covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.8, -0.2], [-0.2, 1.2]]],
    )


# --- a MixtureGaussian q: the score-function estimators (float64) --------------------------

MIX_P = ([0.4, 0.6], [[-2.0], [2.5]], [[0.9], [1.1]])
# One per kind: the score function (through logits too), and the control variates,
# whose per-parameter coefficients follow q's pytree.
MIX_EST = [
    ("kl_reverse", "reinforce"),
    ("kl_reverse", "reinforce_cv"),
    ("chi2_reverse", "score_cv"),
]


def _mixture_q():
    return dj.MixtureGaussian(
        jnp.array([0.2, -0.3]), jnp.array([[-1.5], [2.0]]), jnp.log(jnp.array([[0.6], [0.8]]))
    )


@jax.jit
def _mixture_q_draws(p, q, keys):
    out = {}
    for name, est in MIX_EST:
        grad = jax.grad(dj.surrogate(name, est, p, K), has_aux=True)
        out[est] = jax.vmap(lambda k, grad=grad: grad(q, k)[0])(keys)
    (loss, aux), g = jax.value_and_grad(
        dj.surrogate("kl_reverse", "reinforce_cv", p, K), has_aux=True
    )(q, keys[0])
    return out, (g, aux)


def _grid_reference(p, q):
    """Dense-grid integrals in float64 (independent of divjax's quadrature)."""
    x = np.linspace(-14.0, 14.0, 28_001)[:, None]
    dx = x[1, 0] - x[0, 0]
    lq, lp = np.asarray(q.log_prob(x)), np.asarray(p.log_prob(x))
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
    p, q = dj.GaussianMixture(*MIX_P), _mixture_q()
    out, (g, aux) = _mixture_q_draws(p, q, jax.random.split(KEY, 2000))
    ref = _grid_reference(p, q)
    for name, est in MIX_EST:
        assert out[est].logits.shape == (2000, 2)
        _within_5se(out[est], ref[name], est)
    summed = jax.tree_util.tree_map(lambda c: np.sum(c, 0), aux.contributions)
    for a, b in zip(jax.tree_util.tree_leaves(summed), jax.tree_util.tree_leaves(g)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


def test_every_mixture_estimator_traces_on_a_mixture_q():
    p = dj.GaussianMixture(*MIX_P)
    for name in dj.ESTIMATORS:
        for est in dj.estimators_for(name, "mixture"):
            alpha = ALPHA.get(name)
            g, aux = jax.eval_shape(
                jax.grad(dj.surrogate(name, est, p, 4, alpha=alpha), has_aux=True),
                _mixture_q(),
                KEY,
            )
            assert g.logits.shape == (2,) and g.locs.shape == (2, 1) and aux.samples.shape == (4, 1)
            assert aux.contributions.logits.shape == (4, 2)


# --- two dimensions: every estimator on a product target (float64) ------------------------
#
# p(x1, x2) = p1(x1) N(x2; C, S^2) and a DiagGaussian q = q1 x q2: the KLs add and I(a)
# multiplies, so the exact 2-D gradient comes from p1's 1-D one (`_shared.exact_1d`)
# and Gaussian closed forms for the second axis: no 2-D quadrature to compile.

C2, S2 = 0.5, 0.8
Q_REV = ((1.0, 0.9), (C2, 0.8))  # narrow: chi2_reverse and its score's variance finite
Q_FWD = ((0.5, 2.5), (C2 + 0.3, 1.6))  # wide: light-tailed weights p / q
TWO_D = [
    e for e in MC if e[0] != "jensen_shannon" and e[1] not in ("iwae", "iwae_dreg", "msc", "msc_rb")
]
TWO_D_SN = {e for e in TWO_D if REGISTRY[e[:2]].self_normalized}
UNBIASED_K, UNBIASED_N, SN_K, SN_N = 32, 2000, 2048, 64


def _product():
    w, m, s = _shared.P1
    return dj.GaussianMixture(w, np.stack([m, [C2, C2]], 1), np.stack([s, [S2, S2]], 1))


def _q_for(name):
    return Q_FWD if name.endswith("forward") else Q_REV


@jax.jit
def _two_d_draws(p, q_rev, q_fwd, keys):
    out = {}
    for e in TWO_D:
        q = q_fwd if e[0].endswith("forward") else q_rev
        k, n = (SN_K, SN_N) if e in TWO_D_SN else (UNBIASED_K, UNBIASED_N)
        grad = jax.grad(_loss_fn(e, p, k), has_aux=True)
        out[_id(e)] = jax.vmap(lambda kk, grad=grad, q=q: grad(q, kk)[0])(keys[:n])
    return out


def _log_i_gauss(a, loc, scale):
    """``log int N(loc, scale^2)^a N(C2, S2^2)^(1 - a)`` (closed form; +inf where infinite)."""
    lam = a / scale**2 + (1 - a) / S2**2
    den = a * S2**2 + (1 - a) * scale**2
    if lam <= 0 or den <= 0:
        return np.inf
    return (
        -0.5 * a * math.log(2 * math.pi * scale**2)
        - 0.5 * (1 - a) * math.log(2 * math.pi * S2**2)
        + 0.5 * math.log(2 * math.pi / lam)
        - 0.5 * a * (1 - a) * (loc - C2) ** 2 / den
    )


def _axis2(name, alpha, loc, scale):
    """The second factor's quantity, in the form the product combines: a KL, or log I(a)."""
    if name == "kl_reverse":
        return math.log(S2 / scale) + (scale**2 + (loc - C2) ** 2) / (2 * S2**2) - 0.5
    if name == "kl_forward":
        return math.log(scale / S2) + (S2**2 + (C2 - loc) ** 2) / (2 * scale**2) - 0.5
    return _log_i_gauss(_exponent(name, alpha), loc, scale)


def _exponent(name, alpha):
    return {
        "chi2_forward": -1.0,
        "chi2_reverse": 2.0,
        "renyi_reverse": alpha,
        "hellinger": 0.5,
    }.get(name, None if alpha is None else 1.0 - alpha)


def _transform(name, alpha):
    """``(F, F')`` with ``D = F(log I)``."""
    if name.startswith("chi2"):
        return np.expm1, np.exp
    if name.startswith("renyi"):
        return (lambda v: v / (alpha - 1)), (lambda v: 1 / (alpha - 1))
    c = 1.0 if name == "hellinger" else alpha * (1 - alpha)
    return (lambda v: -np.expm1(v) / c), (lambda v: -np.exp(v) / c)


def _product_estimand(entry, ref1):
    """The exact 2-D gradient (loc1, log_scale1, loc2, log_scale2) that ``entry`` estimates."""
    name, est, alpha = entry
    (l1, s1), (l2, s2) = _q_for(name)
    case = ("hellinger", None) if name == "amari" and alpha == 0.5 else (name, alpha)
    r = ref1[_shared.key_of(case)]
    i = 0 if _q_for(name) is Q_REV else 1
    d1, g1 = float(r["value"][i]), r["exact"][i]
    if name == "amari":  # amari(1/2) = 4 hellinger
        d1, g1 = 4 * d1, 4 * g1
    h = 1e-6

    def f2(dl, ds):
        return _axis2(name, alpha, l2 + dl, s2 * math.exp(ds))

    g2 = np.array([f2(h, 0) - f2(-h, 0), f2(0, h) - f2(0, -h)]) / (2 * h)
    if name.startswith("kl"):
        value, grad = d1 + f2(0, 0), np.concatenate([g1, g2])
    else:
        big_f, df = _transform(name, alpha)
        log_i1 = {"chi2": np.log1p(d1)}.get(name[:4])
        if log_i1 is None:
            if name.startswith("renyi"):
                log_i1 = (alpha - 1) * d1
            else:
                c = 1.0 if name == "hellinger" else alpha * (1 - alpha)
                log_i1 = np.log1p(-c * d1)
        log_i = log_i1 + f2(0, 0)
        value = big_f(log_i)
        grad = df(log_i) * np.concatenate([g1 / df(log_i1), g2])
    info = REGISTRY[(name, est)]
    if info.estimand == "gradient_log1p":
        grad = grad / (1 + value)
    # gradient_over_z: the product target's weights sum to 1
    return grad[[0, 2, 1, 3]]  # as the draws' leaves: loc (2,), log_scale (2,)


@pytest.fixture(scope="module")
def two_d():
    with jax.enable_x64(True):
        q_rev, q_fwd = (
            dj.DiagGaussian([a[0] for a in q], np.log([a[1] for a in q])) for q in (Q_REV, Q_FWD)
        )
        out = _two_d_draws(_product(), q_rev, q_fwd, jax.random.split(KEY, UNBIASED_N))
        out = jax.tree_util.tree_map(np.asarray, out)
    ref1 = _shared.exact_default((Q_REV[0], Q_FWD[0]))
    return out, ref1


@pytest.mark.parametrize("entry", TWO_D, ids=_id)
def test_estimators_in_2d_against_the_product_targets_exact_gradient(two_d, entry):
    """Unbiased ones at K = 32 (2000 draws), self-normalized ones at K = 2048 (64 draws)."""
    out, ref1 = two_d
    draws = out[_id(entry)]
    assert draws.loc.shape[1:] == (2,)
    d = np.concatenate([draws.loc, draws.log_scale], -1)
    exact = _product_estimand(entry, ref1)
    se = d.std(0, ddof=1) / math.sqrt(len(d))
    assert np.all(np.abs(d.mean(0) - exact) < 5 * se), (d.mean(0), exact, se)


# --- log-density targets: the same numbers as the mixture, per point or batched ----------

# One estimator per module (score function, pathwise, bounds, control variates, MSC).
CALLABLE = [
    _entry(n, e)
    for n, e in [
        ("kl_forward", "snis"),
        ("kl_forward", "msc"),
        ("kl_reverse", "reinforce"),
        ("kl_reverse", "stl"),
        ("kl_reverse", "iwae_dreg"),
        ("chi2_forward", "snis2"),
        ("chi2_reverse", "reparam"),
        ("chi2_reverse", "score_cv"),
    ]
]
NORMALIZED = [_entry("amari", "score"), _entry("jensen_shannon", "reparam")]
BATCHED = [
    _entry("kl_forward", "snis"),
    _entry("kl_reverse", "reparam"),
    _entry("chi2_reverse", "score_cv"),
]


@jax.jit
def _callable(p, q, key, log_c):
    def shifted(x):  # log p~ of c p, one point at a time
        return p.log_prob(x) + log_c

    def shifted_batch(x):
        return jax.vmap(shifted)(x)

    out = {}
    for e in CALLABLE:
        out[_id(e)] = jax.grad(_loss_fn(e, shifted), has_aux=True)(q, key)[0]
    for e in BATCHED:
        target = dj.LogDensity(shifted_batch, batched=True)
        out["batched " + _id(e)] = jax.grad(_loss_fn(e, target), has_aux=True)(q, key)[0]
    for e in NORMALIZED:
        target = dj.LogDensity(p.log_prob, normalized=True)
        out["normalized " + _id(e)] = jax.grad(_loss_fn(e, target), has_aux=True)(q, key)[0]
    return out


@pytest.fixture(scope="module")
def callable_grads():
    out = _callable(
        dj.default_target(), dj.Gaussian.from_loc_scale(*ONE_QS[1]), KEY, math.log(C_SCALE)
    )
    return jax.tree_util.tree_map(np.asarray, out)


@pytest.mark.parametrize("entry", CALLABLE, ids=_id)
def test_callable_target_gives_the_mixtures_numbers(one_draw, callable_grads, entry):
    """log p~ = log p + log c as a per-point function: the same draw as the mixture c p."""
    (_, _), g_c = _at(one_draw[_id(entry)], 1, 1)
    np.testing.assert_allclose(_flat(callable_grads[_id(entry)]), _flat(g_c), rtol=1e-5, atol=1e-6)
    if entry in BATCHED:
        np.testing.assert_allclose(
            _flat(callable_grads["batched " + _id(entry)]), _flat(g_c), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("entry", NORMALIZED, ids=_id)
def test_normalized_log_density_gives_the_mixtures_numbers(one_draw, callable_grads, entry):
    (_, _), g = _at(one_draw[_id(entry)], 0, 1)
    np.testing.assert_allclose(
        _flat(callable_grads["normalized " + _id(entry)]), _flat(g), rtol=1e-5, atol=1e-6
    )


# --- many dimensions --------------------------------------------------------------------

D50 = 50
# One per module. A d = 50 mixture compiles slowly (its unrolled 50 x 50 triangular
# solves): the fast test only traces; every estimator runs in the slow one.
FAST_50D = [
    _entry("kl_forward", "snis"),
    _entry("kl_forward", "msc"),
    _entry("kl_reverse", "reparam"),
    _entry("kl_reverse", "iwae_dreg"),
    _entry("chi2_reverse", "score_cv"),
]


def _p50():
    return dj.GaussianMixture(
        [1.0, 1.0], np.stack([-np.ones(D50), np.ones(D50)]), np.ones((2, D50))
    )


def test_surrogate_api_in_50d():
    """The estimators trace in d = 50 with the right shapes (eval_shape: no compile)."""
    p, q = _p50(), dj.DiagGaussian(jnp.zeros(D50), jnp.zeros(D50))
    for e in FAST_50D:
        g, aux = jax.eval_shape(jax.grad(_loss_fn(e, p, 8), has_aux=True), q, KEY)
        assert g.loc.shape == (D50,) and aux.samples.shape == (8, D50), e
        assert aux.contributions.log_scale.shape == (8, D50)
    g = jax.eval_shape(
        jax.grad(dj.surrogate("kl_reverse", "stl", p.log_prob, 8), has_aux=True), q, KEY
    )[0]
    assert g.log_scale.shape == (D50,)
    with pytest.raises(ValueError, match="not exact in d = 50"):
        dj.divergence("kl_reverse", p, q)


# --- slow: the exact route of the alpha family, every estimator in 50-d, full-rank 2-D -------

ALPHA_EXACT = [_entry(n, "exact") for n in dj.ALPHA_DIVERGENCES + ("kl_reverse", "chi2_reverse")]


@pytest.mark.slow
def test_exact_route_of_the_alpha_family_and_the_quadrature_ones():
    """As test_exact_routes_to_exact_grad; at q0 chi2_reverse is inf, not NaN."""
    p, qs = dj.default_target(), ONE_QS[:3]

    @jax.jit
    def run(q):
        return {
            _id(e): jax.value_and_grad(_loss_fn(e, p), has_aux=True)(q, KEY) for e in ALPHA_EXACT
        }

    ref = _shared.exact_default(tuple(qs))
    for i, q in enumerate(qs):
        out = run(dj.Gaussian.from_loc_scale(*q))
        for e in ALPHA_EXACT:
            (loss, aux), g = out[_id(e)]
            r = ref[_shared.key_of((e[0], e[2]))] if (e[0], e[2]) in _shared.CASES else None
            if r is None:  # amari 0.5 = 4 hellinger
                r = jax.tree_util.tree_map(
                    lambda a: 4 * a, ref[_shared.key_of(("hellinger", None))]
                )
            np.testing.assert_allclose(loss, r["value"][i], rtol=1e-4)
            np.testing.assert_allclose(_flat(g), r["exact"][i], rtol=1e-3, atol=1e-4)
            summed = _flat([np.sum(c, 0) for c in aux.contributions])
            np.testing.assert_allclose(summed, _flat(g), rtol=1e-5)


@pytest.mark.slow
def test_every_estimator_runs_finite_in_50d():
    p, q = _p50(), dj.DiagGaussian(jnp.zeros(D50), jnp.zeros(D50))
    for e in MC:
        g, aux = jax.eval_shape(jax.grad(_loss_fn(e, p, 8), has_aux=True), q, KEY)
        assert g.loc.shape == (D50,) and aux.contributions.log_scale.shape == (8, D50), e
    run = jax.jit(
        lambda p, q, key: {_id(e): jax.grad(_loss_fn(e, p, 8), has_aux=True)(q, key)[0] for e in MC}
    )
    for key, g in run(p, q, KEY).items():
        assert all(np.all(np.isfinite(np.asarray(v))) for v in g), key


@pytest.mark.slow
def test_estimators_in_2d_full_rank_against_the_exact_gradient(x64):
    """Full-rank q on the product target: the exact gradient by 2-D quadrature."""
    p = _product()
    # Q_REV's variances with a correlation. At sigma^2 = 1.21 on the first axis the fourth
    # moment of chi2_reverse reparam's draws (an integral of q^5 / p^4) is barely finite
    # (infinite from 5 s^2 / 4 = 1.25), so their standard error is itself unreliable: one
    # coordinate came out 5.8 "standard errors" off in 2000 draws.
    q_rev = dj.FullRankGaussian.from_cov([1.0, C2], [[0.81, 0.1], [0.1, 0.64]])
    q_fwd = dj.FullRankGaussian.from_cov([0.5, C2 + 0.3], [[6.25, 0.5], [0.5, 2.56]])
    entries = [e for e in TWO_D if e[0] in MAIN]

    @jax.jit
    def run(p, q_rev, q_fwd, keys):
        out = {}
        for e in entries:
            q = q_fwd if e[0].endswith("forward") else q_rev
            k, n = (SN_K, SN_N) if e in TWO_D_SN else (UNBIASED_K, UNBIASED_N)
            grad = jax.grad(_loss_fn(e, p, k), has_aux=True)
            exact = dj.exact_grad(e[0], p, q)
            if REGISTRY[e[:2]].estimand == "gradient_log1p":
                one_plus = 1 + dj.divergence(e[0], p, q)
                exact = jax.tree_util.tree_map(lambda a, c=one_plus: a / c, exact)
            out[_id(e)] = (jax.vmap(lambda kk, grad=grad, q=q: grad(q, kk)[0])(keys[:n]), exact)
        return out

    for key, (draws, exact) in run(p, q_rev, q_fwd, jax.random.split(KEY, UNBIASED_N)).items():
        _within_5se(draws, exact, key)
