"""The closed-form asymptotics of snis/snis2 in benchmarks/_is_variance.py.

Checked against the closed-form gradients (the limit ``mu``) and against the
empirical variance and bias of divjax's own estimators (fixed keys, float64,
tolerances of 5 standard errors).
"""

import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax import DiagGaussian, GaussianMixture

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "_is_variance.py"
_SPEC = importlib.util.spec_from_file_location("divjax_bench_is_variance", _PATH)
isv = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(isv)

MC = {1: ("kl_forward", "snis"), 2: ("chi2_forward", "snis2")}


def problem(d, q_scale=1.2):
    weights = np.array([0.3, 0.7])
    locs = np.stack([-np.ones(d), np.ones(d)])
    scales = np.stack([np.ones(d), 0.7 * np.ones(d)])
    q_loc = 0.2 - 0.15 * np.arange(d)  # never p's mean 0.4, where the KL gradient is 0
    q = DiagGaussian(jnp.asarray(q_loc), jnp.log(q_scale) * jnp.ones(d))
    args = (weights, locs, scales, q_loc, q_scale * np.ones(d))
    return GaussianMixture(weights, locs, scales), q, args


@pytest.mark.parametrize("d", [1, 5])
def test_limit_is_the_closed_form_gradient(x64, d):
    p, q, args = problem(d)

    @jax.jit
    def exact(q):
        chi2 = dj.exact_grad("chi2_forward", p, q).loc
        chi2 = chi2 / (1.0 + dj.divergence("chi2_forward", p, q))
        return chi2, dj.exact_grad("kl_forward", p, q).loc

    chi2, kl = exact(q)
    for coord in range(d):
        a2 = isv.snis_asymptotics(*args, r=2, coord=coord)
        np.testing.assert_allclose(a2.mean, chi2[coord], rtol=1e-10)
        a1 = isv.snis_asymptotics(*args, r=1, coord=coord)
        np.testing.assert_allclose(a1.mean, kl[coord], rtol=1e-10)


def test_infinite_variance_where_the_fourth_moment_diverges(x64):
    # E_q[w^4] needs 4/a^2 - 3/sigma^2 > 0: sigma^2 > 3/4 for the unit component.
    _, _, args = problem(2, q_scale=math.sqrt(0.74))
    a = isv.snis_asymptotics(*args, r=2)
    assert math.isfinite(a.mean) and a.log_var == math.inf
    assert isv.log_k_for_rel_rms(a) == math.inf
    _, _, args = problem(2, q_scale=math.sqrt(0.76))
    assert math.isfinite(isv.snis_asymptotics(*args, r=2).log_var)
    # snis (r = 1) needs sigma^2 > 1/2 only.
    assert math.isfinite(isv.snis_asymptotics(*args, r=1).log_var)


def test_k_for_rel_rms_solves_the_mse_equation():
    _, _, args = problem(3)
    a = isv.snis_asymptotics(*args, r=2)
    k = math.exp(isv.log_k_for_rel_rms(a, 0.05))
    mse = math.exp(a.log_var) / k + a.bias**2 / k**2
    np.testing.assert_allclose(mse, (0.05 * a.mean) ** 2, rtol=1e-10)


@pytest.mark.parametrize("r, d, k", [(2, 1, 64), (2, 2, 128), (1, 2, 64)])
def test_variance_and_bias_match_the_estimator(x64, r, d, k):
    # K Var = V - c/K + O(1/K^2): Richardson-extrapolate from K and 4K.
    p, q, args = problem(d)
    a = isv.snis_asymptotics(*args, r=r)
    name, est = MC[r]
    n = 20_000

    def draws(kk, key, n):
        s = dj.surrogate(name, est, p, kk)
        one = jax.vmap(lambda key_: jax.grad(s, has_aux=True)(q, key_)[0].loc[0])
        return np.asarray(jax.jit(one)(jax.random.split(key, n)))

    def kvar(g, kk):
        c = g - g.mean()
        return kk * c.var(), kk * math.sqrt((np.mean(c**4) - c.var() ** 2) / len(g))

    g = draws(k, jax.random.key(1), n)
    (v1, s1), (v4, s4) = kvar(g, k), kvar(draws(4 * k, jax.random.key(2), n // 2), 4 * k)
    v_ext, s_ext = (4 * v4 - v1) / 3, math.hypot(4 * s4, s1) / 3
    assert abs(v_ext - math.exp(a.log_var)) < 5 * s_ext
    assert s_ext < 0.05 * math.exp(a.log_var)  # the check has teeth
    bias, s_bias = k * (g.mean() - a.mean), k * g.std() / math.sqrt(n)
    assert abs(bias - a.bias) < 5 * s_bias
