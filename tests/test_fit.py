"""fit and fitter: convergence, statuses, divergence detection, optimizers, states, d dims.

The optima of the default target are given by hand (from `divjax.optimal_q` in
float64, tested in test_optima) except where the default path (``optima=None``,
`divjax.optimal_q` cached per target) is the point of the test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import divjax as dj
from divjax import status as st

P = dj.default_target()
Q0 = dj.default_q0()
KEY = jax.random.key(3)


def _optima(locs, log_scales):
    return dj.Optima(dj.Gaussian(jnp.asarray(locs), jnp.asarray(log_scales)), None)


MOMENT_MATCH = _optima([1.5], [0.5 * np.log(6.025)])  # kl_forward: mean 1.5, variance 6.025
KL_REVERSE = _optima([2.994849, -1.997059], [0.008873, -0.684220])
CHI2_REVERSE = _optima([2.998185, -1.998147], [0.002937, -0.687999])

# The 2-D scenario: a DiagGaussian fit of a 2-D mixture; its forward-KL optimum is the
# diagonal moment match.
P2 = dj.GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.7, 1.0], [1.0, 0.8]])
Q2 = dj.DiagGaussian([0.0, 0.0], [0.7, 0.7])


def _moment_match_2d():
    m, v = np.asarray(P2.mean()), np.asarray(P2.variance())
    return dj.Optima(dj.DiagGaussian._make((m[None], 0.5 * np.log(v)[None])), None)


SCENARIOS = {1: (P, Q0, MOMENT_MATCH), 2: (P2, Q2, None)}


def _scenario(d):
    p, q0, opt = SCENARIOS[d]
    return p, q0, opt if opt is not None else _moment_match_2d()


def _outcome(res):
    return str(res.status.outcome())


# --- convergence and the statuses -------------------------------------------------------


def test_exact_forward_kl_reaches_moment_matching_with_the_default_optima():
    """optima=None: judged against `divjax.optimal_q` (cached per target)."""
    res = dj.fit(P, Q0, "kl_forward", num_steps=800)
    assert float(res.q.loc) == pytest.approx(1.5, abs=1e-3)
    assert float(res.q.variance) == pytest.approx(6.025, rel=1e-3)
    assert _outcome(res) == "global" and int(res.status.diverged_at) == -1
    assert res.status.describe() == "converged to the global optimum"
    assert res.trace.q.loc.shape == (800,) and res.trace.value.shape == (800,)
    assert res.trace.grad_norm.shape == res.trace.loss.shape == res.trace.ess.shape == (800,)
    assert float(res.trace.value[-1]) < float(res.trace.value[0])
    assert float(res.status.final_value) == pytest.approx(0.4964, abs=1e-3)
    assert not bool(res.status.moving) and not bool(res.status.ran_away)


@pytest.mark.parametrize("d", [1, 2])
def test_a_short_fit_is_still_moving(d):
    p, q0, opt = _scenario(d)
    res = dj.fit(p, q0, "kl_forward", num_steps=20, optima=opt, trace_value=False)
    assert _outcome(res) == "moving", res.status.describe()
    assert res.status.describe().startswith("still moving")
    assert float(res.status.drift) > st.MOVE_TOL


def test_the_default_twenty_step_fit_is_still_moving():
    res = dj.fit(P, Q0, "kl_forward", num_steps=20)
    assert _outcome(res) == "moving" and "still moving" in res.status.describe()


@pytest.mark.parametrize("d", [1, 2])
def test_a_long_exact_fit_converges(d):
    p, q0, opt = _scenario(d)
    res = dj.fit(p, q0, "kl_forward", num_steps=1500, optima=opt, trace_value=False)
    assert _outcome(res) == "global", res.status.describe()
    np.testing.assert_allclose(res.q.mean(), np.asarray(p.mean()), atol=1e-3)
    assert np.isfinite(float(res.status.final_value))


def test_reverse_kl_mode_locking_is_a_local_optimum():
    res = dj.fit(
        P, dj.Gaussian.from_loc_scale(-2.0, 0.5), "kl_reverse", num_steps=500, optima=KL_REVERSE
    )
    assert int(res.status.optimum) == 1 and _outcome(res) == "local"
    assert res.status.describe() == "converged to local optimum #1"


def test_stuck_when_settled_near_no_optimum():
    """A fixed-scale fit judged against the free family's optima settles near none of them."""
    q0 = dj.Gaussian.from_loc_scale(-2.0, 0.3)
    res = dj.fit(
        P, q0, "kl_forward", num_steps=400, fixed_scale=True, optima=MOMENT_MATCH, trace_value=False
    )
    assert _outcome(res) == "stuck" and "stuck" in res.status.describe()
    assert int(res.status.optimum) == st.STUCK


