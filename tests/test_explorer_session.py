"""The explorer's session (no matplotlib): the page preset, compilation counts, the status rule."""

import contextlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy import integrate

import divjax as dj
from divjax.explorer import compute, options
from divjax.explorer.landscape_panel import to_theta
from divjax.explorer.session import Session

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PAGE_START = (6.0, 3.0)  # (mu, sigma) of the fixed start: far enough for the clipping to act


@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations inside the block, and new entries of the explorer's programs."""
    n = {"xla": 0}

    def listener(event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            n["xla"] += 1

    sizes = (compute.run_steps._cache_size(), compute.view._cache_size())
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield n
    finally:
        jax._src.monitoring.unregister_event_duration_listener(listener)
        n["programs"] = compute.run_steps._cache_size() + compute.view._cache_size() - sum(sizes)


@pytest.fixture(scope="module")
def session():
    """Forward and reverse KL side by side, exact, on the default target (float32)."""
    return Session(optima=False)


def test_importing_divjax_or_the_session_imports_no_matplotlib():
    code = (
        "import sys, divjax, divjax.explorer.session, divjax.explorer.compute; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "assert divjax.explorer.__file__.endswith('__init__.py')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


# --- the page preset: the first 200 steps, against an independent computation --------------


def _page_reference(num_steps, start):
    """(mu, sigma) after each step: natural gradient, clip at norm 5, SGD lr 0.08/(1+0.001 t).

    Written from the update rule alone (numpy and scipy, float64): forward KL's gradient
    from the mixture's moments, reverse KL's by adaptive quadrature of the target's score
    under q, the Fisher of N(mu, sigma^2) in (mu, sigma) as diag(1/s^2, 2/s^2).
    """
    w, m, s = np.array([0.5, 0.5]), np.array([-3.0, 2.0]), np.array([0.9, 0.7])
    mean = w @ m
    var = w @ (s**2 + m**2) - mean**2

    def score_p(x):  # d/dx log p, with the responsibilities in log space
        log_c = np.log(w / s) - 0.5 * ((x - m) / s) ** 2
        r = np.exp(log_c - log_c.max())
        return (r * (-(x - m) / s**2)).sum() / r.sum()

    def expect(f, mu, sigma):  # E_{eps ~ N(0, 1)}[f(mu + sigma eps, eps)]
        def g(e):
            return np.exp(-0.5 * e * e) / np.sqrt(2 * np.pi) * f(mu + sigma * e, e)

        return integrate.quad(g, -40, 40, points=sorted((m - mu) / sigma), limit=400)[0]

    def grad(direction, mu, sigma):
        if direction == "forward":
            return np.array(
                [-(mean - mu) / sigma**2, 1 / sigma - (var + (mean - mu) ** 2) / sigma**3]
            )
        d_mu = -expect(lambda x, e: score_p(x), mu, sigma)
        d_sigma = -1 / sigma - expect(lambda x, e: score_p(x) * e, mu, sigma)
        return np.array([d_mu, d_sigma])

    out = {}
    for direction in ("forward", "reverse"):
        theta, path = np.array(start, float), []
        for t in range(num_steps):
            g = np.array([theta[1] ** 2, theta[1] ** 2 / 2]) * grad(direction, *theta)  # F^-1 g
            norm = np.linalg.norm(g)
            if norm > 5.0:
                g = g * 5.0 / norm
            theta = theta - 0.08 / (1 + 0.001 * t) * g
            path.append(theta.copy())
        out[direction] = np.array(path)
    return out


def test_page_preset_reproduces_the_first_200_steps(x64):
    opts = options.preset("page")
    assert opts["target"] == ((0.5, 0.5), (-3.0, 2.0), (0.9, 0.7))
    assert (opts["num_samples"], opts["learning_rate"], opts["decay"]) == (64, 0.08, 0.001)
    assert opts["parameterization"] == "mu_sigma" and opts["natural_gradient"]
    assert opts["clip_norm"] == 5.0 and opts["q0"] is None and opts["momentum"] == 0.0
    opts.pop("q0")
    target = opts.pop("target")
    q0 = dj.Gaussian.from_loc_scale(*PAGE_START)
    s = Session(target, q0, optima=False, **opts)
    assert s.dtype == np.float64 and s.settings.num_samples == 64
    got = {d: [] for d in compute.DIRECTIONS}
    for _ in range(200):
        s.advance(1)
        for d in got:
            q = s.q(d)
            got[d].append((float(q.loc), float(q.scale)))
    ref = _page_reference(200, PAGE_START)
    first = np.linalg.norm(ref["reverse"][0] - PAGE_START) / 0.08
    assert first == pytest.approx(5.0)  # the first step was clipped
    for d in compute.DIRECTIONS:
        np.testing.assert_allclose(np.array(got[d]), ref[d], atol=1e-6, rtol=0)
    assert s.step("forward") == s.step("reverse") == 200


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"divergence": "kl_sideways"}, "valid choices: kl, chi2, kl_forward"),
        ({"estimator": "nope"}, "valid choices: exact, "),
        ({"num_samples": 513}, "from 1 to 512"),
        ({"num_samples": 2.5}, "from 1 to 512"),
        ({"optimizer": "rmsprop"}, "valid choices: sgd, adam"),
        ({"parameterization": "polar"}, "valid choices: mu_log_sigma, mu_sigma"),
        ({"parameterization": "natural", "fixed_scale": True}, "valid choices: mu_log_sigma"),
        ({"momentum": 1.5}, "momentum must be a finite number in"),
        ({"clip_norm": -1.0}, "clip_norm must be positive"),
        ({"target": ((1.0,), (0.0, 1.0), (1.0,))}, "locs must be"),
    ],
)
def test_bad_options_raise_value_errors_naming_the_choices(kwargs, match):
    target = kwargs.pop("target", None)
    with pytest.raises(ValueError, match=match):
        Session(target, dj.Gaussian(0.0, 0.0), **kwargs)


