"""The explorer's window, driven headless (Agg) through its own event handlers.

One explorer is shared by the module (compiling is what costs: the settings are
chosen so the programs are shared with `test_explorer_session`); every test
leaves it as it found it. Mouse events are synthetic `MouseEvent`'s at data
points, widget clicks land on the widgets' own artists.
"""

import math

import jax
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from matplotlib.backend_bases import KeyEvent, MouseEvent  # noqa: E402

import divjax as dj  # noqa: E402
from divjax.explorer import Explorer, compute, surface  # noqa: E402
from divjax.explorer.figure import settings_line  # noqa: E402
from divjax.explorer.landscape_panel import LandscapePanel  # noqa: E402
from divjax.explorer.options import mixture_arrays  # noqa: E402
from divjax.explorer.panels import NEGATIVE, POSITIVE, RugPanel  # noqa: E402
from divjax.paths import draw_aux  # noqa: E402
from tests.test_explorer_session import count_compiles  # noqa: E402

PX = 0.03  # more than one pixel of the fit panel's x-axis, in data units
# divjax.optimal_q("kl_reverse", page target), float32 (checked in the slow session test)
PAGE_REVERSE_OPTIMA = ([-2.9893217, 1.9939219, -1.0954113], [0.9167399, 0.70933855, 2.2291894])


@pytest.fixture(scope="module")
def ex():
    e = Explorer(threads=False, optima=False, running=False)
    e.fig.canvas.draw()
    yield e
    e.close()


def mouse(ex, name, xy, *, ax=None, button=1, key=None, dblclick=False):
    """A synthetic mouse event at data point ``xy`` of ``ax`` (default: the fit panel)."""
    ax = ex.figure.fit.ax if ax is None else ax
    x, y = ax.transData.transform(xy)
    MouseEvent(name, ex.fig.canvas, x, y, button=button, key=key, dblclick=dblclick)._process()


def drag(ex, start, end, *, steps=4, between=None, **kw):
    mouse(ex, "button_press_event", start, **kw)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        mouse(ex, "motion_notify_event", tuple(np.add(start, t * np.subtract(end, start))), **kw)
        if between is not None:
            between()
    mouse(ex, "button_release_event", end, **kw)


def click_at(ex, display_xy):
    for name in ("button_press_event", "button_release_event"):
        MouseEvent(name, ex.fig.canvas, *display_xy, button=1)._process()


def click_axes(ex, ax, fx=0.5, fy=0.5):
    """A click at axes fraction ``(fx, fy)`` (buttons, sliders)."""
    click_at(ex, ax.transAxes.transform((fx, fy)))


def click_label(ex, widget, label):
    """A click on a radio or check button's label ``label``."""
    (text,) = [t for t in widget.labels if t.get_text() == label]
    box = text.get_window_extent(ex.fig.canvas.get_renderer())
    click_at(ex, ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2))


def key(ex, name):
    KeyEvent("key_press_event", ex.fig.canvas, name)._process()


def test_main_view_fits_forward_and_reverse_from_one_start(ex):
    ex.reset()
    for _ in range(5):
        ex.frame(20)
    s, fit = ex.session, ex.figure.fit
    assert s.settings.directions == ("forward", "reverse")
    q_f, q_r = s.q("forward"), s.q("reverse")
    assert abs(float(q_f.loc) - float(q_r.loc)) > 0.1  # mean-seeking vs mode-seeking
    for d in ("forward", "reverse"):
        assert fit.lines_q[d].get_visible() and len(fit.lines_q[d].get_xdata()) == s.num_x
        path = ex.figure.landscape.paths[d].get_xydata()
        assert path.shape[0] > 5 and np.allclose(path[0], s.start)  # both start at the start
        assert ex.figure.text_status[d].get_text().startswith(("fwd", "rev"))
    assert (
        "KL(p||q) = " in fit.text_values.get_text() and "KL(q||p) = " in fit.text_values.get_text()
    )
    ex.draw()


