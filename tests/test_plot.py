"""divjax.plot on the Agg backend, on small real results from divjax.

Every result is computed once per module (tiny sizes, so the compiled programs
are shared); the tests check what each picture promises.
"""

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import landscape as dj_landscape  # noqa: E402
from divjax import (
    paths,  # noqa: E402
    plot,  # noqa: E402
)
from divjax.status import OUTCOMES, outcome_masks  # noqa: E402

K = 12


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def p():
    return dj.default_target()


@pytest.fixture(scope="module")
def q0():
    return dj.default_q0()


@pytest.fixture(scope="module")
def opt_fwd(p):
    """The forward KL's optimum, moment matching (its closed form)."""
    q = dj.Gaussian._make(
        (jnp.reshape(p.mean(), (1,)), 0.5 * jnp.log(jnp.reshape(p.variance(), (1,))))
    )
    return dj.Optima(q=q, value=jnp.asarray([0.4964]))


@pytest.fixture(scope="module")
def opt_two():
    """Two minima (the reverse divergences' two modes): a global and a local one."""
    q = dj.Gaussian._make((jnp.asarray([3.0, -2.0]), jnp.log(jnp.asarray([1.0, 0.5]))))
    return dj.Optima(q=q, value=jnp.asarray([0.36, 1.2]))


@pytest.fixture(scope="module")
def path(p, q0):
    """Two seeds of a short snis fit: leaves (2, 13)."""
    out, _ = paths.fit_paths(
        p, q0, "kl_forward", "snis", num_samples=4, num_seeds=2, num_steps=12, key=jax.random.key(1)
    )
    return out


@pytest.fixture(scope="module")
def frames(p, path):
    steps = np.arange(0, 13, 3)
    q = dj.Gaussian._make((jnp.asarray(path.loc[0, steps]), jnp.asarray(path.log_scale[0, steps])))
    aux = paths.draw_aux(p, q, "kl_forward", "snis", K, jax.random.key(2))
    return plot.Frames("kl_forward", "snis", steps, q, aux)


@pytest.fixture(scope="module")
def q_fit(frames):
    return dj.Gaussian(float(frames.q.loc[-1]), float(frames.q.log_scale[-1]))


