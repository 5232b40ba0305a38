"""sweep: many fits in one program; agreement with fit; d = 1 and 2; log-density targets."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import divjax as dj
from divjax import status
from divjax.sweeps import configs

P = dj.default_target()
Q0 = dj.default_q0()
MOMENT_MATCH = dj.Optima(dj.Gaussian(jnp.array([1.5]), jnp.array([0.5 * np.log(6.025)])), None)
KL_REVERSE = dj.Optima(
    dj.Gaussian(jnp.array([2.994849, -1.997059]), jnp.array([0.008873, -0.684220])), None
)
OPTIMA = {"kl_forward": MOMENT_MATCH, "kl_reverse": KL_REVERSE}

P2 = dj.GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.7, 1.0], [1.0, 0.8]])
Q2 = dj.DiagGaussian([0.0, 0.0], [0.7, 0.7])


def banana(x):
    """A per-point 2-D log density (unnormalized)."""
    return -0.5 * (x[0] ** 2 / 4.0 + (x[1] - 0.25 * x[0] ** 2) ** 2)


@pytest.fixture(scope="module")
def result():
    return dj.sweep(
        P,
        Q0,
        [("kl_forward", "snis"), ("kl_reverse", "reinforce_loo"), ("kl_reverse", "exact")],
        num_samples=(1, 4),
        num_seeds=8,
        num_steps=100,
        optimizers={"sgd": dj.default_optimizer(), "adam": optax.adam(0.05)},
        key=jax.random.key(0),
        optima=OPTIMA,
    )


def test_configs_and_shapes(result):
    got = [
        (c.name, c.estimator, c.num_samples, c.optimizer) for c in (r.config for r in result.runs)
    ]
    per = [
        ("kl_forward", "snis", 1),
        ("kl_forward", "snis", 4),
        ("kl_reverse", "reinforce_loo", 4),  # K = 1 skipped: RLOO needs 2
        ("kl_reverse", "exact", 0),  # deterministic: one fit, reported with K = 0
    ]
    assert got == [c + (o,) for o in ("sgd", "adam") for c in per]
    for r in result.runs:
        assert r.q.loc.shape == (8,) and r.status.optimum.shape == (8,)
        assert r.status.outcome().shape == (8,)
        assert np.all(np.isin(r.status.outcome(), status.OUTCOMES))
    assert result.particle_steps() == 2 * (1 + 4 + 4) * 8 * 100
    assert result.num_seeds == 8 and result.num_steps == 100
    assert result.compile_s > 0 and result.run_s > 0


def test_exact_is_the_same_for_every_seed_and_has_final_values(result):
    exact = [r for r in result.runs if r.config.estimator == "exact"]
    for r in exact:
        assert np.all(r.q.loc == r.q.loc[0]) and np.all(np.isfinite(r.status.final_value))
    mc = [r for r in result.runs if r.config.estimator != "exact"]
    assert all(np.unique(np.asarray(r.q.loc)).size > 1 for r in mc)  # the seeds differ


def test_configs_skip_k_below_the_minimum():
    cfgs = configs([("kl_forward", "msc"), ("renyi_reverse", "sn", 0.5)], (1, 2), {"x": None})
    assert [(c.estimator, c.num_samples, c.alpha) for c in cfgs] == [
        ("msc", 2, None),
        ("sn", 1, 0.5),
        ("sn", 2, 0.5),
    ]


def test_matches_individual_fits_for_a_stateless_and_a_stateful_estimator():
    key = jax.random.key(5)
    res = dj.sweep(
        P, Q0, [("kl_reverse", "reparam"), ("kl_forward", "msc")], num_samples=(4,),
        num_seeds=3, num_steps=50, key=key, optima=OPTIMA,
    )  # fmt: skip
    assert [(r.config.estimator, r.config.num_samples) for r in res.runs] == [
        ("reparam", 4),
        ("msc", 4),
    ]
    for c, run in enumerate(res.runs):
        # seed s of configuration c starts from fold_in(split(key, num_seeds)[s], c)
        seed_key = jax.random.fold_in(jax.random.split(key, 3)[1], c)
        single = dj.fit(
            P, Q0, run.config.name, run.config.estimator, num_samples=4, num_steps=50,
            key=seed_key, trace_value=False, optima=OPTIMA[run.config.name],
        )  # fmt: skip
        np.testing.assert_allclose(run.q.loc[1], single.q.loc, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(run.q.log_scale[1], single.q.log_scale, rtol=1e-5, atol=1e-5)
        assert str(run.status.outcome()[1]) == str(single.status.outcome())


def test_2d_diag_fits_of_a_2d_mixture():
    m, v = np.asarray(P2.mean()), np.asarray(P2.variance())
    moment_match = dj.Optima(dj.DiagGaussian._make((m[None], 0.5 * np.log(v)[None])), None)
    res = dj.sweep(
        P2, Q2, [("kl_forward", "snis"), ("kl_forward", "exact"), ("kl_reverse", "reparam")],
        num_samples=(16,), num_seeds=4, num_steps=300, key=jax.random.key(1),
        optima={"kl_forward": moment_match, "kl_reverse": None},
    )  # fmt: skip
    runs = {r.config.estimator: r for r in res.runs}
    for r in res.runs:
        assert r.q.loc.shape == (4, 2) and r.q.log_scale.shape == (4, 2)
        assert np.all(np.isfinite(r.status.final_value)) and np.all(r.status.diverged_at == -1)
    assert np.all(runs["exact"].status.outcome() == "global")
    np.testing.assert_allclose(runs["exact"].q.loc[0], m, atol=1e-2)
    assert np.all(runs["reparam"].status.optimum == status.UNKNOWN)  # optima None: not judged
    # SNIS at K = 16 lands near the moment match (its O(1/K) bias is small here)
    assert np.all(np.abs(runs["snis"].q.loc - m) < 0.5)


def test_a_callable_2d_target():
    """A per-point log density: no exact values, no optima; the fits settle or still move."""
    res = dj.sweep(
        banana, Q2, [("kl_reverse", "reparam"), ("kl_forward", "snis")], num_samples=(8,),
        num_seeds=4, num_steps=300, key=jax.random.key(2),
    )  # fmt: skip
    for r in res.runs:
        assert r.q.loc.shape == (4, 2)
        assert np.all(np.isnan(r.status.final_value))
        assert np.all(r.status.optimum == status.UNKNOWN)
        assert set(r.status.outcome()) <= {"settled", "moving"}
        assert np.all(np.isfinite(r.q.loc))
    # banana: E[x1] = 0, E[x2] = E[x1^2] / 4 = 1: the reverse-KL fit is centred near x1 = 0
    assert np.all(np.abs(res.runs[0].q.loc[:, 0]) < 0.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid choices"):
        dj.sweep(P, Q0, [("kl_forward", "reparam")], key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_samples"):
        dj.sweep(P, Q0, [("kl_forward", "snis")], num_samples=(0,), key=jax.random.key(0))
    with pytest.raises(ValueError, match="GradientTransformation"):
        dj.sweep(P, Q0, [("kl_forward", "snis")], optimizers={"x": 1}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="at least one"):
        dj.sweep(P, Q0, [("kl_forward", "snis")], optimizers={}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_seeds"):
        dj.sweep(P, Q0, [("kl_forward", "snis")], num_seeds=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="d = 2 target needs"):
        dj.sweep(P2, Q0, [("kl_forward", "snis")], key=jax.random.key(0))
    with pytest.raises(ValueError, match="own unconstrained parameters"):
        dj.sweep(
            P2, Q2, [("kl_forward", "snis")], key=jax.random.key(0), parameterization="natural"
        )


# --- an application: MSC's fixed point does not depend on K; SNIS's does ----------------------


@pytest.fixture(scope="module")
def fixed_point_sweep():
    """Start at moment matching, Robbins-Monro-like decaying SGD, 64 seeds.

    Overlapping modes, so the CIS chain mixes at K = 2 (on the default target's
    separated modes K = 2 mixes too slowly for this budget).
    """
    p = dj.GaussianMixture([0.5, 0.5], [-1.0, 1.5], [1.0, 0.8])
    q_star = dj.Gaussian.from_loc_variance(p.mean(), p.variance())
    opt = optax.sgd(optax.polynomial_schedule(0.01, 0.0005, 1.0, 2000))
    optimum = dj.Optima(jax.tree_util.tree_map(lambda a: a[None], q_star), None)
    res = dj.sweep(
        p, q_star, [("kl_forward", "snis"), ("kl_forward", "msc")], num_samples=(2, 16),
        num_seeds=64, num_steps=2000, optimizers={"sgd": opt}, key=jax.random.key(7),
        optima={"kl_forward": optimum},
    )  # fmt: skip
    return q_star, {(r.config.estimator, r.config.num_samples): r for r in res.runs}


def _offset(run, q_star):
    """``(2,)`` mean over seeds of the final ``(loc, log_scale)`` minus the optimum, and its SE."""
    x = np.stack([np.asarray(run.q.loc, np.float64), np.asarray(run.q.log_scale, np.float64)])
    x -= np.array([[float(q_star.loc)], [float(q_star.log_scale)]])
    return x.mean(1), x.std(1, ddof=1) / np.sqrt(x.shape[1])


def test_msc_fit_reaches_moment_matching_at_k2(fixed_point_sweep):
    q_star, runs = fixed_point_sweep
    for k in (2, 16):
        assert np.all(runs[("msc", k)].status.diverged_at < 0)
        off, se = _offset(runs[("msc", k)], q_star)
        assert np.all(np.abs(off) < 5 * se), (k, off, se)


def test_snis_fit_is_k_biased(fixed_point_sweep):
    q_star, runs = fixed_point_sweep
    off2, se2 = _offset(runs[("snis", 2)], q_star)
    off16, se16 = _offset(runs[("snis", 16)], q_star)
    assert abs(off2[1]) > 5 * se2[1]  # log_scale shrinks at K = 2
    assert abs(off2[1]) - abs(off16[1]) > 5 * np.hypot(se2[1], se16[1])  # and less at K = 16


# --- devices ---------------------------------------------------------------------------------

SHARDED = textwrap.dedent("""
    import json, jax, numpy as np, divjax as dj
    res = dj.sweep(dj.default_target(), dj.default_q0(), [("kl_reverse", "reparam")],
                   num_samples=(4,), num_seeds=8, num_steps=50, key=jax.random.key(1),
                   optima={"kl_reverse": None})
    print(json.dumps({"devices": jax.device_count(),
                      "loc": np.asarray(res.runs[0].q.loc).tolist()}))
""")


def _run(devices):
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        JAX_ENABLE_X64="1",
        PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    )
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sharded_across_four_devices_gives_the_same_numbers():
    """Same keys, same fits: equal up to float64 rounding (each device count compiles anew)."""
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and four["devices"] == 4
    np.testing.assert_allclose(four["loc"], one["loc"], rtol=1e-10)