def test_drag_mode_moves_target_and_never_recompiles(ex):
    ex.reset()
    w0, m0, s0 = mixture_arrays(ex.session.target)
    xs, ys = ex.figure.fit.modes.get_data()
    drag(ex, (xs[1], ys[1]), (xs[1] - 0.5, ys[1]))  # warm-up: eager helpers compile once
    ex.set_target((w0, m0, s0))
    start = (float(xs[1]), float(ys[1]))
    with count_compiles() as n:
        drag(ex, start, (start[0] - 1.5, start[1]), between=lambda: ex.frame(3))
        xs, ys = ex.figure.fit.modes.get_data()
        drag(ex, (xs[0], ys[0]), (xs[0], 2.0 * ys[0]))  # up: weight
        xs, ys = ex.figure.fit.modes.get_data()
        drag(ex, (xs[0], ys[0]), (xs[0] + 0.25, ys[0]), key="shift")  # shift: scale
    assert n["programs"] == 0
    w, m, s = mixture_arrays(ex.session.target)
    np.testing.assert_allclose(m, [m0[0], m0[1] - 1.5], atol=PX)
    assert w[0] / w[1] == pytest.approx(2.0 * w0[0] / w0[1], rel=0.05)
    np.testing.assert_allclose(s, [s0[0] + 0.25, s0[1]], atol=PX)
    assert ex.figure.landscape.data.values.shape == (40, 40)  # recomputed for the new target
    ex.set_target(dj.default_target())


def test_a_weight_dragged_past_the_top_of_the_panel_keeps_growing(ex):
    ex.reset()
    w0, _, _ = mixture_arrays(ex.session.target)
    xs, ys = ex.figure.fit.modes.get_data()
    top = ex.figure.fit.ax.get_ylim()[1]
    end = (xs[0], 1.5 * top)  # past the axes: matplotlib gives no data coordinates there
    drag(ex, (xs[0], ys[0]), end)
    w, _, _ = mixture_arrays(ex.session.target)
    factor = min(end[1] / ys[0], 50.0)
    assert w[0] / w[1] == pytest.approx(factor * w0[0] / w0[1], rel=0.05)
    ex.set_target(dj.default_target())


def test_drag_q_moves_its_mean_and_width(ex):
    ex.reset()
    q = ex.session.q("reverse")
    loc, scale = float(q.loc), float(q.scale)
    peak = 1.0 / (scale * math.sqrt(2 * math.pi))
    with count_compiles() as n:
        drag(ex, (loc, peak), (loc + 2.0, peak))
        drag(ex, (loc + 2.0 + scale, peak * math.exp(-0.5)), (loc + 2.5, peak))
    assert n["programs"] == 0
    q = ex.session.q("reverse")
    assert float(q.loc) == pytest.approx(loc + 2.0, abs=PX)
    assert float(q.scale) == pytest.approx(0.5, abs=PX)
    assert float(ex.session.q("forward").loc) == pytest.approx(loc, abs=1e-6)  # the other stays
    ex.reset()


def test_landscape_drag_moves_q_and_hover_shows_the_value(ex):
    ex.reset()
    land = ex.figure.landscape
    with count_compiles() as n:
        drag(ex, (1.0, 0.3), (2.0, 0.1), ax=land.ax)  # empty spot: both q's start there
    assert n["programs"] == 0
    for d in ("forward", "reverse"):
        q = ex.session.q(d)
        assert (float(q.loc), float(q.log_scale)) == pytest.approx((2.0, 0.1), abs=0.05)
    drag(ex, (2.0, 0.1), (-2.0, -0.6), ax=land.ax)  # on the heads: the top one (reverse) moves
    assert float(ex.session.q("reverse").loc) == pytest.approx(-2.0, abs=0.05)
    assert float(ex.session.q("forward").loc) == pytest.approx(2.0, abs=0.05)
    t1, t2 = land.data.theta1[10], land.data.theta2[12]  # a mesh point: the value itself
    mouse(ex, "button_press_event", (t1, t2), ax=land.ax)
    mouse(ex, "button_release_event", (t1, t2), ax=land.ax)
    mouse(ex, "motion_notify_event", (t1, t2), ax=land.ax)
    text = land.text_hover.get_text()
    assert text.startswith(f"(μ, log σ) = ({t1:.3g}, {t2:.3g})") and "KL(q||p) = " in text
    shown = float(text.split("= ")[-1])
    assert shown == pytest.approx(math.expm1(land.data.values[12, 10]), rel=1e-3)
    assert shown == pytest.approx(ex.session.value("reverse"), rel=0.02)  # q is there now
    mouse(ex, "motion_notify_event", (t1, t2), ax=ex.figure.fit.ax)  # off the landscape
    assert land.text_hover.get_text() == ""
    ex.reset()


