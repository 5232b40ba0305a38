"""check_grad: a right gradient formula passes, a classic slip is caught, and where."""

import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax.gradcheck import default_qs


def _sigma_slip(name, alpha=None):
    """A classic slip: the gradient with respect to sigma, not log sigma."""

    def wrong(p, q):
        g = dj.exact_grad(name, p, q, alpha=alpha)
        return dj.Gaussian._make((g.loc, g.log_scale / q.scale))

    return wrong


@pytest.mark.parametrize("name", ["kl_reverse", "chi2_forward"])  # a quadrature, a closed form
def test_passes_the_right_formula_and_catches_a_wrong_one(x64, name, capsys):
    p = dj.default_target()
    good = dj.check_grad(lambda p_, q: dj.exact_grad(name, p_, q), name, p)
    assert good.ok and good.num_q > 0
    out = capsys.readouterr().out
    assert "PASS" in out and name in out and "log_scale" in out
    bad = dj.check_grad(_sigma_slip(name), name, p, verbose=False)
    assert not bad.ok and float(bad.max_rel_err.log_scale) > 1e-2
    assert float(bad.max_rel_err.loc) < 1e-6  # the loc part is still right
    assert capsys.readouterr().out == ""


def test_skips_q_where_the_divergence_is_infinite(x64):
    p = dj.default_target()
    qs = default_qs(p)
    n_inf = int(np.sum(np.isposinf(np.asarray(dj.path_values("chi2_reverse", p, qs)))))
    assert n_inf > 0  # the grid's widest q's: sigma^2 >= 2 s_max^2
    res = dj.check_grad(
        lambda p_, q: dj.exact_grad("chi2_reverse", p_, q), "chi2_reverse", p, verbose=False
    )
    assert res.ok and res.num_q == len(qs.loc) - n_inf
    narrow = dj.Gaussian(jnp.zeros(2), jnp.full(2, -3.0))  # chi2_forward infinite at both
    with pytest.raises(ValueError, match="infinite at every q"):
        dj.check_grad(lambda p_, q: q, "chi2_forward", p, narrow)


@pytest.mark.slow  # 8 s; the main divergences are checked in the other tests
def test_alpha_divergence_and_given_qs(x64):
    p = dj.default_target()
    qs = dj.Gaussian(jnp.array([1.0, 3.0]), jnp.log(jnp.array([1.2, 1.0])))
    kw = dict(alpha=0.5, verbose=False)
    good = dj.check_grad(
        lambda p_, q: dj.exact_grad("amari", p_, q, alpha=0.5), "amari", p, qs, **kw
    )
    assert good.ok and good.num_q == 2
    assert not dj.check_grad(_sigma_slip("amari", 0.5), "amari", p, qs, **kw).ok


def test_bad_input():
    p = dj.default_target()
    with pytest.raises(ValueError, match="valid choices"):
        dj.check_grad(lambda p_, q: q, "kl", p)
    with pytest.raises(ValueError, match="1-D target"):
        default_qs(dj.GaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 1.0]]))
