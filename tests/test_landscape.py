"""Divergence surfaces over q's coordinates: grids, Hessians (convexity), values along paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divjax as dj
from divjax import landscape
from divjax.coordinates import PARAMETERIZATIONS
from tests import _shared

NAMES = tuple(PARAMETERIZATIONS)
OTHERS = ("mu_log_sigma", "mu_sigma", "mu_tau", "expectation")


def test_landscape_grid_domain_infinite_region_and_values(x64):
    p = dj.default_target()
    t1, t2, v = dj.landscape_grid("chi2_forward", p, "natural", (-1.0, 1.0), (-2.9, 0.6), 8)
    assert t1.shape == t2.shape == v.shape == (8, 8)
    eta2 = np.asarray(t2)
    assert np.all(np.isnan(v[eta2 >= 0]))  # outside the domain
    assert np.all(np.isposinf(v[(eta2 < 0) & (eta2 <= -1.0)]))  # sigma^2 <= s_max^2 / 2
    finite = (eta2 < 0) & (eta2 > -1.0)
    assert finite.any() and np.all(np.isfinite(v[finite]))
    i, j = np.argwhere(finite)[0]
    q = PARAMETERIZATIONS["natural"].to_gaussian(jnp.array([t1[i, j], t2[i, j]]))
    np.testing.assert_allclose(v[i, j], dj.divergence("chi2_forward", p, q), rtol=1e-12)
    # log=True is log(1 + D), finite where D is, and rows follow theta2.
    _, _, lv = dj.landscape_grid(
        "chi2_forward", p, "natural", (-1.0, 1.0), (-2.9, 0.6), 8, log=True
    )
    np.testing.assert_allclose(lv[finite], np.log1p(v[finite]), rtol=1e-10)
    assert np.all(np.diff(np.asarray(t2)[:, 0]) > 0) and np.all(np.asarray(t2)[0] == t2[0, 0])
    with pytest.raises(ValueError, match="num"):
        dj.landscape_grid("kl_forward", p, "natural", (0, 1), (-1, -0.1), 1)
    with pytest.raises(ValueError, match="parameterization 'polar'"):
        dj.landscape_grid("kl_forward", p, "polar", (0, 1), (-1, -0.1), 4)


def test_path_values_match_the_divergence_and_keep_the_batch_shape(x64):
    p = dj.default_target()
    pairs = ((0.0, 5.0**0.5), (1.0, 1.2), (3.0, 1.0), (-2.0, 0.6), (20.0, 3.0), (-9.0, 0.8))
    ref = _shared.exact_default(pairs, ("main",))
    path = jax.tree_util.tree_map(lambda a: a.reshape(2, 3), _shared.gaussians(pairs))
    for name in ("kl_reverse", "chi2_forward"):  # a quadrature and a closed form
        v = np.asarray(dj.path_values(name, p, path))
        assert v.shape == (2, 3)
        np.testing.assert_allclose(v.ravel(), ref[f"{name}:None"]["value"], rtol=1e-12)
    lv = np.asarray(dj.path_values("chi2_forward", p, path, log=True))
    np.testing.assert_allclose(lv.ravel(), ref["chi2_forward:None"]["log1p"], rtol=1e-12)


def test_surface_marks_the_infinite_region(x64):
    p = dj.default_target()
    s = landscape.surface("chi2_reverse", p, (-4.0, 5.0), (-1.5, 1.5), num=6)
    assert s.log and s.values.shape == s.loc.shape == (6, 6) and s.infinite.shape == (48, 24)
    # chi2(q || p) is infinite iff sigma^2 >= 2 s_max^2, i.e. log sigma >= log(2) / 2.
    np.testing.assert_array_equal(s.infinite, s.fine_log_scale >= 0.5 * np.log(2.0))
    np.testing.assert_array_equal(np.isposinf(s.values), s.log_scale >= 0.5 * np.log(2.0))
    window = landscape.default_window(p, starts=[(10.0, 2.0)])
    assert window[0][1] > 10.0 and window[1][1] > 2.0


# --- convexity by Hessian eigenvalues ------------------------------------------------------


def _grid(lo, hi, num=7):
    loc, scale = np.meshgrid(np.linspace(-6.0, 7.0, num), np.geomspace(lo, hi, num))
    return dj.Gaussian(jnp.asarray(loc.ravel()), jnp.asarray(np.log(scale.ravel())))


def _min_rel_eig(name, qs, params, log=False):
    """Per parameterization: the minimum over the grid of smallest / largest |eigenvalue|."""
    p = dj.default_target()
    out = {}
    for n in params:
        e = np.asarray(dj.hessian_eigenvalues(name, p, n, qs, log=log))
        assert e.shape == (len(qs.loc), 2) and np.all(np.isfinite(e)), n
        out[n] = np.min(e[:, 0] / np.max(np.abs(e), axis=1))
    return out


def test_forward_kl_convex_in_natural_coordinates_only(x64):
    rel = _min_rel_eig("kl_forward", _grid(0.2, 6.0), NAMES)
    assert rel["natural"] > 0
    assert all(rel[n] < -1e-3 for n in OTHERS), rel


def test_forward_kl_counterexample_in_mu_log_sigma_is_the_closed_form_one(x64):
    # Hessian of log sigma + (v + (m - mu)^2) / (2 sigma^2) in (mu, log sigma) has
    # determinant 2 (v - (m - mu)^2) / sigma^4: indefinite iff |mu - m| > sqrt(v).
    p = dj.default_target()
    m, sd = float(p.mean()), float(jnp.sqrt(p.variance()))
    qs = dj.Gaussian(jnp.array([m, m + 0.9 * sd, m + 1.1 * sd]), jnp.zeros(3))
    ev = np.asarray(dj.hessian_eigenvalues("kl_forward", p, "mu_log_sigma", qs))
    assert np.all(ev[:2, 0] > 0) and ev[2, 0] < 0


@pytest.mark.slow  # the chi-squares' Hessians in five coordinate systems
def test_forward_chi2_log_convex_in_natural_coordinates_only(x64):
    # sigma^2 > s_max^2 / 2: finite. Log-convex implies convex, so log(1 + chi^2) suffices.
    rel = _min_rel_eig("chi2_forward", _grid(0.75, 6.0), NAMES, log=True)
    assert rel["natural"] > 0
    assert all(rel[n] < -1e-3 for n in OTHERS), rel


@pytest.mark.slow  # 6 s; convexity in natural coordinates is tested for the forward KL
def test_reverse_chi2_nonconvex_in_natural_coordinates(x64):
    qs = _grid(0.2, 1.35)  # sigma^2 < 2 s_max^2: finite
    assert _min_rel_eig("chi2_reverse", qs, ("natural",))["natural"] < -1e-3
    assert _min_rel_eig("chi2_reverse", qs, ("natural",), log=True)["natural"] < -1e-3
