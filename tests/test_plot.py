"""divjax.plot on the Agg backend: each figure has the artists, colours and labels it promises.

Optima, gradient statistics and sweep results are built by hand here (they are
tested in their own modules), so these tests exercise only the drawing.
"""

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import plot  # noqa: E402
from divjax.diagnostics import GradStats  # noqa: E402
from divjax.fit import FitStatus  # noqa: E402
from divjax.sweep import SweepConfig, SweepRun  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def p():
    return dj.default_target()


def fake_optima(locs, scales, values):
    q = dj.Gaussian(jnp.asarray(locs), jnp.log(jnp.asarray(scales)))
    return dj.Optima(q=q, value=jnp.asarray(values))


OPT_FWD = fake_optima([1.5], [2.45], [0.496])
OPT_REV = fake_optima([3.0, -2.0], [1.0, 0.5], [0.43, 2.33])


def fake_aux(samples, loc_contrib, scale_contrib):
    x = jnp.asarray(samples, jnp.float32)
    log_w = -0.5 * x**2
    w = jax.nn.softmax(log_w)
    return dj.SurrogateAux(
        samples=x,
        log_weights=log_w,
        weights=w,
        ess=1.0 / jnp.sum(w**2),
        ess_sq=1.0 / jnp.sum(jax.nn.softmax(2 * log_w) ** 2),
        contributions=dj.Gaussian._make((jnp.asarray(loc_contrib), jnp.asarray(scale_contrib))),
    )


def lines_by_label(ax):
    return {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }


def test_fit_panel_lines_colours_and_both_directions(p):
    q = dj.Gaussian(0.5, 0.2)
    fig = plot.fit_panel(p, q, "kl_reverse", optima=OPT_REV)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    assert set(lines) == {
        r"target $p(z)$",
        r"fitted $q_\phi$",
        r"optimal $q^*$ (global)",
        r"optimal $q^*$ (local)",
    }
    assert to_rgba(lines[r"fitted $q_\phi$"].get_color()) == to_rgba(plot.PURPLE)
    assert lines[r"optimal $q^*$ (global)"].get_linestyle() == "--"
    assert lines[r"optimal $q^*$ (local)"].get_linestyle() == ":"
    title = ax.get_title()
    assert plot.LABELS["kl_reverse"] in title and plot.LABELS["kl_forward"] in title
    assert "mode-seeking" in title
    # The fitted curve is the normalized density of q.
    x, y = lines[r"fitted $q_\phi$"].get_data()
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=2e-3)


def test_fit_panel_shows_infinite_values_and_draws_into_given_ax(p):
    fig, ax = plt.subplots()
    out = plot.fit_panel(p, dj.default_q0(), "chi2_forward", optima=OPT_FWD, ax=ax)
    assert out is fig
    assert plot.LABELS["chi2_reverse"] + r" = $\infty$" in ax.get_title()  # sigma^2 = 5 >= 2
    assert "mean-seeking" in ax.get_title()


@pytest.mark.parametrize("name, power", [("kl_forward", 1), ("chi2_forward", 2)])
def test_weights_panel_log_axis_samples_and_ess(p, name, power):
    q = dj.Gaussian(0.0, 0.5)
    aux = plot.sample_aux(
        p, q, name, dict(kl_forward="snis", chi2_forward="snis2")[name], 12, jax.random.key(1)
    )
    fig = plot.weights_panel(p, q, aux, name)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    ess = float(aux.ess_sq if power == 2 else aux.ess)
    assert f"{ess:.2f} / 12" in ax.get_title()
    assert ("w^2" in ax.get_ylabel()) == (power == 2)
    (points,) = [c for c in ax.collections if c.get_label() == "samples"]
    offsets = points.get_offsets()
    assert offsets.shape == (12, 2)
    np.testing.assert_allclose(offsets[:, 0], np.asarray(aux.samples), rtol=1e-6)
    lo, hi = ax.get_ylim()
    expected = np.clip(np.exp(power * np.asarray(aux.log_weights, np.float64)), lo, hi)
    np.testing.assert_allclose(offsets[:, 1], expected, rtol=1e-4)


def test_rug_colours_each_sample_by_the_sign_of_its_contribution():
    aux = fake_aux([-1.0, 0.0, 1.0, 2.0], [0.5, -0.2, 0.1, -3.0], [-1.0, -1.0, 2.0, 0.0])
    fig = plot.rug(aux)
    ax = fig.axes[0]
    colls = [c for c in ax.collections if isinstance(c, LineCollection)]
    blue = to_rgba(plot.POSITIVE)
    red = to_rgba(plot.NEGATIVE)
    pos = [c for c in colls if tuple(c.get_colors()[0]) == blue]
    neg = [c for c in colls if tuple(c.get_colors()[0]) == red]
    # loc row (y = 1): + at -1 and 1, - at 0 and 2; log_scale row (y = 0): + at 1, - at -1 and 0.
    seg_x = lambda cs, y: sorted(  # noqa: E731
        float(s[0, 0]) for c in cs for s in c.get_segments() if abs(s[:, 1].mean() - y) < 0.01
    )
    assert seg_x(pos, 1) == [-1.0, 1.0] and seg_x(neg, 1) == [0.0, 2.0]
    assert seg_x(pos, 0) == [1.0] and seg_x(neg, 0) == [-1.0, 0.0]
    labels = {c.get_label() for c in colls}
    assert {"positive contribution", "negative contribution"} <= labels
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        r"$\partial/\partial\mu$",
        r"$\partial/\partial\log\sigma$",
    ]