def test_bad_preset_names_the_presets():
    with pytest.raises(ValueError, match="valid choices: default, page"):
        options.preset("pages")


def test_estimator_is_used_where_it_is_valid():
    exact, ests = options.parse_estimators("kl", ("forward", "reverse"), "reparam")
    assert not exact and ests == ("snis", "reparam")
    exact, ests = options.parse_estimators("chi2", ("reverse",), "exact", {"reverse": "score_sn"})
    assert exact and ests == ("snis2", "score_sn")
    assert options.check_num_samples(1, ("reinforce_loo",)) == 2  # raised to its minimum


def test_to_theta_matches_the_library_coordinates():
    qs = np.array([[0.3, -0.4], [-2.0, 0.7], [5.0, 1.2]])
    q = dj.Gaussian._make((qs[:, 0], qs[:, 1]))
    for name, param in dj.PARAMETERIZATIONS.items():
        np.testing.assert_allclose(
            to_theta(name, qs), np.asarray(param.from_gaussian(q)), rtol=1e-6
        )


def test_random_start_is_finite_in_both_chi_square_directions():
    """1-D: chi2(p||q) = inf iff s^2 <= max s_k^2 / 2; chi2(q||p) = inf iff s^2 >= 2 max s_k^2."""
    p = dj.default_target()
    rng = np.random.default_rng(0)
    top = float(np.max(np.asarray(p.scales))) ** 2
    for _ in range(5):
        _, log_scale = options.random_start(p, "chi2", rng)
        assert top / 2 < np.exp(2 * log_scale) < 2 * top


# --- compilation ---------------------------------------------------------------------------


def test_drags_sliders_and_switches_never_recompile(session):
    s = session
    w, m, sc = options.mixture_arrays(s.target)

    def round_of_changes(shift):
        s.set_target((w, m + shift, sc))
        s.advance(5)
        s.set_q(0.5 + shift, 1.3)  # both q's: one start
        s.set_q(-1.0, 0.7, "reverse")
        s.set_hyper(learning_rate=0.02 + shift, momentum=0.5, decay=0.01)
        s.set_clip(True, 2.0 + shift)
        s.set_flags(natural_gradient=True, optimizer="adam", fixed_scale=True)
        s.speed = 1000.0
        s.advance(7)
        s.set_flags(natural_gradient=False, optimizer="sgd", fixed_scale=False)
        s.set_clip(False)
        s.advance(3)

    round_of_changes(0.0)  # warm-up: eager helpers compile once
    with count_compiles() as n:
        round_of_changes(0.25)
    assert n == {"xla": 0, "programs": 0}
    s.set_target(dj.default_target())
    s.set_hyper(learning_rate=0.05, momentum=0.9, decay=0.0)
    s.reset()