def test_fixed_scale_fits_are_judged_against_the_fixed_scale_optimum():
    """Default optima: `optimal_q(fixed_log_scale=...)`, at whose optimum the fit ends."""
    q0 = dj.Gaussian.from_loc_scale(-2.0, 1.3)
    res = dj.fit(P, q0, "kl_forward", num_steps=400, fixed_scale=True, trace_value=False)
    assert np.all(np.asarray(res.trace.q.log_scale) == float(q0.log_scale))
    assert _outcome(res) == "global", res.status.describe()
    np.testing.assert_allclose(res.q.loc, 1.5, atol=1e-3)  # sigma fixed: mu = E_p[x]


@pytest.mark.parametrize("d", [1, 2])
def test_negative_step_size_is_diverged_or_ran_away_never_stuck(d):
    p, q0, opt = _scenario(d)
    res = dj.fit(
        p, q0, "kl_forward", learning_rate=-0.02, num_steps=500, optima=opt, trace_value=False
    )
    assert _outcome(res) in ("diverged", "ran_away"), res.status.describe()
    at = int(res.status.diverged_at)
    if at >= 0:
        assert int(res.status.reason) in (
            st.SCALE_OUT_OF_RANGE,
            st.NONFINITE_GRAD,
            st.NONFINITE_PARAMS,
        )
        assert int(res.status.optimum) == st.UNKNOWN and "diverged at step" in res.status.describe()
        # the last finite q is kept and the trace is frozen there
        leaves = jax.tree_util.tree_leaves(res.trace.q)
        assert all(np.all(np.isfinite(a)) for a in leaves)
        for a, b in zip(leaves, jax.tree_util.tree_leaves(res.q)):
            np.testing.assert_array_equal(a[at:], np.broadcast_to(b, a[at:].shape))


def test_run_away_monte_carlo_fit_is_diverged_or_ran_away_never_stuck():
    """chi2_reverse with score_sn at K = 1: the step has no scale, the fit leaves p."""
    res = dj.fit(
        P, dj.Gaussian.from_loc_scale(1.0, 1.0), "chi2_reverse", "score_sn",
        num_samples=1, num_steps=500, key=jax.random.key(0), optima=CHI2_REVERSE, trace_value=False,
    )  # fmt: skip
    assert _outcome(res) in ("diverged", "ran_away"), res.status.describe()


def test_far_away_q_ran_away():
    """The mean 100 sds from p's: "ran away", whatever the optimizer does there."""
    q0 = dj.Gaussian.from_loc_scale(300.0, 1.0)
    res = dj.fit(
        P,
        q0,
        "kl_forward",
        learning_rate=1e-9,
        num_steps=20,
        optima=MOMENT_MATCH,
        trace_value=False,
    )
    assert _outcome(res) == "ran_away" and bool(res.status.ran_away)
    assert res.status.describe().startswith("ran away")


def test_too_large_step_diverges():
    res = dj.fit(
        P,
        Q0,
        "kl_forward",
        learning_rate=5.0,
        num_steps=100,
        optima=MOMENT_MATCH,
        trace_value=False,
    )
    assert int(res.status.diverged_at) >= 0 and _outcome(res) == "diverged"
    assert int(res.status.reason) in (st.NONFINITE_GRAD, st.SCALE_OUT_OF_RANGE)


def test_k1_snis_collapses_and_is_caught():
    res = dj.fit(
        P, Q0, "kl_forward", "snis", num_samples=1, num_steps=2000, key=jax.random.key(1),
        optima=MOMENT_MATCH, trace_value=False,
    )  # fmt: skip
    assert int(res.status.diverged_at) >= 0 and _outcome(res) == "diverged"
    assert np.isfinite(float(res.q.loc)) and np.isfinite(float(res.q.log_scale))