def test_fit_figure_stacks_three_panels_sharing_z(p):
    q = dj.Gaussian(1.0, 0.3)
    aux = plot.sample_aux(p, q, "kl_forward", "snis", 12, jax.random.key(2))
    fig = plot.fit_figure(p, q, "kl_forward", aux, optima=OPT_FWD)
    assert len(fig.axes) == 3
    assert len({ax.get_xlim() for ax in fig.axes}) == 1


def test_landscape_contours_infinite_region_optima_and_paths(p):
    path = dj.Gaussian(jnp.linspace(0.0, 3.0, 7)[None].repeat(2, 0), jnp.zeros((2, 7)))
    exact = dj.Gaussian(jnp.linspace(0.0, 3.0, 5), jnp.zeros(5))
    fig = plot.landscape(
        "chi2_reverse",
        p,
        trajectories={"exact": exact, "score_sn, K = 4": path},
        optima=OPT_REV,
        num=16,
    )
    ax = fig.axes[0]
    assert any(type(c).__name__ in ("QuadContourSet", "ContourSet") for c in ax.collections)
    hatched = [c for c in ax.collections if "//" in (getattr(c, "hatches", None) or [])]
    assert hatched, "the infinite region is hatched"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert plot.LABELS["chi2_reverse"] + r" = $\infty$" in legend
    assert {"global optimum", "local optimum", "exact", "score_sn, K = 4", "start", "end"} <= set(
        legend
    )
    lines = lines_by_label(ax)
    assert to_rgba(lines["exact"].get_color()) == to_rgba("k")
    assert (
        sum(
            1 for line in ax.get_lines() if line.get_color() == lines["score_sn, K = 4"].get_color()
        )
        >= 2
    )


def test_landscape_kl_has_no_infinite_region(p):
    fig = plot.landscape("kl_forward", p, optima=OPT_FWD, num=12)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert not any(r"\infty" in t for t in legend)
    assert "local optimum" not in legend


@np.errstate(divide="ignore")
def fake_grad_stats(ks, var_loc, infinite=False):
    ks = np.asarray(ks)
    n = ks.size
    g = lambda a: dj.Gaussian._make((np.asarray(a, np.float64), np.asarray(a, np.float64) * 2))  # noqa: E731
    var = g(var_loc)
    return GradStats(
        exact=g(np.ones(n)),
        scale=np.ones(n),
        mean=g(np.ones(n)),
        bias=g(np.zeros(n)),
        variance=g(np.full(n, np.inf)) if infinite else var,
        sample_variance=var,
        stderr=g(np.sqrt(var_loc) / 10),
        mse=g(np.full(n, np.inf)) if infinite else var,
        snr=g(np.zeros(n)) if infinite else g(1 / np.sqrt(var_loc)),
        snr_exact=g(1 / np.sqrt(var_loc)),
        cosine=np.ones(n),
        mean_ess=np.ones(n),
        mean_ess_sq=np.ones(n),
        infinite_variance=np.full(n, infinite),
        divergence_infinite=np.zeros(n, bool),
        num_samples=ks,
        num_draws=np.asarray(100),
    )


def test_estimator_comparison_log_log_panels_and_infinite_variance_label():
    ks = [1, 4, 16]
    stats = {
        ("kl_reverse", "reparam"): fake_grad_stats(ks, [4.0, 1.0, 0.25]),
        ("chi2_reverse", "score"): fake_grad_stats(ks, [10.0, 30.0, 90.0], infinite=True),
        ("kl_reverse", "exact"): fake_grad_stats(ks, [0.0, 0.0, 0.0]),
    }
    fig = plot.estimator_comparison(stats)
    axes = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert len(axes) == 6
    assert all(ax.get_yscale() == "log" for ax in axes)
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "kl_reverse / reparam" in legend_texts
    assert any(t.startswith("chi2_reverse / score (variance") for t in legend_texts)
    assert not any("exact" in t for t in legend_texts)
    var_ax = axes[0]
    solid = [line for line in var_ax.get_lines() if line.get_linestyle() == "-"]
    np.testing.assert_allclose(solid[0].get_ydata(), [4.0, 1.0, 0.25])
    dashed = [line for line in var_ax.get_lines() if line.get_linestyle() == "--"]
    np.testing.assert_allclose(dashed[0].get_ydata(), [10.0, 30.0, 90.0])  # sample variance


def fake_run(name, est, k, optimum, diverged_at, final_value):
    n = len(optimum)
    status = FitStatus(
        diverged_at=np.asarray(diverged_at),
        reason=np.zeros(n, np.int32),
        optimum=np.asarray(optimum),
        final_value=np.asarray(final_value, np.float32),
    )
    q = dj.Gaussian._make((np.zeros(n, np.float32), np.zeros(n, np.float32)))
    return SweepRun(SweepConfig(name, est, k, "sgd"), q, status)


