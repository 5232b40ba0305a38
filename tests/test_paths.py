"""fit_paths (whole trajectories of `fitter`'s step, vmapped) and draw_aux."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax.paths import draw_aux, fit_paths

MOMENT_MATCH = dj.Optima(dj.Gaussian(jnp.array([1.5]), jnp.array([0.5 * np.log(6.025)])), None)
KEY = jax.random.key(4)


def test_fit_paths_match_fit_and_report_divergence():
    p, q0 = dj.default_target(), dj.default_q0()
    path, div = fit_paths(
        p, q0, "kl_forward", learning_rate=[0.05, -0.02], momentum=[0.9, 0.0], num_steps=40, key=KEY
    )
    assert path.loc.shape == (2, 41) and div.shape == (2,)
    assert path.loc[0, 0] == q0.loc and path.log_scale[1, 0] == q0.log_scale  # the start first
    assert div[0] == -1 and div[1] >= 0  # a negative step size runs away, reported not raised
    after = path.loc[1, div[1] + 1 :]
    assert np.all(after == after[0])  # frozen after the divergence
    ref = dj.fit(p, q0, "kl_forward", num_steps=40, optima=MOMENT_MATCH, trace_value=False)
    np.testing.assert_allclose(path.loc[0, 1:], np.asarray(ref.trace.q.loc), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        path.log_scale[0, 1:], np.asarray(ref.trace.q.log_scale), rtol=1e-5, atol=1e-6
    )


def test_monte_carlo_paths_batch_over_seeds_and_starts():
    p = dj.default_target()
    starts = dj.Gaussian(jnp.array([-1.0, 1.0, 2.0]), jnp.zeros(3))
    path, div = fit_paths(
        p, starts, "kl_reverse", "reparam", num_samples=4, num_steps=20, key=KEY, optimizer="adam"
    )
    assert path.loc.shape == (3, 21) and np.all(div == -1)
    np.testing.assert_array_equal(path.loc[:, 0], [-1.0, 1.0, 2.0])
    assert np.all(np.isfinite(path.loc)) and len(np.unique(path.loc[:, -1])) == 3
    seeds, _ = fit_paths(
        p,
        dj.default_q0(),
        "kl_reverse",
        "reparam",
        num_samples=4,
        num_seeds=2,
        num_steps=20,
        key=KEY,
    )
    assert seeds.loc.shape == (2, 21) and seeds.loc[0, -1] != seeds.loc[1, -1]
    with pytest.raises(ValueError, match="valid choices"):
        fit_paths(p, dj.default_q0(), "kl_forward", optimizer="rmsprop", key=KEY)


def test_draw_aux_single_and_batched():
    p = dj.default_target()
    q = dj.Gaussian.from_loc_scale(1.0, 1.2)
    aux = draw_aux(p, q, "kl_forward", "snis", 8, KEY)
    assert aux.samples.shape == (8,)
    np.testing.assert_allclose(
        aux.log_weights, p.log_prob(aux.samples) - q.log_prob(aux.samples), rtol=1e-5, atol=1e-5
    )
    qs = jax.tree_util.tree_map(lambda a: jnp.stack([a, a + 0.5]), q)
    batched = draw_aux(p, qs, "kl_forward", "snis", 8, KEY)
    assert batched.samples.shape == (2, 8) and batched.ess.shape == (2,)