def test_infinite_chi2_start_diverges_at_step_0():
    res = dj.fit(P, Q0, "chi2_reverse", num_steps=10, optima=CHI2_REVERSE, trace_value=False)
    assert int(res.status.diverged_at) == 0 and int(res.status.reason) == st.NONFINITE_GRAD
    assert res.status.describe() == "diverged at step 0 (non-finite gradient)"
    assert float(res.q.loc) == 0.0 and float(res.q.log_scale) == float(Q0.log_scale)  # q0 kept
    assert res.trace.value is None and np.isposinf(float(res.status.final_value))


def test_outcome_masks_are_exclusive():
    """Exactly one outcome per fit, in the documented order, on a hand-made batch."""
    n = len(st.OUTCOMES)
    status = st.FitStatus(
        diverged_at=np.array([-1, -1, -1, -1, -1, -1, 3]),
        reason=np.zeros(n, int),
        optimum=np.array([0, 1, st.STUCK, st.UNKNOWN, 0, 0, st.UNKNOWN]),
        moving=np.array([False, False, False, False, True, True, True]),
        ran_away=np.array([False, False, False, False, False, True, True]),
        final_value=np.zeros(n),
        drift=np.zeros(n),
    )
    names = status.outcome()
    assert list(names) == ["global", "local", "stuck", "settled", "moving", "ran_away", "diverged"]
    masks = st.outcome_masks(status)
    assert np.all(sum(m.astype(int) for m in masks.values()) == 1)


# --- targets, families, dimensions ----------------------------------------------------------


def test_callable_target_settles_with_no_optima_and_matches_the_mixture():
    """The same key, and log p~ = log p: the callable's fit is the mixture's, step for step."""
    kw = dict(num_samples=16, num_steps=400, key=jax.random.key(0), trace_value=False)
    res = dj.fit(P.log_prob, Q0, "kl_reverse", "reparam", **kw)
    assert res.trace.value is None and np.isnan(float(res.status.final_value))
    assert int(res.status.optimum) == st.UNKNOWN and not bool(res.status.ran_away)
    assert _outcome(res) in ("settled", "moving")
    assert abs(float(res.q.loc) - 3.0) < 0.5
    assert res.trace.ess.shape == (400,) and np.all(np.asarray(res.trace.ess) >= 1 - 1e-5)
    assert np.all(np.asarray(res.trace.ess) <= 16 * (1 + 1e-5))
    mix = dj.fit(P, Q0, "kl_reverse", "reparam", optima=KL_REVERSE, **kw)
    np.testing.assert_allclose(mix.trace.q.loc, res.trace.q.loc, rtol=1e-5, atol=1e-5)
    assert _outcome(mix) in ("global", "moving")


def test_mixture_q_recovers_a_2d_mixture_by_reinforce_cv():
    """A two-component MixtureGaussian can equal p, so reverse KL's minimum is p itself."""
    q0 = dj.MixtureGaussian(jnp.zeros(2), jnp.array([[-1.0, 0.0], [1.0, 0.0]]), jnp.zeros((2, 2)))
    res = dj.fit(
        P2, q0, "kl_reverse", "reinforce_cv", num_samples=32, key=jax.random.key(0),
        num_steps=3000, learning_rate=0.01,
    )  # fmt: skip
    order = np.argsort(np.asarray(res.q.locs[:, 0]))
    np.testing.assert_allclose(res.q.locs[order], P2.locs, atol=0.03)
    np.testing.assert_allclose(np.exp(res.q.log_scales[order]), [[0.7, 1.0], [1.0, 0.8]], rtol=0.03)
    np.testing.assert_allclose(jax.nn.softmax(res.q.logits)[order], [0.3, 0.7], atol=0.01)
    # No exact value or optimum exists for a mixture q: said, not made up.
    assert res.trace.value is None and np.isnan(float(res.status.final_value))
    assert int(res.status.optimum) == st.UNKNOWN


@pytest.mark.slow
@pytest.mark.parametrize("family", ["diag", "full"])
def test_exact_forward_fits_in_2d_reach_optimal_q(family):
    """The default optima in 2-D: `optimal_q(family=...)` (a Newton search for chi2_forward)."""
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
    assert _outcome(res) == "global", res.status.describe()
    assert res.trace.value.shape == (1500,)
    assert float(res.status.final_value) < float(res.trace.value[0])
    res = dj.fit(p, q0, "kl_forward", num_steps=1500, learning_rate=0.02, trace_value=False)
    assert _outcome(res) == "global", res.status.describe()
    assert res.trace.value is None and np.isfinite(float(res.status.final_value))
    np.testing.assert_allclose(res.q.loc, p.mean(), atol=1e-3)
    cov = p.covariance() if family == "full" else jnp.diag(jnp.diagonal(p.covariance()))
    np.testing.assert_allclose(res.q.covariance(), cov, atol=2e-3)


