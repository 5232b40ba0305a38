"""The interactive explorer, driven headless (Agg, synthetic mouse events) and in a real window."""

import contextlib
import math
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from matplotlib.backend_bases import MouseEvent  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import explorer  # noqa: E402
from divjax.estimators import ESTIMATORS  # noqa: E402

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PX = 0.03  # more than one pixel of the fit panel's x-axis, in data units (~0.02)


@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations (of anything) inside the block; also `advance`'s cache size."""
    n = {"xla": 0}

    def listener(event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            n["xla"] += 1

    cache0 = explorer.advance._cache_size()
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield n
    finally:
        jax._src.monitoring.unregister_event_duration_listener(listener)
        n["advance"] = explorer.advance._cache_size() - cache0


def mouse(ex, name, xy, *, button=1, key=None, dblclick=False, ax=None):
    """Dispatches a synthetic mouse event at data point ``xy`` of ``ax`` (the fit panel).

    Mouse events carry whole pixels, so positions come back to within a pixel (`PX`).
    """
    ax = ex.ax_fit if ax is None else ax
    x, y = ax.transData.transform(xy)
    MouseEvent(name, ex.fig.canvas, x, y, button=button, key=key, dblclick=dblclick)._process()


def drag(ex, start, end, *, steps=4, between=None, **kw):
    """Press at ``start``, move to ``end`` in ``steps`` motions, release (data coordinates)."""
    mouse(ex, "button_press_event", start, **kw)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        mouse(ex, "motion_notify_event", tuple(np.add(start, t * np.subtract(end, start))), **kw)
        if between is not None:
            between()
    mouse(ex, "button_release_event", end, **kw)


def click_button(ex, button):
    x, y = button.ax.transAxes.transform((0.5, 0.5))
    for name in ("button_press_event", "button_release_event"):
        MouseEvent(name, ex.fig.canvas, x, y, button=1)._process()


@pytest.fixture
def ex():
    e = explorer.Explorer(optima=None, running=False)
    e.fig.canvas.draw()
    yield e
    e.close()


def _mode_handle(ex, k):
    xs, ys = ex.handles_p.get_data()
    return float(xs[k]), float(ys[k])


def test_drag_mode_moves_target_and_never_recompiles(ex):
    ex.frame()
    w0, m0, s0 = (np.asarray(a, np.float64) for a in ex.target)
    q0 = ex.q
    start = _mode_handle(ex, 1)
    ex.running = True  # the fit keeps stepping while the mode is dragged
    with count_compiles() as n:
        drag(ex, start, (start[0] - 1.5, start[1]), between=ex.frame)
        ex.frame()
        ex.draw()
    assert n == {"xla": 0, "advance": 0}
    w, m, s = (np.asarray(a, np.float64) for a in ex.target)
    np.testing.assert_allclose(m, [m0[0], m0[1] - 1.5], atol=PX)
    np.testing.assert_allclose(w, w0, rtol=1e-6)
    np.testing.assert_allclose(s, s0, rtol=1e-6)
    assert ex.q.loc != q0.loc  # the fit moved meanwhile
    # Up-down changes the weight (the peak's height ratio); shift-drag the scale.
    start = _mode_handle(ex, 0)
    with count_compiles() as n:
        drag(ex, start, (start[0], 2.0 * start[1]))
        start = _mode_handle(ex, 0)
        drag(ex, start, (start[0] + 0.25, start[1]), key="shift")
    assert n == {"xla": 0, "advance": 0}
    w, m, s = (np.asarray(a, np.float64) for a in ex.target)
    np.testing.assert_allclose(w[0], 2.0 * w0[0], rtol=0.02)
    np.testing.assert_allclose(s, [s0[0] + 0.25, s0[1]], atol=PX)
    np.testing.assert_allclose(m[0], m0[0], atol=PX)


def test_drag_q_moves_mean_and_width_and_holds_it(ex):
    ex.running = True
    ex.frame()
    loc, scale = float(ex.q.loc), float(ex.q.scale)
    peak = 1.0 / (scale * math.sqrt(2 * math.pi))
    with count_compiles() as n:
        mouse(ex, "button_press_event", (loc, peak))
        mouse(ex, "motion_notify_event", (loc + 2.0, peak))
        ex.frame()  # a frame while q is held: no steps
        assert float(ex.q.loc) == pytest.approx(loc + 2.0, abs=PX)
        mouse(ex, "button_release_event", (loc + 2.0, peak))
        # The width handle sits at loc + scale.
        drag(ex, (loc + 2.0 + scale, peak * math.exp(-0.5)), (loc + 2.0 + 0.5, peak))
    assert n == {"xla": 0, "advance": 0}
    assert float(ex.q.loc) == pytest.approx(loc + 2.0, abs=PX)
    assert float(ex.q.scale) == pytest.approx(0.5, abs=PX)
    assert int(ex.state.diverged_at) == -1
    step = int(ex.state.step)
    ex.frame()
    assert int(ex.state.step) == step + ex.steps_per_frame


def test_double_click_adds_and_removes_a_mode(ex):
    assert ex.target.num_components == 2
    mouse(ex, "button_press_event", (0.5, 0.01), dblclick=True)
    assert ex.target.num_components == 3
    assert float(ex.target.locs[2]) == pytest.approx(0.5, abs=PX)
    ex.fig.canvas.draw()
    with count_compiles() as n:  # same count of modes again: nothing new to compile
        mouse(ex, "button_press_event", _mode_handle(ex, 2), dblclick=True)
    assert ex.target.num_components == 2
    assert n["advance"] == 0


def test_widgets_switch_divergence_estimator_and_step(ex):
    assert ex.estimator == "exact"
    ex.radio_kind.set_active(1)  # chi-square
    assert ex.name == "chi2_forward" and ex.estimator == "exact"
    assert [t.get_text() for t in ex.radio_est.labels] == list(ESTIMATORS["chi2_forward"][1:])
    ex.radio_dir.set_active(1)  # reverse
    assert ex.name == "chi2_reverse"
    labels = [t.get_text() for t in ex.radio_est.labels]
    assert labels == list(ESTIMATORS["chi2_reverse"][1:])
    ex.radio_est.set_active(labels.index("score_sn"))  # picking one switches to Monte Carlo
    assert ex.estimator == "score_sn" and not ex.exact
    assert ex.radio_grad.value_selected == "Monte Carlo"
    ex.slider_k.set_val(64)
    assert ex.num_samples == 64 and ex.last.aux.samples.shape == (64,)
    step, q = int(ex.state.step), ex.q
    click_button(ex, ex.btn_step)  # a real (synthetic) click on the "step" button
    assert int(ex.state.step) == step + 1 and ex.q != q
    click_button(ex, ex.btn_reset)
    assert int(ex.state.step) == 0
    assert float(ex.q.loc) == pytest.approx(0.0) and float(ex.q.variance) == pytest.approx(5.0)
    ex.box_seed.set_val("7")
    assert ex.seed == 7


def test_step_size_and_momentum_are_traced(ex):
    """Two step sizes, same compiled program; the first step moves q by exactly -lr * grad."""
    grad = dj.exact_grad("kl_forward", ex.target, dj.default_q0())
    moves = []
    with count_compiles() as n:
        for lr in (0.05, 0.1, -0.02):
            ex.reset()
            ex.slider_lr.set_val(lr)
            ex.slider_mom.set_val(0.5)
            loc = float(ex.q.loc)
            ex.step_once()
            moves.append(float(ex.q.loc) - loc)
    assert n["advance"] == 0
    np.testing.assert_allclose(moves, -np.array([0.05, 0.1, -0.02]) * float(grad.loc), rtol=1e-4)


def test_running_away_shows_diverged(ex):
    ex.slider_lr.set_val(-0.1)  # the seed post's "machine running away"
    ex.running = True
    for _ in range(50):
        ex.frame()
        if "diverged" in ex.status_text:
            break
    assert ex.status_text.startswith("diverged at step")
    assert ex.text_status.get_text() == ex.status_text
    ex.draw()


def test_infinite_chi_square_shown_as_inf_with_reason():
    ex = explorer.Explorer(divergence="chi2_reverse", optima=None, running=False)
    try:
        # q0 = N(0, 5) against max s_k^2 = 1: chi2(q || p) = inf.
        assert math.isinf(ex.values["chi2_reverse"])
        values, reasons = ex.value_text()
        assert "chi2(q||p) = inf" in values
        assert any("does not decay" in r for r in reasons)
        assert "does not decay" in ex.text_reason.get_text()
        ex.step_once()  # no exact gradient there: the fit stops at once
        assert ex.status_text.startswith("diverged at step 0")
    finally:
        ex.close()


def test_converged_and_stuck_status():
    ex = explorer.Explorer(optima="sync")  # forward KL: one optimum, moment matching
    try:
        for _ in range(100):
            ex.frame()
            if ex.status_text.startswith("converged"):
                break
        assert ex.status_text == "converged to the global q*"
    finally:
        ex.close()
    # Monte Carlo forward KL on one of two far-apart modes never sees the other one.
    p = dj.GaussianMixture([0.5, 0.5], [-8.0, 8.0], [0.5, 0.5])
    ex = explorer.Explorer(
        p,
        dj.Gaussian.from_loc_scale(-8.0, 0.5),
        optima="sync",
        estimator="snis",
        learning_rate=0.01,
        momentum=0.0,
    )
    try:
        for _ in range(100):
            ex.frame()
            if ex.status_text.startswith("stuck"):
                break
        assert ex.status_text.startswith("stuck")
        assert float(ex.q.loc) == pytest.approx(-8.0, abs=0.5)
    finally:
        ex.close()


def test_cli_help_works_without_a_display(monkeypatch, capsys):
    from divjax import cli

    monkeypatch.delenv("DISPLAY", raising=False)
    try:
        cli.build_parser().parse_args(["explore", "--help"])
    except SystemExit:
        pass
    text = capsys.readouterr().out
    if "invalid choice" in text or "explore" not in text:
        pytest.skip("`divjax explore` is not wired into divjax/cli.py yet")
    for flag in (
        "--divergence",
        "--estimator",
        "--num-samples",
        "--learning-rate",
        "--momentum",
        "--seed",
    ):
        assert flag in text


_SMOKE = """
import sys
import matplotlib.pyplot as plt
from divjax.explorer import explore
out = sys.argv[1]
ex = explore(optima=None)
assert plt.get_backend().lower() == "tkagg", plt.get_backend()
ex.fig.canvas.start_event_loop(2.5)  # runs the timer (plt.pause would redraw everything)
ex.toggle_run()
step = int(ex.state.step)
ex.step_once()
assert int(ex.state.step) == step + 1
ex.fig.canvas.start_event_loop(0.5)
ex.fig.savefig(out + "/figure.png")
try:
    from PIL import ImageGrab
    ImageGrab.grab(xdisplay=sys.argv[2]).save(out + "/screen.png")
except Exception as err:
    print("no screen grab:", err)
print(f"STEPS {int(ex.state.step)} FPS {ex.frames_per_s:.1f} STEPS_PER_S {ex.steps_per_s:.0f}")
"""


def _has_tk() -> bool:
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="no Xvfb (apt-get install xvfb)")
@pytest.mark.skipif(not _has_tk(), reason="tkinter is not available (apt-get install python3-tk)")
def test_real_window_under_xvfb(tmp_path):
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as f:
            display = ":" + f.readline().strip()
        env = dict(os.environ, MPLBACKEND="TkAgg", DISPLAY=display)
        script = tmp_path / "smoke.py"
        script.write_text(textwrap.dedent(_SMOKE))
        run = subprocess.run(
            [sys.executable, str(script), str(tmp_path), display],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        server.terminate()
        server.wait(10)
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("STEPS")][-1]
    steps, fps = int(line.split()[1]), float(line.split()[3])
    assert steps > 1 and fps > 0  # the timer ran the fit in the window
    keep = os.environ.get("DIVJAX_SCREENSHOT_DIR")
    for name in ("figure.png", "screen.png"):
        path = tmp_path / name
        if name == "screen.png" and not path.exists():
            continue
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 500 and image[..., :3].std() > 0.05  # not a blank screen
        if keep:
            shutil.copy(path, os.path.join(keep, name))
    print(line)
