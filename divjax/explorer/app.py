r"""`Explorer`, `explore` and ``divjax explore`` (`run_cli`): the session in a live figure.

Every control is an `Explorer` method (what the widgets, the mouse and the
keys call, and what scripts and tests call). A timer advances the fits by
``speed`` steps per second, in one compiled call per frame. Slow work runs in
background threads (`divjax.explorer.background`): the optima, the
landscape, and the compilation of new settings (the fits keep running with
the old ones meanwhile). With ``threads=False`` all of it happens at once.
"""

from __future__ import annotations

import contextlib
import math
import time

import matplotlib.pyplot as plt

from divjax.explorer import options as opts
from divjax.explorer.background import Background
from divjax.explorer.compute import DIRECTIONS
from divjax.explorer.controls import Widgets
from divjax.explorer.figure import ExplorerFigure, interactive, settings_line
from divjax.explorer.pointer import Pointer
from divjax.explorer.session import Session
from divjax.families import default_q0

MAX_STEPS_PER_FRAME = 5000
_UNSET = object()


class Explorer:
    r"""The live figure and the fits behind it (see `divjax.explorer`).

    Args:
      target: a 1-D `divjax.GaussianMixture` or ``(weights, locs, scales)``.
      q0: the start (default ``N(0, 5)``; None: a random start).
      preset: ``"page"`` (the seed page's settings; see `divjax.explorer.options`)
        or ``"default"``; explicit arguments override it.
      landscape: the direction whose divergence the landscape shows
        (default: reverse where fitted).
      running: start running (the timer runs on interactive backends only;
        elsewhere call `frame` and `draw`).
      interval_ms: the timer's period.
      blit: blit the changing artists (default: where the canvas supports it).
      threads: compute optima, landscapes and new settings' programs in
        background threads (default: on interactive backends).
      **options: `divjax.explorer.session.Session`'s keyword arguments
        (``divergence``, ``estimator``, ``num_samples``, ``learning_rate``, ...).
    """

    def __init__(
        self, target=None, q0=_UNSET, *, preset: str | None = None, landscape: str | None = None,
        running: bool = True, interval_ms: int = 1, blit: bool | None = None,
        threads: bool | None = None, **options,
    ):  # fmt: skip
        chosen = opts.merged(
            preset, options, target, default_q0() if q0 is _UNSET else q0, q0 is _UNSET
        )
        self.session = Session(chosen.pop("target", None), chosen.pop("q0"), **chosen)
        dirs = self.session.settings.directions
        self.shown = landscape or ("reverse" if "reverse" in dirs else dirs[0])
        opts._checks.check_choice(self.shown, DIRECTIONS, "landscape direction")
        self.running = bool(running)
        self.clock = Clock()
        self.figure = ExplorerFigure(blit)
        self.figure.fig._divjax_explorer = self  # the figure keeps its explorer (and timer) alive
        self.background = Background(self, interactive() if threads is None else threads)
        self.widgets = Widgets(self)
        self.pointer = Pointer(self)
        self.figure.label(self.session)
        self.background.request_landscape("target")
        self.background.request_optima()
        self.frame(0)
        self._timer = None
        if interactive():
            self._timer = self.figure.fig.canvas.new_timer(interval=interval_ms)
            self._timer.add_callback(self._on_timer)
            self._timer.start()

    # --- frames -----------------------------------------------------------------

    @property
    def fig(self):
        return self.figure.fig

    def wanted(self, field: str):
        """A setting as last asked for (pending a compilation, or the session's)."""
        return self.background.wanted(field)

    def frame(self, num_steps: int | None = None):
        """Advances the fits (by the speed while running) and updates the artists; no drawing."""
        if num_steps is None:
            moving = self.running and not self.pointer.holding_q
            num_steps = self.clock.tick(self.session.speed if moving else 0.0, self.running)
        self.background.poll()
        frame = self.session.advance(int(num_steps))
        s = self.session
        status = {d: s.describe(d) for d in s.settings.directions}
        step = max(s.step(d) for d in s.settings.directions)
        self.figure.update(s, status, f"{self.clock}  step {step}", settings_line(s))
        return frame

    def draw(self) -> None:
        """Puts the current frame on screen (on Agg: renders the canvas)."""
        self.figure.draw()

    def _show(self) -> None:
        """After an action: draws where there is a screen (scripts on Agg call `draw`)."""
        if interactive():
            self.figure.draw()

    def refresh(self) -> None:
        """After an action: the widgets in step, a frame without steps, drawn."""
        self.widgets.sync()
        self.frame(0)
        self._show()

    def _on_timer(self) -> None:
        if self.running or self.background.pending():
            self.frame()
            self._show()

    # --- settings -------------------------------------------------------------------

    def apply(self, **changes) -> None:
        """Changes settings (compiled in the background where needed); errors become a message."""
        self._guarded(self.background.apply, changes)

    @contextlib.contextmanager
    def batch(self):
        """Collects the settings changed inside the block and applies them at its end, at once.

        One compilation for several changes (scripts, tests); the widgets show
        the changes meanwhile.
        """
        self.background.held += 1
        try:
            yield self
        finally:
            self.background.held -= 1
            if not self.background.held:
                self.apply()

    def set_divergence(self, kind: str | None = None, direction: str | None = None) -> None:
        """The divergence kind (``"kl"``/``"chi2"``) and/or one direction to fit alone."""
        changes = {}
        if kind is not None:
            opts._checks.check_choice(kind, ("kl", "chi2"), "divergence kind")
            changes.update(kind=kind, estimators=opts.default_estimators(kind))
        if direction is not None:
            opts._checks.check_choice(direction, DIRECTIONS, "direction")
            changes["directions"] = (direction,)
        self.apply(**changes)

    def toggle_direction(self, direction: str) -> None:
        """Fits ``direction`` too, or stops fitting it (one direction always stays)."""
        dirs = set(self.wanted("directions")) ^ {direction}
        if not dirs:
            self.figure.message("at least one direction is fitted")
            return self.refresh()
        self.apply(directions=tuple(d for d in DIRECTIONS if d in dirs))

    def set_exact(self, exact: bool) -> None:
        self.apply(exact=bool(exact))

    def set_estimator(self, direction: str, estimator: str) -> None:
        """The Monte Carlo estimator of ``direction`` (switches to Monte Carlo)."""
        kind = self.wanted("kind")
        opts._checks.check_choice(estimator, opts.monte_carlo_choices(kind, direction), "estimator")
        ests = list(self.wanted("estimators"))
        ests[DIRECTIONS.index(direction)] = estimator
        k = opts.check_num_samples(self.wanted("num_samples"), ests)
        self.apply(estimators=tuple(ests), exact=False, num_samples=k)

    def set_num_samples(self, k: int) -> None:
        """``K``: any integer from 1 to 512 (clamped; at least the estimators' minimum)."""
        k = min(max(int(k), 1), opts.MAX_SAMPLES)
        self.apply(num_samples=opts.check_num_samples(k, self.wanted("estimators")))

    def set_parameterization(self, parameterization: str) -> None:
        """The coordinates gradient descent (and the landscape) works in."""
        self.apply(parameterization=parameterization)

    def set_optimizer(self, optimizer: str) -> None:
        """``"sgd"`` (with momentum) or ``"adam"`` (traced: never recompiles)."""
        self.set_flags(optimizer=optimizer)

    def set_natural_gradient(self, on: bool) -> None:
        """The natural gradient in the chosen coordinates (traced)."""
        self.set_flags(natural_gradient=bool(on))

    def set_fixed_scale(self, on: bool) -> None:
        """Fit the mean only, sigma held (traced; not in natural or expectation coordinates)."""
        self.set_flags(fixed_scale=bool(on))

    def set_flags(self, **flags) -> None:
        """``natural_gradient``, ``fixed_scale``, ``optimizer`` (traced)."""
        self._guarded(self.session.set_flags, **flags)
        self.background.request_optima()

    def set_hyper(self, **values) -> None:
        """``learning_rate``, ``momentum``, ``decay`` (traced: never recompiles)."""
        self._guarded(self.session.set_hyper, **values)

    def set_clip(self, enabled: bool | None = None, norm: float | None = None) -> None:
        """Gradient clipping on/off and its norm (traced)."""
        self._guarded(self.session.set_clip, enabled, norm)

    def _guarded(self, fn, *args, **kwargs) -> None:
        """``fn(...)``, a `ValueError` shown as the message, then `refresh`."""
        try:
            fn(*args, **kwargs)
        except ValueError as err:
            self.figure.message(str(err))
        self.refresh()

    def set_speed(self, steps_per_s: float) -> None:
        """Steps per second while running."""
        self.session.speed = opts.check_float(steps_per_s, "speed", 0.0)
        self.refresh()

    def set_seed(self, seed: int) -> None:
        """Re-seeds the Monte Carlo draws and the random starts (the fits go on)."""
        self.session.reseed(int(seed))
        self.refresh()

    def show_landscape(self, direction: str) -> None:
        """Which direction's divergence the landscape shows."""
        opts._checks.check_choice(direction, DIRECTIONS, "direction")
        self.shown = direction
        self.background.request_landscape()
        self.refresh()

    # --- the fits ---------------------------------------------------------------------

    def toggle_run(self) -> None:
        """Run / pause."""
        self.running = not self.running
        self.clock.last = None
        self.refresh()

    def step_once(self):
        """One step of every fitted direction, drawn."""
        out = self.frame(1)
        self.widgets.sync()
        self._show()
        return out

    def reset(self) -> None:
        """Both fits back to ``q0``."""
        self.session.reset()
        self.drag_finished(target=False)

    def random_restart(self) -> None:
        """Both fits from a new random start (finite in both directions)."""
        self.session.random_restart()
        self.drag_finished(target=False)

    def set_q(self, loc: float, scale: float, direction: str | None = None) -> None:
        """Moves ``q`` of ``direction`` (None: both) to ``N(loc, scale^2)``; its fit restarts."""
        self.session.set_q(loc, scale, direction)
        self.frame(0)
        self._show()

    def move_q_to_theta(self, theta, direction: str | None = None) -> None:
        """Moves ``q`` to the landscape's coordinates ``theta`` (ignored outside the domain)."""
        q = self.figure.landscape.to_gaussian(theta)
        if q is not None:
            self.set_q(q[0], math.exp(q[1]), direction)

    def set_target(self, target, final: bool = True) -> None:
        """Replaces the target; the optima and landscape follow (at once if ``final``)."""
        self.session.set_target(target)
        if final:
            self.drag_finished(target=True)
        else:  # mid-drag: the landscape follows where it is computed in the background
            if self.background.threaded:
                self.background.request_landscape()
            self.frame(0)
            self._show()

    def add_mode(self, loc: float, scale: float | None = None, weight: float | None = None) -> None:
        """Adds a component (default: the median scale, the mean weight)."""
        self.set_target(opts.with_mode(self.session.target, loc, scale, weight))

    def remove_mode(self, index: int) -> None:
        """Removes component ``index`` (never the last one)."""
        if self.session.target.num_components > 1:
            self.set_target(opts.without_mode(self.session.target, index))

    def drag_finished(self, target: bool) -> None:
        """After a drag or a restart: the grid, the window, landscape and optima catch up."""
        self.session.refresh_grid()
        self.figure.label(self.session)
        self.background.request_landscape("target" if target else "fits")
        self.background.request_optima()
        self.refresh()

    def hover(self, theta) -> None:
        """The landscape's readout at coordinates ``theta`` (None: cleared)."""
        text = self.background.hover_text(theta)
        if text == self.figure.landscape.text_hover.get_text():
            return
        self.figure.landscape.text_hover.set_text(text)
        self.figure._texts_dirty = True
        if not self.running:
            self._show()

    # --- the rest ------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> None:
        """Blocks until the background work (optima, landscape, compilation) is done."""
        self.background.wait(timeout)
        self.refresh()

    def savefig(self, path, **kwargs) -> None:
        """Saves the figure as it is on screen (animated artists included)."""
        self.figure.savefig(path, **kwargs)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.background.close()
        self.figure.close()


