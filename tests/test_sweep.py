"""sweep: one program for many fits; agreement with fit; sharding across devices."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import divjax as dj
from divjax.sweep import sweep


@pytest.fixture(scope="module")
def result():
    p = dj.default_target()
    return sweep(
        p,
        dj.default_q0(),
        [("kl_forward", "snis"), ("kl_reverse", "reinforce_loo"), ("kl_reverse", "exact")],
        num_samples=(1, 4),
        num_seeds=8,
        num_steps=100,
        key=jax.random.key(0),
    )


def test_configs_and_shapes(result):
    configs = [r.config for r in result.runs]
    assert [(c.name, c.estimator, c.num_samples) for c in configs] == [
        ("kl_forward", "snis", 1),
        ("kl_forward", "snis", 4),
        ("kl_reverse", "reinforce_loo", 4),  # K=1 skipped: RLOO needs 2
        ("kl_reverse", "exact", 0),
    ]
    for r in result.runs:
        assert r.q.loc.shape == (8,) and r.status.optimum.shape == (8,)
    assert result.particle_steps() == (1 + 4 + 4) * 8 * 100


def test_exact_is_the_same_for_every_seed(result):
    exact = result.runs[-1]
    assert np.all(exact.q.loc == exact.q.loc[0])


def test_matches_individual_fit():
    p, q0 = dj.default_target(), dj.default_q0()
    key = jax.random.key(5)
    res = sweep(
        p, q0, [("kl_reverse", "reparam")], num_samples=(4,), num_seeds=3, num_steps=50, key=key
    )
    seed_key = jax.random.fold_in(jax.random.split(key, 3)[1], 0)
    single = dj.fit(
        p, q0, "kl_reverse", "reparam", num_samples=4, num_steps=50, key=seed_key, trace_value=False
    )
    np.testing.assert_allclose(res.runs[0].q.loc[1], single.q.loc, atol=1e-4)
    np.testing.assert_allclose(res.runs[0].q.log_scale[1], single.q.log_scale, atol=1e-4)


def test_bad_arguments():
    p, q0 = dj.default_target(), dj.default_q0()
    with pytest.raises(ValueError, match="valid choices"):
        sweep(p, q0, [("kl_forward", "reparam")], key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_samples"):
        sweep(p, q0, [("kl_forward", "snis")], num_samples=(0,), key=jax.random.key(0))
    with pytest.raises(ValueError, match="GradientTransformation"):
        sweep(p, q0, [("kl_forward", "snis")], optimizers={"x": 1}, key=jax.random.key(0))


SHARDED = textwrap.dedent("""
    import json, jax, numpy as np, divjax as dj
    from divjax.sweep import sweep
    res = sweep(dj.default_target(), dj.default_q0(), [("kl_reverse", "reparam")],
                num_samples=(4,), num_seeds=8, num_steps=50, key=jax.random.key(1))
    print(json.dumps({"devices": jax.device_count(),
                      "loc": np.asarray(res.runs[0].q.loc).tolist()}))
""")


def _run(devices):
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        JAX_ENABLE_X64="1",
    )
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, check=True
    )
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_across_four_devices_gives_same_numbers():
    """Same keys, same fits: equal up to float64 rounding (each device count compiles anew)."""
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and four["devices"] == 4
    np.testing.assert_allclose(four["loc"], one["loc"], rtol=1e-10)