@pytest.fixture(scope="module")
def aux(frames):
    """One draw of K samples (snis) at the last frame's q."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[-1], frames.aux)


@pytest.fixture(scope="module")
def stats(p, q0):
    return dj.grad_stats("kl_forward", "snis", p, q0, (2, 4), 8, jax.random.key(3))


@pytest.fixture(scope="module")
def runs(p, q0, opt_fwd):
    """A real sweep (snis at K = 2 and 4, four seeds) and an exact-gradient run."""
    res = dj.sweep(
        p, q0, [("kl_forward", "snis")], num_samples=(2, 4), num_seeds=4, num_steps=20,
        key=jax.random.key(4), optima={"kl_forward": opt_fwd}, progress=False,
    )  # fmt: skip
    mc = res.runs[0]
    exact_status = mc.status._replace(final_value=np.full(4, 0.52, np.float32))
    exact = mc._replace(config=mc.config._replace(estimator="exact", num_samples=0))
    return res.runs + (exact._replace(status=exact_status),)


@pytest.fixture(scope="module")
def surface(p):
    return dj_landscape.surface("chi2_reverse", p, (-4.0, 5.0), (-1.5, 1.5), num=16)


def lines_by_label(ax):
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


# --- panels ---------------------------------------------------------------------------


def test_fit_panel_curves_styles_and_both_directions(p, q_fit, opt_two):
    fig = plot.fit_panel(p, q_fit, "kl_reverse", optima=opt_two)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    assert to_rgba(lines[r"fitted $q_\phi$"].get_color()) == to_rgba(plot.PURPLE)
    assert lines[r"optimal $q^*$ (global)"].get_linestyle() == "--"
    assert lines[r"optimal $q^*$ (local)"].get_linestyle() == ":"
    title = ax.get_title()
    assert plot.LABELS["kl_reverse"] + " = " in title and plot.LABELS["kl_forward"] + " = " in title
    assert "mode-seeking" in title
    x, y = lines[r"target $p(z)$"].get_data()
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=2e-3)


def test_fit_panel_infinite_and_beyond_the_float_range(p, q0):
    ax = plt.figure().subplots()
    assert plot.fit_panel(p, q0, "chi2_forward", ax=ax) is ax.figure
    assert plot.LABELS["chi2_reverse"] + r" = $\infty$" in ax.get_title()  # sigma^2 = 5 >= 2
    assert "mean-seeking" in ax.get_title()
    near = dj.Gaussian(0.0, 0.5 * np.log(1.999))  # chi2(q || p) finite, but past float32's max
    title = plot.fit_panel(p, near, "chi2_reverse").axes[0].get_title()
    assert r"$\approx 10^{" in title and "beyond float32 range" in title


def test_fit_panel_of_a_log_density_is_normalized_on_the_grid(q_fit):
    ax = plot.fit_panel(lambda z: -0.5 * (z - 1.0) ** 2, q_fit, "kl_reverse").axes[0]
    x, y = lines_by_label(ax)[r"target $p(z)$"].get_data()
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=1e-6)
    assert "no exact divergence" in ax.get_title()


@pytest.mark.parametrize("name, power", [("kl_forward", 1), ("chi2_forward", 2)])
def test_weights_panel_log_axis_samples_and_ess(p, q_fit, aux, name, power):
    ax = plot.weights_panel(p, q_fit, aux, name).axes[0]
    assert ax.get_yscale() == "log"
    ess = float(aux.ess_sq if power == 2 else aux.ess)
    assert f"K = {K}" in ax.get_title() and f"{ess:.2f} / {K}" in ax.get_title()
    assert ("w^2" in ax.get_ylabel()) == (power == 2)
    dots, above, below = ax.collections[1:4]
    assert len(dots.get_offsets()) + len(above.get_offsets()) + len(below.get_offsets()) == K
    shown = np.isin(np.asarray(aux.samples), dots.get_offsets()[:, 0])
    np.testing.assert_allclose(
        np.log(dots.get_offsets()[:, 1]), power * np.asarray(aux.log_weights)[shown], rtol=1e-4
    )


def test_weights_panel_marks_samples_beyond_the_axis(p, q_fit, aux):
    log_w = np.asarray(aux.log_weights, np.float64)
    ax = plot.weights_panel(p, q_fit, aux, ylim=(np.exp(np.median(log_w)), 1e9)).axes[0]
    below = ax.collections[3].get_offsets()
    assert len(below) == np.sum(log_w < np.median(log_w)) > 0
    np.testing.assert_allclose(below[:, 1], np.exp(np.median(log_w)), rtol=1e-6)


def test_rug_colour_counts_match_the_signs_of_the_contributions(aux):
    ax = plot.rug(aux).axes[0]
    rows = ax.collections[:2]
    for coll, field in zip(rows, ("loc", "log_scale")):
        c = np.asarray(getattr(aux.contributions, field))
        colors = [tuple(col) for col in coll.get_colors()]
        assert len(coll.get_segments()) == K
        assert colors.count(to_rgba(plot.POSITIVE)) == np.sum(c > 0)
        assert colors.count(to_rgba(plot.NEGATIVE)) == np.sum(c < 0)
    assert f"K = {K}" in ax.get_title()


def test_rug_colours_each_sample_by_the_sign_of_its_own_contribution(aux):
    c = dj.Gaussian._make((np.linspace(-1, 1, K), -np.linspace(-1, 1, K)))
    ax = plot.rug(aux._replace(contributions=c)).axes[0]
    loc_row = ax.collections[0]
    xs = np.asarray(aux.samples)
    for seg, col, sign in zip(loc_row.get_segments(), loc_row.get_colors(), np.sign(c.loc)):
        want = {1: plot.POSITIVE, -1: plot.NEGATIVE}.get(sign, "0.6")
        assert tuple(col) == to_rgba(want)
        assert seg[0, 0] in xs


def test_fit_figure_stacks_three_panels_sharing_z(p, q_fit, aux, opt_fwd):
    fig = plot.fit_figure(p, q_fit, "kl_forward", aux, optima=opt_fwd)
    assert len(fig.axes) == 3
    assert len({ax.get_xlim() for ax in fig.axes}) == 1


# --- 2-D panels ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def p2():
    return dj.GaussianMixture([0.5, 0.5], [[-1.5, 0.0], [1.5, 0.5]], [[0.6, 0.8], [0.7, 0.5]])


def banana(z):
    return -0.5 * (z[0] ** 2 / 4 + (z[1] - 0.3 * z[0] ** 2) ** 2)


def test_fit_panel2d_contours_samples_by_weight_and_optima(p2):
    q = dj.DiagGaussian(jnp.asarray([0.3, 0.2]), jnp.asarray([0.2, 0.0]))
    aux = paths.draw_aux(p2, q, "kl_forward", "snis", 8, jax.random.key(5))
    opt = dj.Optima(
        q=dj.DiagGaussian._make((jnp.asarray([[0.0, 0.25], [-1.4, 0.0]]), jnp.zeros((2, 2)))),
        value=jnp.asarray([0.4, 0.6]),
    )
    fig = plot.fit_panel2d(p2, q, aux=aux, optima=opt)
    ax = fig.axes[0]
    samples = ax.collections[-1]
    np.testing.assert_allclose(samples.get_offsets(), np.asarray(aux.samples), rtol=1e-6)
    sizes, w = samples.get_sizes(), np.asarray(aux.weights)
    assert np.argmax(sizes) == np.argmax(w) and np.argmin(sizes) == np.argmin(w)
    ellipses = [pt for pt in ax.patches if type(pt).__name__ == "Ellipse"]
    assert [e.get_linestyle() for e in ellipses] == ["--", ":"]
    assert f"ESS = {float(aux.ess):.2f} / 8" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert r"optimal $q^*$ (local)" in labels and "samples" in labels


def test_fit_panel2d_of_a_callable_target_and_a_mixture_q():
    q = dj.MixtureGaussian(jnp.zeros(2), jnp.asarray([[-1.0, 0.0], [1.0, 0.5]]), jnp.zeros((2, 2)))
    ax = plot.fit_panel2d(banana, q, "kl_reverse", num=40).axes[0]
    assert "no exact divergence" in ax.get_title() and "mode-seeking" in ax.get_title()
    assert ax.get_aspect() == 1.0
    contours = [c for c in ax.collections if getattr(c, "levels", None) is not None]
    assert len(contours) == 4  # p: two filled bands and its lines; q: lines
    assert len(contours[-1].levels) == len(plot.panels2d.MASSES)


def test_the_1d_panels_point_2d_users_to_fit_panel2d(p2):
    q = dj.DiagGaussian(jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match="fit_panel2d"):
        plot.fit_panel(p2, q)
    with pytest.raises(ValueError, match="fit_panel2d"):
        plot.rug(dj.SurrogateAux(np.zeros((4, 2)), *([np.zeros(4)] * 2), 1.0, 1.0, q))


def test_ellipse_has_the_covariances_axes():
    e = plot.ellipse([1.0, 2.0], np.diag([4.0, 1.0]), num_sds=1.0)
    assert e.center == (1.0, 2.0) and (e.width, e.height) == pytest.approx((4.0, 2.0))


# --- landscape -------------------------------------------------------------------------


def test_landscape_contours_infinite_region_optima_and_paths(surface, opt_two, path):
    exact = dj.Gaussian._make((path.loc[:1], path.log_scale[:1]))
    trajectories = {"exact": exact, "snis, K = 4": path}
    ax = plot.landscape(surface, optima=opt_two, trajectories=trajectories).axes[0]
    assert any(getattr(c, "levels", None) is not None for c in ax.collections)
    assert any("//" in (getattr(c, "hatches", None) or []) for c in ax.collections)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert plot.LABELS["chi2_reverse"] + r" = $\infty$" in legend
    assert {"global optimum", "local optimum", "start", "end"} <= set(legend)
    lines = lines_by_label(ax)
    assert to_rgba(lines["exact"].get_color()) == to_rgba("k")
    assert to_rgba(lines["snis, K = 4"].get_color()) != to_rgba("k")
    assert ax.get_xlim() == pytest.approx((-4.0, 5.0)) and ax.get_ylim() == pytest.approx(
        (-1.5, 1.5)
    )


def test_landscape_counts_paths_leaving_the_window(surface, path):
    far = path._replace(loc=np.asarray(path.loc) + np.asarray([[0.0], [50.0]]))
    ax = plot.landscape(surface, trajectories={"mc": far}).axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "mc (1/2 leave the window)" in legend


@pytest.mark.parametrize("param", ["natural", "expectation"])
def test_landscape_in_other_coordinates(surface, opt_two, param):
    ax = plot.landscape(surface, optima=opt_two, parameterization=param).axes[0]
    assert ax.get_xlabel() == plot.landscape.__globals__["COORD_LABELS"][param][0]
    theta = np.asarray(dj.get_parameterization(param).from_gaussian(dj.Gaussian(3.0, 0.0)))
    star = lines_by_label(ax)["global optimum"].get_xydata()[0]
    np.testing.assert_allclose(star, theta, rtol=1e-5)


def test_landscape_without_an_infinite_region(surface):
    finite = surface._replace(
        values=np.nan_to_num(surface.values, posinf=10.0), infinite=np.zeros_like(surface.infinite)
    )
    legend = [t.get_text() for t in plot.landscape(finite).axes[0].get_legend().get_texts()]
    assert not any(r"\infty" in t for t in legend)


# --- summaries ---------------------------------------------------------------------------


def main_estimators():
    return [(n, e) for n in dj.DIVERGENCES for e in dj.ESTIMATORS[n] if e != "exact"]


def test_estimator_styles_are_distinct_and_follow_the_registry():
    styles = plot.estimator_styles()
    assert list(styles) == [k for k in dj.REGISTRY if k[1] != "exact"]
    looks = [(s["color"], str(s["ls"]), s["marker"]) for s in styles.values()]
    assert len(set(looks)) == len(looks)
    main = plot.estimator_styles(main_estimators())
    assert len({s["color"] for s in main.values()}) == len(main) == 16  # one colour each


def test_estimator_comparison_one_distinct_line_per_estimator(stats):
    by = {key: stats for key in main_estimators()}
    by[("kl_forward", "exact")] = stats
    fig = plot.estimator_comparison(by)
    axes = fig.axes
    assert len(axes) == 6 and all(ax.get_yscale() == "log" for ax in axes)
    data_lines = [ln for ln in axes[0].get_lines() if ln.get_gid() != "rate"]
    assert len(data_lines) == 16
    assert len({to_rgba(ln.get_color()) for ln in data_lines}) == 16
    assert len({(to_rgba(ln.get_color()), ln.get_linestyle()) for ln in data_lines}) == 16
    np.testing.assert_allclose(data_lines[0].get_ydata(), np.asarray(stats.variance.loc))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(legend) == 17 and not any("exact" in t for t in legend)


def test_estimator_comparison_infinite_variance_and_no_exact_gradient(stats):
    inf = stats._replace(infinite_variance=np.ones(2, bool))
    no_exact = stats._replace(
        mse=jax.tree_util.tree_map(lambda a: np.full_like(a, np.nan), stats.mse)
    )
    fig = plot.estimator_comparison(
        {("kl_forward", "snis"): inf, ("kl_reverse", "reparam"): no_exact}
    )
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("variance $\\infty$" in t for t in legend)
    hollow = [ln for ln in fig.axes[0].get_lines() if ln.get_markerfacecolor() == "none"]
    assert len(hollow) == 1


def outcome_heights(ax):
    """``{colour: heights}`` of the stacked bars, in x order."""
    out = {}
    for bar in sorted(ax.patches, key=lambda b: b.get_x()):
        out.setdefault(to_rgba(bar.get_facecolor()), []).append(bar.get_height())
    return out


def test_sweep_summary_outcome_bars_use_the_outcome_masks(runs, opt_fwd):
    fig = plot.sweep_summary(runs, optima={"kl_forward": opt_fwd})
    top, bottom = fig.axes[0], fig.axes[1]
    mc = [r for r in runs if r.config.estimator != "exact"]
    heights = outcome_heights(bottom)
    for outcome in OUTCOMES:
        want = [np.mean(outcome_masks(r.status)[outcome]) for r in mc]
        np.testing.assert_allclose(heights[to_rgba(plot.OUTCOME_COLORS[outcome])], want)
    assert [t.get_text() for t in top.get_xticklabels()] == ["2", "4"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[: len(OUTCOMES)] == [plot.style.OUTCOME_LABELS[o] for o in OUTCOMES]
    assert "exact-gradient fit" in legend


def with_values(run, values, diverged=None):
    status = run.status._replace(final_value=np.asarray(values, np.float32))
    if diverged is not None:
        status = status._replace(diverged_at=np.asarray(diverged))
    return run._replace(status=status)


def texts_overlap(fig) -> bool:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        texts = [t for t in ax.texts + ax.get_xticklabels() if t.get_text() and t.get_visible()]
        boxes = [t.get_window_extent(renderer) for t in texts]
        for i, a in enumerate(boxes):
            if any(a.overlaps(b) for b in boxes[i + 1 :]):
                return True
    return False


def test_sweep_summary_clips_outliers_counts_them_and_never_stretches(runs):
    mc = [r for r in runs if r.config.estimator != "exact"]
    a = with_values(mc[0], [0.9, 1.0, 1.1, np.finfo(np.float32).max])
    b = with_values(mc[1], [0.95, 1.05, np.inf, 1.0])
    fig = plot.sweep_summary([a, b])
    top = fig.axes[0]
    assert top.get_ylim()[1] < 2.0
    texts = [t.get_text() for t in top.texts]
    assert "▲1" in texts and "∞1" in texts
    assert not texts_overlap(fig)


def test_sweep_summary_says_when_every_fit_diverged(runs):
    mc = [r for r in runs if r.config.estimator != "exact"]
    dead = [with_values(r, np.full(4, np.nan), np.zeros(4, int)) for r in mc]
    fig = plot.sweep_summary(dead)
    assert "every fit diverged" in [t.get_text() for t in fig.axes[0].texts]
    heights = outcome_heights(fig.axes[1])
    assert heights[to_rgba(plot.OUTCOME_COLORS["diverged"])] == [1.0, 1.0]


def test_sweep_summary_shares_one_range_per_divergence(runs):
    mc = [r for r in runs if r.config.estimator != "exact"]
    other = [r._replace(config=r.config._replace(estimator="msc")) for r in mc]
    fig = plot.sweep_summary(mc + [with_values(r, [2.0, 2.1, 2.2, 2.3]) for r in other])
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()  # the two top panels


# --- animation and the demo's figures -----------------------------------------------------


def test_animate_fit_writes_one_frame_per_step(p, frames, opt_fwd, tmp_path):
    out = plot.animate_fit(tmp_path / "fit.gif", p, frames, optima=opt_fwd)
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == len(frames.steps)
    assert plt.get_fignums() == []


def test_demo_figures_write_every_file_with_the_k_asked_for(
    p, q0, q_fit, aux, frames, stats, runs, surface, path, opt_fwd, tmp_path
):
    names = ("kl_forward", "chi2_reverse")
    data = plot.DemoData(
        target=p, q0=q0, optima={"kl_forward": opt_fwd}, runs=tuple(runs),
        grad_stats={("kl_forward", "snis"): stats}, fitted={n: q_fit for n in names},
        notes={n: "exact gradient: converged" for n in names},
        estimators={"kl_forward": "snis", "chi2_reverse": "score_sn"},
        surfaces={"chi2_reverse": surface}, trajectories={"chi2_reverse": {"snis": path}},
        auxes={n: aux for n in names}, frames=frames,
    )  # fmt: skip
    before = plt.get_fignums()
    written = plot.demo_figures(tmp_path, data, dpi=40)
    names_out = [w.name for w in written]
    assert names_out == [
        "fit_panel.png", "weights.png", "rug.png", "landscape.png", "estimators.png",
        "sweep_summary.png", "fit.gif",
    ]  # fmt: skip
    assert all(w.stat().st_size > 0 for w in written)
    assert plt.get_fignums() == before


def test_demo_figure_weights_and_rug_use_the_draws_k(p, q_fit, aux):
    data = plot.DemoData(
        target=p, q0=q_fit, optima={}, runs=(), grad_stats={}, fitted={"kl_forward": q_fit},
        notes={}, estimators={"kl_forward": "snis"}, surfaces={}, trajectories={},
        auxes={"kl_forward": aux},
    )  # fmt: skip
    fig = plot.figures.weight_panels(data)
    assert f"K = {K}:" in fig.axes[0].get_title()
    fig = plot.figures.rug_panels(data)
    assert f"K = {K} samples" in fig.axes[0].get_title()
    assert len(fig.axes[0].collections[0].get_segments()) == K


def test_importing_divjax_does_not_import_matplotlib():
    code = "import sys, divjax; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