# --- optimizers ---------------------------------------------------------------------------


def test_any_optax_optimizer():
    res = dj.fit(
        P,
        Q0,
        "kl_forward",
        optimizer=optax.adam(0.05),
        num_steps=1500,
        optima=MOMENT_MATCH,
        trace_value=False,
    )
    assert _outcome(res) == "global", res.status.describe()


def test_lbfgs_through_the_extra_args_protocol():
    """optax.lbfgs needs value, grad and value_fn: fit passes them (and it converges fast)."""
    res = dj.fit(
        P,
        Q0,
        "kl_forward",
        optimizer=optax.lbfgs(),
        num_steps=30,
        optima=MOMENT_MATCH,
        trace_value=False,
    )
    assert _outcome(res) == "global", res.status.describe()
    np.testing.assert_allclose([float(res.q.loc), float(res.q.variance)], [1.5, 6.025], rtol=1e-4)


@pytest.mark.slow
def test_lbfgs_on_the_reverse_kl():
    q0 = dj.Gaussian.from_loc_scale(2.0, 1.0)
    res = dj.fit(
        P,
        q0,
        "kl_reverse",
        optimizer=optax.lbfgs(),
        num_steps=30,
        optima=KL_REVERSE,
        trace_value=False,
    )
    assert _outcome(res) == "global", res.status.describe()


@pytest.mark.slow
def test_reduce_on_plateau_gets_the_loss():
    opt = optax.chain(optax.sgd(0.05, momentum=0.9), optax.contrib.reduce_on_plateau(patience=20))
    res = dj.fit(
        P, Q0, "kl_forward", optimizer=opt, num_steps=400, optima=MOMENT_MATCH, trace_value=False
    )
    assert int(res.status.diverged_at) == -1 and float(res.status.final_value) < 0.5


def test_float64():
    with jax.enable_x64(True):
        res = dj.fit(
            dj.default_target(),
            dj.default_q0(),
            "kl_forward",
            num_steps=800,
            optima=MOMENT_MATCH,
            trace_value=False,
        )
        assert res.q.loc.dtype == jnp.float64 and res.status.final_value.dtype == jnp.float64
        assert float(res.q.loc) == pytest.approx(1.5, abs=1e-6)


# --- determinism, estimator states --------------------------------------------------------


def test_fit_carries_the_msc_state():
    """fit's scan gives the same fit as fitter's step in a Python loop (the chain carried)."""
    kw = dict(num_samples=8, num_steps=200, key=jax.random.key(3), learning_rate=0.01)
    res = dj.fit(P, Q0, "kl_forward", "msc", trace_value=False, optima=MOMENT_MATCH, **kw)
    assert int(res.status.diverged_at) == -1 and np.all(np.isfinite([res.q.loc, res.q.log_scale]))
    f = dj.fitter(P, "kl_forward", "msc", num_samples=8, optimizer=optax.sgd(0.01, momentum=0.9))
    state, step = f.init(Q0, kw["key"]), jax.jit(f.step)
    for t in range(200):
        state, _ = step(state, jax.random.fold_in(kw["key"], t))
    np.testing.assert_allclose(float(f.q(state).loc), float(res.q.loc), rtol=1e-5)


# --- the step-level API: fitter -----------------------------------------------------------


def test_fitter_step_under_jit_matches_a_hand_written_optax_step():
    f = dj.fitter(P, "kl_reverse", "reparam", num_samples=4, optimizer=optax.sgd(0.01))
    state = f.init(Q0, KEY)
    step = jax.jit(f.step)
    new, info = step(state, jax.random.key(7))
    loss_fn = dj.surrogate("kl_reverse", "reparam", P, 4)
    (loss, aux), g = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(Q0, jax.random.key(7))
    theta = np.array([Q0.loc, Q0.log_scale]) - 0.01 * np.array([g.loc, g.log_scale])
    np.testing.assert_allclose(new.params, theta, rtol=1e-6)
    np.testing.assert_allclose(info.loss, loss, rtol=1e-6)
    np.testing.assert_allclose(info.grad_norm, np.hypot(g.loc, g.log_scale), rtol=1e-6)
    np.testing.assert_allclose(info.ess, aux.ess, rtol=1e-6)
    assert int(new.step) == 1 and int(new.diverged_at) == -1 and new.est_state == ()
    q = f.q(new)
    assert isinstance(q, dj.Gaussian) and float(q.loc) == pytest.approx(float(theta[0]))