def test_sweep_summary_outcome_fractions_per_k():
    runs = [
        fake_run("kl_forward", "exact", 0, [0, 0, 0, 0], [-1] * 4, [0.5] * 4),
        fake_run(
            "kl_forward", "snis", 4, [0, -1, -1, -2], [-1, -1, -1, 7], [0.5, 2.0, 3.0, np.inf]
        ),
        fake_run("kl_forward", "snis", 64, [0, 0, 0, 1], [-1] * 4, [0.5, 0.5, 0.51, 0.9]),
    ]
    fig = plot.sweep_summary(runs)
    top, bottom = [ax for ax in fig.axes if ax.get_visible()]
    assert "exact-gradient fit" in [t.get_text() for t in top.get_legend().get_texts()]
    heights = {}
    for patch in bottom.patches:
        color = patch.get_facecolor()
        x = round(patch.get_x() + patch.get_width() / 2)
        heights[(color, x)] = patch.get_height()
    c = {k: to_rgba(v) for k, v in plot.OUTCOME_COLORS.items()}
    assert heights[(c["global"], 0)] == pytest.approx(0.25)
    assert heights[(c["stuck"], 0)] == pytest.approx(0.5)
    assert heights[(c["diverged"], 0)] == pytest.approx(0.25)
    assert heights[(c["global"], 1)] == pytest.approx(0.75)
    assert heights[(c["local"], 1)] == pytest.approx(0.25)
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["4", "64"]
    assert "1 diverged/inf" in top.get_xticklabels()[0].get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == list(plot.OUTCOME_COLORS)


def test_fit_paths_matches_fit_and_reports_divergence(p, key):
    q0 = dj.default_q0()
    path, div = plot.fit_paths(
        p, q0, "kl_forward", learning_rate=[0.05, -0.02], momentum=[0.9, 0.0], num_steps=40, key=key
    )
    assert path.loc.shape == (2, 41)
    assert div[0] == -1 and div[1] >= 0  # a negative step size runs away, reported not raised
    ref = dj.fit(p, q0, "kl_forward", num_steps=40, optima=OPT_FWD, trace_value=False)
    np.testing.assert_allclose(path.loc[0, 1:], np.asarray(ref.trace.q.loc), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        path.log_scale[0, 1:], np.asarray(ref.trace.q.log_scale), rtol=1e-5, atol=1e-6
    )


def test_animate_fit_writes_a_small_gif(p, key, tmp_path):
    out = plot.animate_fit(
        tmp_path / "fit.gif",
        p,
        dj.default_q0(),
        "kl_forward",
        "snis",
        num_samples=4,
        num_frames=3,
        steps_per_frame=2,
        key=key,
        optima=OPT_FWD,
        dpi=40,
    )
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == 3


def test_demo_figures_writes_every_promised_file(p, key, tmp_path):
    q0 = dj.default_q0()
    runs = [
        fake_run("kl_forward", "exact", 0, [0, 0], [-1, -1], [0.5, 0.5]),
        fake_run("kl_forward", "snis", 4, [0, -1], [-1, -1], [0.5, 2.0]),
    ]
    stats = {("kl_forward", "snis"): fake_grad_stats([1, 4], [2.0, 0.5])}
    optima = {
        "kl_forward": OPT_FWD,
        "kl_reverse": OPT_REV,
        "chi2_forward": fake_optima([1.2], [2.6], [0.94]),
        "chi2_reverse": OPT_REV,
    }
    paths = plot.demo_figures(
        tmp_path / "demo",
        p,
        q0,
        runs,
        stats,
        key=key,
        optima=optima,
        num_steps=10,
        path_ks=(4,),
        num_frames=2,
    )
    names = sorted(path.name for path in paths)
    assert names == sorted(
        [
            "fit_panel.png",
            "weights.png",
            "rug.png",
            "landscape.png",
            "estimators.png",
            "sweep_summary.png",
            "fit.gif",
        ]
    )
    for path in paths:
        assert path.exists() and path.stat().st_size > 1000
        assert path.parent == tmp_path / "demo"


@pytest.mark.parametrize("coords", ["natural", "expectation", "mu_tau"])
def test_landscape_in_other_parameterizations(coords):
    p = dj.default_target()
    opt = dj.optimal_q("kl_forward", p)
    fig = plot.landscape("kl_forward", p, optima=opt, parameterization=coords, num=20)
    ax = fig.axes[0]
    star = [ln for ln in ax.lines if ln.get_label() == "global optimum"][0]
    theta = np.asarray(
        dj.get_parameterization(coords).from_gaussian(dj.Gaussian(opt.q.loc[0], opt.q.log_scale[0]))
    )
    np.testing.assert_allclose([star.get_xdata()[0], star.get_ydata()[0]], theta, rtol=1e-5)
    assert "$" in ax.get_xlabel() and "mu" not in ax.get_ylabel()
    plt.close(fig)