def test_switches_and_sliders_act_without_recompiling(ex):
    w = ex.widgets
    ex.reset()
    with count_compiles() as n:
        click_label(ex, w.options, "natural gradient")
        click_label(ex, w.options, "clip")
        click_label(ex, w.optimizer, "Adam")
        click_axes(ex, w.lr.ax, 0.5)
        click_axes(ex, w.momentum.ax, 0.1)
        click_axes(ex, w.decay.ax, 0.5)
        click_axes(ex, w.clip_norm.ax, 0.25)
        click_label(ex, w.options, "fixed σ")
        ex.frame(10)
    assert n["programs"] == 0
    s = ex.session
    assert s.flags == {"natural_gradient": True, "fixed_scale": True, "optimizer": "adam"}
    assert s.clip and s.clip_value == pytest.approx(0.1 + 0.25 * 19.9, abs=0.1)
    assert s.hyper["learning_rate"] == pytest.approx(0.2, abs=0.01)
    assert s.hyper["decay"] == pytest.approx(0.005, abs=2e-4)
    assert float(s.q("forward").log_scale) == pytest.approx(s.q0[1], abs=1e-6)  # sigma held
    assert "natural gradient in (μ, log σ)" in settings_line(
        ex.session
    ) and "Adam" in settings_line(ex.session)
    for label in ("natural gradient", "clip", "fixed σ"):
        click_label(ex, w.options, label)
    click_label(ex, w.optimizer, "SGD")
    ex.set_hyper(learning_rate=0.05, momentum=0.9, decay=0.0)
    assert not any(w.options.get_status())
    ex.reset()


def test_speed_step_key_restart_and_run(ex):
    w, s = ex.widgets, ex.session
    click_axes(ex, w.speed.ax, 0.75)
    assert s.speed == pytest.approx(10**3, rel=0.05)
    assert w.speed.valtext.get_text().replace(",", "").isdigit()
    step = s.step("forward")
    key(ex, "right")
    assert s.step("forward") == step + 1
    start = s.start
    key(ex, "r")
    assert s.start != start and s.step("forward") == 0
    key(ex, " ")
    assert ex.running and w.run.label.get_text() == "pause"
    key(ex, " ")
    assert not ex.running
    key(ex, "z")
    assert s.start == pytest.approx(s.q0)
    ex.set_speed(200.0)


def test_direction_toggle_never_recompiles(ex):
    ex.reset()
    with count_compiles() as n:
        click_label(ex, ex.widgets.directions, "forward")
        ex.frame(5)
    assert n["programs"] == 0
    assert ex.session.settings.directions == ("reverse",)
    assert not ex.figure.fit.lines_q["forward"].get_visible()
    assert ex.session.step("forward") == 0 and ex.session.step("reverse") == 5
    click_label(ex, ex.widgets.directions, "reverse")  # the last one stays
    assert ex.session.settings.directions == ("reverse",)
    assert "at least one" in ex.figure.text_message.get_text()
    click_label(ex, ex.widgets.directions, "forward")
    assert ex.session.settings.directions == ("forward", "reverse")
    ex.reset()


def test_monte_carlo_and_its_estimators(ex):
    with ex.batch():  # one compilation for both clicks
        click_label(ex, ex.widgets.gradient, "Monte Carlo")
        click_label(ex, ex.widgets.estimators["reverse"], "reparam")
        assert ex.wanted("estimators") == ("snis", "reparam") and ex.session.settings.exact
    s = ex.session
    assert not s.settings.exact and s.settings.estimators == ("snis", "reparam")
    ex.frame(5)
    assert s.frame.aux.samples.shape == (2, 16)
    assert "snis, K = 16" in ex.figure.weights.text_ess.get_text()
    with ex.batch():
        click_label(ex, ex.widgets.gradient, "exact")
        click_label(ex, ex.widgets.estimators["reverse"], "reinforce")
        click_label(ex, ex.widgets.gradient, "exact")
    assert s.settings.exact and s.settings.estimators == ("snis", "reinforce")


def test_coordinates_and_any_k(ex):
    """The coordinates radio and K (slider, -/+), then the page preset (same programs)."""
    w = ex.widgets
    with ex.batch():
        click_label(ex, w.coordinates, "(μ, σ)")
        click_axes(ex, w.k.ax, 6.0 / 9.0)  # log2 K = 6
        for _ in range(10):
            k = ex.wanted("num_samples")
            if k == 64:
                break
            click_axes(ex, (w.k_plus if k < 64 else w.k_minus).ax)
        click_axes(ex, w.k_plus.ax)
        assert ex.wanted("num_samples") == 65 and w.k.valtext.get_text() == "65"
        click_axes(ex, w.k_minus.ax)
    s = ex.session
    assert s.settings.parameterization == "mu_sigma" and s.settings.num_samples == 64
    ex.frame(3)
    assert s.frame.aux.contributions.shape == (2, 64, 2)
    land = ex.figure.landscape
    assert land.data.parameterization == "mu_sigma" and land.ax.get_ylabel() == r"$\sigma$"
    labels = [t.get_text() for t in ex.figure.rug.ax.get_yticklabels()]
    assert any(r"\sigma" in t and "log" not in t for t in labels)
    head = land.heads["reverse"].get_xydata()[0]
    q = ex.session.q("reverse")
    assert head == pytest.approx((float(q.loc), float(q.scale)), abs=1e-5)