def test_flags_change_the_update_without_recompiling(session):
    """Natural gradient, Adam and a fixed sigma act through traced switches."""
    s = session
    s.reset()
    s.advance(1)
    plain = s.q("reverse")
    s.reset()
    s.set_flags(fixed_scale=True)
    s.advance(3)
    assert float(s.q("reverse").log_scale) == pytest.approx(s.q0[1], abs=1e-6)
    assert float(s.q("reverse").loc) != pytest.approx(s.q0[0])
    s.set_flags(fixed_scale=False, natural_gradient=True)
    s.reset()
    s.advance(1)
    natural = s.q("reverse")
    assert float(natural.loc) != pytest.approx(float(plain.loc), abs=1e-4)
    s.set_flags(natural_gradient=False)
    s.reset()


def test_frames_of_any_size_give_the_same_monte_carlo_fit(session):
    s = session
    s.update(exact=False, estimators=("snis", "reparam"))
    s.reset()
    s.advance(12)
    once = [tuple(map(float, s.q(d))) for d in compute.DIRECTIONS]
    s.reset()
    for n in (5, 1, 6):
        s.advance(n)
    split = [tuple(map(float, s.q(d))) for d in compute.DIRECTIONS]
    assert once == split
    assert s.frame.aux.samples.shape == (2, 16)
    s.update(exact=True, estimators=options.default_estimators("kl"))
    s.reset()


# --- the status: divjax.fit.judge's rule ----------------------------------------------------


def test_status_follows_the_library_rule(session):
    s = session
    s.reset()
    assert s.describe("forward").startswith("started")
    s.advance(400)
    fwd = s.q("forward")
    match = dj.Gaussian.from_loc_variance(s.target.mean(), s.target.variance())
    optima = dj.Optima(jax.tree_util.tree_map(lambda a: np.atleast_1d(a), match), np.zeros(1))
    key = s.book.key(s, "forward")
    s.set_optima("forward", key, optima)
    s.advance(0)
    assert s.describe("forward") == "converged to the global optimum"
    assert float(fwd.loc) == pytest.approx(float(match.loc), abs=0.05)
    far = dj.Optima(dj.Gaussian(np.array([-9.0]), np.array([0.0])), np.zeros(1))
    s.set_optima("reverse", s.book.key(s, "reverse"), far)
    s.advance(0)
    assert s.describe("reverse") == "stuck (settled near no local minimum)"
    assert s.fit_status("reverse").optimum == dj.status.STUCK
    s.set_target(dj.GaussianMixture([0.3, 0.7], [-2.0, 3.5], [0.5, 1.0]))  # the optima go stale
    s.advance(0)
    assert s.current_optima("forward")[1] and "settled" in s.describe("forward")
    s.set_target(dj.default_target())
    s.reset()


def test_diverged_fit_says_why_and_is_forgiven_after_a_change(session):
    s = session
    s.reset()
    s.set_hyper(learning_rate=-0.5, momentum=0.0)  # gradient ascent: the seed post's running away
    for _ in range(30):
        s.advance(20)
        if s.fit_status("reverse").diverged:
            break
    assert s.describe("reverse").startswith("diverged at step")
    s.set_hyper(learning_rate=0.05, momentum=0.9)
    s.advance(0)
    assert not s.fit_status("reverse").diverged
    s.reset()


@pytest.mark.slow
def test_page_target_has_three_reverse_kl_optima(x64):
    p = dj.GaussianMixture(*options.preset("page")["target"])
    opt = dj.optimal_q("kl_reverse", p)
    assert opt.value.shape == (3,)
    third = opt.q.loc[2], opt.q.scale[2]
    np.testing.assert_allclose(third, (-1.10, 2.23), atol=0.01)
