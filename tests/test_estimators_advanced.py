"""Stateful estimators' plumbing: MSC's chain state in `stateful_surrogate`, and the
stateless estimators carried through the same API.

The statistics of msc / msc_rb (unbiased at stationarity), DReG, the control
variates, IWAE are in test_estimators; the chain carried through fits in
test_fit and test_sweeps.
"""

import jax
import jax.numpy as jnp
import numpy as np

import divjax as dj
from divjax.estimators import MSCState

KEY = jax.random.key(20240917)
K = 16
ENTRIES = [
    ("kl_forward", "msc"),
    ("kl_forward", "msc_rb"),
    ("kl_forward", "snis"),
    ("kl_reverse", "reinforce_cv"),
]


@jax.jit
def _steps(p, q):
    """Per entry: the initial state, two chained kernel steps (estimate, aux, new state)
    and the plain `surrogate`'s estimate on the second step's key."""
    out = {}
    k1, k2 = jax.random.split(KEY)
    for name, est in ENTRIES:
        chain = dj.stateful_surrogate(name, est, p, K)
        grad = jax.grad(chain.loss_fn, has_aux=True)
        state = chain.init(q, jax.random.key(1))
        g1, (aux1, s1) = grad(q, k1, state)
        g2, (aux2, s2) = grad(q, k2, s1)
        plain = jax.grad(dj.surrogate(name, est, p, K), has_aux=True)(q, k2)[0]
        out[(name, est)] = (state, (g1, aux1, s1), (g2, aux2, s2), plain)
    return out


def _vec(g):
    return np.array([g.loc, g.log_scale])


def _run(dtype_x64):
    with jax.enable_x64(dtype_x64):
        p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.1)
        return p, q, jax.tree_util.tree_map(np.asarray, _steps(p, q))


def _check(p, q, out, rtol):
    for (_, est), (state, first, second, plain) in out.items():
        for g, aux, _ in (first, second):
            summed = _vec(jax.tree_util.tree_map(lambda a: a.sum(0), aux.contributions))
            np.testing.assert_allclose(
                summed, _vec(g), rtol=rtol, atol=rtol * np.abs(_vec(g)).max()
            )
            np.testing.assert_allclose(
                aux.log_weights,
                p.log_prob(aux.samples) - q.log_prob(aux.samples),
                rtol=rtol,
                atol=rtol,
            )
            assert aux.samples.shape == (K,) and 1 <= float(aux.ess) <= K
        if est.startswith("msc"):
            # particle 0 is the retained sample; the new state is one of the particles
            assert isinstance(state, MSCState)
            assert first[1].samples[0] == state.sample and second[1].samples[0] == first[2].sample
            for _, aux, new in (first, second):
                assert np.any(aux.samples == new.sample)
        else:  # stateless: () carried, the same numbers as the plain surrogate
            assert state == () and first[2] == () and second[2] == ()
            np.testing.assert_array_equal(_vec(second[0]), _vec(plain))


def test_chain_state_and_contributions_float32():
    _check(*_run(False), rtol=1e-4)


def test_chain_state_and_contributions_float64():
    p, q, out = _run(True)
    with jax.enable_x64(True):
        _check(p, q, out, rtol=1e-10)
    assert out[("kl_forward", "msc")][1][0].loc.dtype == np.float64


def test_msc_chain_moves_towards_where_p_has_mass():
    """A chain started far out (the state, not q, holds it) joins p's bulk within a few steps."""
    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.5, 2.5)
    chain = dj.stateful_surrogate("kl_forward", "msc", p, 8)

    @jax.jit
    def run(key):
        def body(state, k):
            _, (_, new) = chain.loss_fn(q, k, state)
            return new, new.sample

        return jax.lax.scan(body, MSCState(jnp.asarray(40.0)), jax.random.split(key, 10))[1]

    samples = np.asarray(jax.vmap(run)(jax.random.split(KEY, 64)))
    # p(40) / q(40) ~ e^-566: one kernel step already resamples a fresh particle
    assert samples.shape == (64, 10) and np.mean(samples[:, 0] != 40.0) > 0.95
    assert np.mean(np.abs(samples[:, -1]) < 8.0) > 0.95