class Clock:
    """Steps owed at ``speed`` steps per second since the last tick, and the measured rates."""

    def __init__(self):
        self.last, self.carry = None, 0.0
        self.frames_per_s = self.steps_per_s = 0.0

    def tick(self, speed: float, running: bool) -> int:
        now = time.perf_counter()
        n = 0
        if self.last is not None and running:
            dt = max(now - self.last, 1e-6)
            self.carry += speed * min(dt, 0.5)
            n = min(int(self.carry), MAX_STEPS_PER_FRAME)
            self.carry -= n
            self.frames_per_s += 0.1 * (1.0 / dt - self.frames_per_s)
            self.steps_per_s += 0.1 * (n / dt - self.steps_per_s)
        self.last = now if running else None
        return n

    def __str__(self) -> str:
        return f"{self.steps_per_s:7,.0f} steps/s {self.frames_per_s:5.1f} frames/s"


def explore(target=None, q0=_UNSET, **options) -> Explorer:
    """Opens the explorer (`Explorer`'s arguments) and returns it.

    In Jupyter use the ipympl backend (``%matplotlib widget``); in a script,
    call ``plt.show()`` afterwards. On Agg nothing is shown: drive it with
    `Explorer.frame` and `Explorer.draw`.
    """
    ex = Explorer(target, q0, **options)
    if interactive():
        plt.show(block=False)
    return ex


__all__ = ["Clock", "Explorer", "explore"]