def test_page_preset_shows_every_reverse_kl_optimum(ex):
    page = Explorer(preset="page", threads=False, optima=False, running=False)
    try:
        s = page.session
        assert s.settings.num_samples == 64 and s.settings.parameterization == "mu_sigma"
        assert s.flags["natural_gradient"] and s.clip and s.clip_value == 5.0
        assert s.hyper == {"learning_rate": 0.08, "momentum": 0.0, "decay": 0.001}
        assert s.q0 != pytest.approx((0.0, 0.5 * math.log(5.0)))  # a random start
        locs, scales = PAGE_REVERSE_OPTIMA
        q = dj.Gaussian._make((np.array(locs, np.float32), np.log(np.array(scales, np.float32))))
        optima = dj.Optima(q, np.zeros(3, np.float32))
        s.set_optima("reverse", s.book.key(s, "reverse"), optima)
        page.background.poll()
        page.figure.landscape.mark_optima(s, "reverse")
        page.frame(0)
        markers = page.figure.landscape._markers
        marked = np.concatenate([m.get_xydata() for m in markers if m.get_mfc() != "none"])
        assert marked.shape == (3, 2)
        np.testing.assert_allclose(marked[:, 1], scales, rtol=1e-5)  # (mu, sigma) coordinates
        curves = [ln for ln in page.figure.fit.optima["reverse"] if ln.get_visible()]
        assert len(curves) == 3 and curves[0].get_linestyle() == "--"
        line = settings_line(page.session)
        assert "clip 5" in line and "natural gradient in (μ, σ)" in line and "/(1+0.001t)" in line
    finally:
        page.close()


def test_rug_shows_signed_contributions():
    """Reverse chi-square, score estimator: each sample's share of d/dmu has its own sign."""
    import matplotlib.pyplot as plt

    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.5, 0.8)
    aux = draw_aux(p, q, "chi2_reverse", "score", 64, jax.random.key(4))
    c = np.stack([np.asarray(aux.contributions.loc), np.asarray(aux.contributions.log_scale)], -1)
    both = aux._replace(  # (forward, reverse) rows; only the reverse one is shown
        samples=np.stack([np.asarray(aux.samples)] * 2), contributions=np.stack([c, c])
    )
    frame = compute.Frame(*([None] * 14))._replace(aux=both)
    settings = compute.Settings(kind="chi2", directions=("reverse",), estimators=("snis2", "score"))
    session = type("S", (), {"frame": frame, "settings": settings})()
    fig, ax = plt.subplots()
    rug = RugPanel(ax)
    rug.label(session)
    rug.update(session)
    colors = [matplotlib.colors.to_hex(c) for c in rug.lines.get_colors()]
    top = colors[:64]  # the d/dmu row
    assert top.count(POSITIVE.lower()) == int((c[:, 0] > 0).sum()) == 33
    assert top.count(NEGATIVE.lower()) == int((c[:, 0] < 0).sum()) == 31
    plt.close(fig)


def test_infinite_region_is_hatched():
    import matplotlib.pyplot as plt

    p = dj.default_target()
    data = surface.landscape_data("chi2_reverse", p, "mu_log_sigma", (-4.0, 6.0), (-1.5, 1.5), 40)
    assert data.infinite.any() and np.isinf(data.values[data.infinite]).all()
    fig, (ax, cax) = plt.subplots(1, 2)
    panel = LandscapePanel(ax, cax)
    session = type("S", (), {"settings": compute.Settings(kind="chi2")})()
    session.current_optima = lambda d: (None, True)
    panel.set_data(data, session, "reverse")
    hatched = [c for c in panel._static if "//" in (getattr(c, "hatches", None) or [])]
    assert hatched
    assert surface.value_at(data, (0.0, 1.4)) == math.inf  # sigma^2 >= 2 max s_k^2
    plt.close(fig)