@pytest.mark.parametrize("d", [1, 2])
def test_fitter_vmaps_over_keys_and_starts(d):
    p, q0, _ = _scenario(d)
    f = dj.fitter(p, "kl_reverse", "reparam", num_samples=8, optimizer=optax.sgd(0.02))
    starts = jax.tree_util.tree_map(lambda a: jnp.stack([a, a + 0.5, a - 0.5]), q0)
    keys = jax.random.split(KEY, 3)

    @jax.jit
    def run(starts, keys):
        state = jax.vmap(f.init)(starts, keys)

        def body(state, t):
            state, info = jax.vmap(f.step)(
                state, jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
            )
            return state, info.loss

        state, losses = jax.lax.scan(body, state, jnp.arange(50))
        return jax.vmap(f.q)(state), state, losses

    q, state, losses = run(starts, keys)
    assert losses.shape == (50, 3) and np.all(np.isfinite(losses))
    assert np.all(np.asarray(state.step) == 50) and np.all(np.asarray(state.diverged_at) == -1)
    locs = np.asarray(q.mean()).reshape(3, -1)
    assert len({tuple(r) for r in locs.round(6)}) == 3  # three different fits
    # the same keys and start give the same fit as an unbatched loop
    single_state = f.init(jax.tree_util.tree_map(lambda a: a[1], starts), keys[1])
    step = jax.jit(f.step)
    for t in range(50):
        single_state, _ = step(single_state, jax.random.fold_in(keys[1], t))
    np.testing.assert_allclose(
        np.asarray(f.q(single_state).mean()).ravel(), locs[1], rtol=1e-5, atol=1e-6
    )


def test_msc_state_is_frozen_with_the_parameters_after_divergence():
    f = dj.fitter(P, "kl_forward", "msc", num_samples=4, optimizer=optax.sgd(-5.0))  # ascends
    step = jax.jit(f.step)
    state = f.init(Q0, jax.random.key(0))
    assert isinstance(state.est_state, dj.MSCState)
    history = []
    for t in range(60):
        state, _ = step(state, jax.random.key(t))
        history.append((int(state.diverged_at), float(state.est_state.sample)))
    at = int(state.diverged_at)
    assert 0 <= at < 59
    frozen = [s for d, s in history if d >= 0]
    assert len(set(frozen)) == 1  # the state of the rejected step was discarded


# --- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((P, Q0, "kl_reverse", "reparam"), {}, "key is required"),
        ((P, Q0, "kl_reverse", "snis"), {"key": KEY}, "valid choices"),
        ((P, Q0, "kl_forward"), {"optimizer": "sgd"}, "optax"),
        ((P, Q0, "kl_forward"), {"num_steps": 0}, "num_steps"),
        ((P, Q0, "kl_forward"), {"parameterization": "polar"}, "parameterization 'polar'"),
        ((P, (0.0, 0.0), "kl_forward"), {}, "q0 must be a divjax family"),
        ((P2, Q0, "kl_forward"), {}, "needs a DiagGaussian, FullRankGaussian"),
        ((P, Q2, "kl_forward"), {}, "needs a divjax.Gaussian q"),
        ((P2, Q2, "kl_forward"), {"parameterization": "natural"}, "own unconstrained parameters"),
        ((P2, Q2, "kl_forward"), {"natural_gradient": True}, "own unconstrained parameters"),
        ((P2, Q2, "kl_forward"), {"fixed_scale": True}, "own unconstrained parameters"),
        ((P, Q0, "kl_forward"), {"clip_norm": 0.0}, "clip_norm"),
    ],
)
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dj.fit(*args, **kwargs)


def test_fit_under_jit_says_to_use_fitter():
    with pytest.raises(ValueError, match="fitter"):
        jax.jit(lambda loc: dj.fit(P, dj.Gaussian(loc, 0.0), "kl_forward").q.loc)(0.0)
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        dj.fitter(P, "kl_forward", window=0)
