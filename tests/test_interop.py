"""Distributions as users write them: numpyro, TFP on JAX and distrax, both ways."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax import interop

warnings.filterwarnings("ignore", category=DeprecationWarning)
LIBS = [pytest.param(lib, id=lib) for lib in interop.LIBRARIES]
MODULES = {"numpyro": "numpyro", "tfp": "tensorflow_probability", "distrax": "distrax"}


def families():
    return {
        "gaussian": dj.Gaussian(jnp.asarray(0.3), jnp.asarray(-0.2)),
        "diag": dj.DiagGaussian(jnp.array([0.5, -1.0]), jnp.array([0.1, -0.3])),
        "full": dj.FullRankGaussian(jnp.array([0.5, -1.0]), jnp.array([[0.1, 0.0], [0.4, -0.3]])),
        "mixture": dj.MixtureGaussian(
            jnp.array([0.2, -0.1]),
            jnp.array([[-1.0, 0.0], [1.0, 0.5]]),
            jnp.array([[0.0, -0.2], [0.1, 0.3]]),
        ),
    }


@pytest.mark.parametrize("lib", LIBS)
def test_round_trip_and_log_prob(x64, lib):
    pytest.importorskip(MODULES[lib])
    for name, q in families().items():
        d = interop.to_distribution(q, lib)
        x = q.sample(jax.random.key(0), (3, 2))
        np.testing.assert_allclose(
            d.log_prob(x), q.log_prob(x), rtol=1e-10, atol=1e-10, err_msg=name
        )
        back = interop.from_distribution(d)
        assert type(back) is type(q)
        np.testing.assert_allclose(
            back.log_prob(x), q.log_prob(x), rtol=1e-10, atol=1e-10, err_msg=name
        )


@pytest.mark.parametrize("lib", LIBS)
def test_a_distribution_is_a_target(x64, lib):
    """The distribution (a log density) gives the same estimate as the equivalent mixture."""
    pytest.importorskip(MODULES[lib])
    mix_q = families()["mixture"]
    target = interop.to_distribution(mix_q, lib)
    mixture = interop.as_mixture(target)
    q = families()["diag"]
    key = jax.random.key(1)
    for est in ("reparam", "reinforce"):
        g1, _ = jax.jit(jax.grad(dj.surrogate("kl_reverse", est, target, 16), has_aux=True))(q, key)
        g2, _ = jax.jit(jax.grad(dj.surrogate("kl_reverse", est, mixture, 16), has_aux=True))(
            q, key
        )
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    # The mixture has exact divergences; q against its own distribution is 0.
    assert float(
        dj.divergence("kl_reverse", interop.as_mixture(interop.to_distribution(q, lib)), q)
    ) == pytest.approx(0, abs=1e-10)


def test_batched_distribution_is_refused_with_the_fix():
    nd = pytest.importorskip("numpyro.distributions")
    with pytest.raises(ValueError, match="to_event"):
        dj.surrogate("kl_reverse", "reparam", nd.Normal(jnp.zeros(2), 1.0), 4)
    with pytest.raises(ValueError, match="no divjax family"):
        interop.from_distribution(nd.Gamma(1.0, 1.0))
    with pytest.raises(ValueError, match="valid choices"):
        interop.to_distribution(families()["diag"], "pymc")


@pytest.mark.parametrize("lib", LIBS)
def test_sample_keyword_conventions(lib):
    """``seed=`` and ``sample_shape=`` as numpyro, TFP and distrax users type them."""
    pytest.importorskip(MODULES[lib])
    q = families()["diag"]
    key = jax.random.key(2)
    a = q.sample(seed=key, sample_shape=(4,))
    b = q.sample(key, 4)
    c = q.sample(key=key, sample_shape=(2, 2))
    assert a.shape == (4, 2) and c.shape == (2, 2, 2)
    np.testing.assert_array_equal(a, b)
    d = interop.to_distribution(q, lib)
    draws = d.sample(seed=key, sample_shape=(5,)) if lib != "numpyro" else d.sample(key, (5,))
    assert draws.shape == (5, 2)
