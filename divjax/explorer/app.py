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
import numpy as np

from divjax.explorer import options as opts
from divjax.explorer.background import Background
from divjax.explorer.compute import DIRECTIONS
from divjax.explorer.controls import Pointer, Widgets
from divjax.explorer.figure import ExplorerFigure, interactive
from divjax.explorer.panels import COORD_PLAIN
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
        running: bool = True, interval_ms: int = 15, blit: bool | None = None,
        threads: bool | None = None, **options,
    ):  # fmt: skip
        chosen = opts.preset(preset or "default")
        chosen.update(options)
        if target is not None:
            chosen["target"] = target
        if q0 is not _UNSET:
            chosen["q0"] = q0
        chosen.setdefault("q0", default_q0())
        self.session = Session(chosen.pop("target", None), chosen.pop("q0"), **chosen)
        dirs = self.session.settings.directions
        self.shown = landscape or ("reverse" if "reverse" in dirs else dirs[0])
        opts._checks.check_choice(self.shown, DIRECTIONS, "landscape direction")
        self.running = bool(running)
        self.frames_per_s = self.steps_per_s = 0.0
        self._carry, self._last_tick = 0.0, None
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
        now = time.perf_counter()
        if num_steps is None:
            num_steps = 0
            if self.running and not self.pointer.holding_q and self._last_tick is not None:
                self._carry += self.session.speed * min(now - self._last_tick, 0.5)
                num_steps = min(int(self._carry), MAX_STEPS_PER_FRAME)
                self._carry -= num_steps
            if self._last_tick is not None and self.running:
                dt = max(now - self._last_tick, 1e-6)
                self.frames_per_s += 0.1 * (1.0 / dt - self.frames_per_s)
                self.steps_per_s += 0.1 * (num_steps / dt - self.steps_per_s)
            self._last_tick = now if self.running else None
        self.background.poll()
        frame = self.session.advance(int(num_steps))
        self._update_artists()
        return frame

    def _update_artists(self) -> None:
        s = self.session
        status = {d: s.describe(d) for d in s.settings.directions}
        step = max(s.step(d) for d in s.settings.directions)
        speed = f"{self.steps_per_s:7,.0f} steps/s {self.frames_per_s:5.1f} frames/s  step {step}"
        self.figure.update(s, status, speed, self.settings_line())

    def settings_line(self) -> str:
        """One line saying how the fits step (gradient, optimizer, step size, options)."""
        s, h = self.session.settings, self.session.hyper
        grad = "exact gradients" if s.exact else f"Monte Carlo, K = {s.num_samples}"
        t = max(self.session.step(d) for d in s.directions)
        lr = h["learning_rate"] / (1 + h["decay"] * t)
        flags = self.session.flags
        opt = "SGD" if flags["optimizer"] == "sgd" else "Adam"
        step = f"{opt} lr {h['learning_rate']:.3g}" + (
            f"/(1+{h['decay']:.3g}t) = {lr:.3g}" if h["decay"] else ""
        )
        parts = [grad, f"{step}, momentum {h['momentum']:.2f}"]
        sym = ", ".join(COORD_PLAIN[s.parameterization])
        parts.append(("natural gradient in " if flags["natural_gradient"] else "in ") + f"({sym})")
        if self.session.clip:
            parts.append(f"clip {self.session.clip_value:.3g}")
        if flags["fixed_scale"]:
            parts.append("σ fixed")
        return " | ".join(parts)

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
        try:
            self.background.apply(changes)
        except ValueError as err:
            self.figure.message(str(err))
        self.refresh()

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
        try:
            self.session.set_flags(**flags)
            self.background.request_optima()
        except ValueError as err:
            self.figure.message(str(err))
        self.refresh()

    def set_hyper(self, **values) -> None:
        """``learning_rate``, ``momentum``, ``decay`` (traced: never recompiles)."""
        try:
            self.session.set_hyper(**values)
        except ValueError as err:
            self.figure.message(str(err))
        self.refresh()

    def set_clip(self, enabled: bool | None = None, norm: float | None = None) -> None:
        """Gradient clipping on/off and its norm (traced)."""
        self.session.set_clip(enabled, norm)
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
        self._last_tick = None
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
        self._restarted()

    def random_restart(self) -> None:
        """Both fits from a new random start (finite in both directions)."""
        self.session.random_restart()
        self._restarted()

    def _restarted(self) -> None:
        self.session.refresh_grid()
        self.figure.label(self.session)
        self.background.request_landscape("fits")
        self.background.request_optima()
        self.refresh()

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
        w, m, s = opts.mixture_arrays(self.session.target)
        scale = float(np.median(s)) if scale is None else scale
        weight = float(np.mean(w)) if weight is None else weight
        self.set_target((np.append(w, weight), np.append(m, loc), np.append(s, scale)))

    def remove_mode(self, index: int) -> None:
        """Removes component ``index`` (never the last one)."""
        if self.session.target.num_components > 1:
            self.set_target(
                tuple(np.delete(a, index) for a in opts.mixture_arrays(self.session.target))
            )

    def drag_finished(self, target: bool) -> None:
        """After a drag: the optima, the window, the landscape and the grid catch up."""
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
        animated = self.figure.animated + self.figure.texts
        for a in animated:
            a.set_animated(False)
        try:
            self.fig.savefig(path, **kwargs)
        finally:
            for a in animated:
                a.set_animated(self.figure.blit)
            self.figure.needs_full = True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.background.close()
        self.figure.close()


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


__all__ = ["Explorer", "explore"]
