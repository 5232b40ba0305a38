r"""The explorer's slow work, off the window's thread: optima, landscapes, new settings.

`Background` owns three `divjax.explorer.workers.Worker`'s. Optima
(`divjax.optimal_q`, seconds per new target) and landscapes (a mesh of
exact divergences) are requested after a change and shown when they arrive;
stale results are dropped. New settings whose programs are not compiled yet
stay *pending* (`Background.wanted` reports them, the widgets show them)
while a worker compiles them and the fits keep running with the old ones.
"""

from __future__ import annotations

import dataclasses
import functools

from divjax.explorer import surface
from divjax.explorer.compute import DIRECTIONS
from divjax.explorer.session import warm
from divjax.explorer.workers import Worker
from divjax.landscape import default_window

MESH = 40  # landscape mesh points per axis


def _merge(old, new, refit: str | None):
    """The window to show: ``new``, unless only the fits moved and ``old`` still holds them."""
    if old is None or refit == "target":
        return new
    inside = all(a[0] <= b[0] and b[1] <= a[1] for a, b in zip(old, new))
    return old if inside else new


class Background:
    """Requests, polls and applies the slow work of one `Explorer` ``ex``."""

    def __init__(self, ex, threaded: bool):
        self.ex = ex
        self.threaded = bool(threaded)
        self.optima = Worker(self.threaded)
        self.landscape = Worker(self.threaded)
        self.compile = Worker(self.threaded)
        self.changes: dict = {}  # settings asked for, waiting for their compilation
        self.held = 0  # inside `Explorer.batch`: changes wait for its end
        self.window = None  # ((loc lo, hi), (log_scale lo, hi)) of the landscape
        self.landscape_key = None

    def wanted(self, field: str):
        """A setting as last asked for: pending, else the session's (switches included)."""
        session = self.ex.session
        if field in session.flags:
            return session.flags[field]
        return self.changes.get(field, getattr(session.settings, field))

    def pending(self) -> bool:
        """Whether anything is computing or waiting."""
        return bool(self.changes) or any(
            w.pending() for w in (self.optima, self.landscape, self.compile)
        )

    # --- settings ----------------------------------------------------------------------

    def apply(self, changes: dict) -> None:
        """Applies settings ``changes`` now if compiled (or unthreaded), else compiles them first.

        Raises:
          ValueError: a combination the fit cannot run (nothing changes).
        """
        session = self.ex.session
        merged = {**self.changes, **changes}
        new = session.check_settings(dataclasses.replace(session.settings, **merged))
        if self.held:
            self.changes = merged
            return
        if not self.threaded or session.is_compiled(**merged):
            self.changes = {}
            self._update(merged)
            return
        self.changes = merged
        self.ex.figure.message("compiling the new settings (the fits go on with the old ones) ...")
        self.compile.submit("compile", new, functools.partial(warm, session, **merged))

    def _update(self, changes: dict) -> None:
        session = self.ex.session
        old = session.settings
        session.update(**changes)
        self.ex.figure.message("")
        self.ex.figure.label(session)
        new = session.settings
        if (old.kind, old.parameterization) != (new.kind, new.parameterization):
            self.request_landscape()
        elif old.directions != new.directions:
            self.ex.figure.landscape.mark_optima(session, self.ex.shown)
        self.request_optima()

    # --- requests ---------------------------------------------------------------------

    def request_optima(self) -> None:
        """Computes the optima of every fitted direction whose optima are missing or stale."""
        session = self.ex.session
        for d, key in session.optima_wanted().items():
            if self.optima.pending_key(("optima", d)) != key:
                fn, args = session.optima_job(d)
                self.optima.submit(("optima", d), key, fn, *args)

    def request_landscape(self, refit: str | None = None) -> None:
        """Computes the landscape of the shown direction where its inputs changed.

        ``refit``: None keeps the window; ``"fits"`` widens it where a fit or the
        start left it; ``"target"`` fits it anew around the target and the fits.
        """
        s = self.ex.session
        if refit or self.window is None:
            starts = [s.start] + [(float(s.q(d).loc), float(s.q(d).log_scale)) for d in DIRECTIONS]
            self.window = _merge(self.window, default_window(s.target, starts), refit)
        name = f"{s.settings.kind}_{self.ex.shown}"
        param = s.settings.parameterization
        num = MESH
        key = (name, param, s.target_key, self.window, num)
        if key == self.landscape_key:
            return
        self.landscape_key = key
        if self.ex.figure.landscape.data is None:
            self.ex.figure.landscape.pending("computing the landscape ...")
        self.landscape.submit(
            "landscape", key, surface.landscape_data, name, s.target, param, *self.window, num
        )

    # --- results ----------------------------------------------------------------------

    def poll(self) -> None:
        """Takes in what finished (on the window's thread)."""
        ex, session = self.ex, self.ex.session
        for done in self.optima.poll():
            _, d = done.tag
            session.set_optima(d, done.key, None if done.error else done.result)
            ex.figure.landscape.mark_optima(session, ex.shown)
            ex.figure.needs_full = True
        for done in self.landscape.poll():
            if done.error is not None:
                ex.figure.message(f"landscape failed: {done.error}")
            elif done.key == self.landscape_key:
                ex.figure.landscape.set_data(done.result, session, ex.shown)
                ex.figure.needs_full = True
        for done in self.compile.poll():
            if done.error is not None:
                self.changes = {}
                ex.figure.message(f"these settings do not run: {done.error}")
                ex.widgets.sync()
            elif self.changes and done.key == dataclasses.replace(session.settings, **self.changes):
                changes, self.changes = self.changes, {}
                self._update(changes)
                ex.widgets.sync()

    def hover_text(self, theta) -> str:
        """The landscape readout at ``theta`` (interpolated from its mesh), or ``""``."""
        land = self.ex.figure.landscape
        if theta is None or land.data is None:
            return ""
        return land.hover_text(theta, surface.value_at(land.data, theta))

    def wait(self, timeout: float | None = None) -> None:
        for worker in (self.compile, self.optima, self.landscape):
            worker.wait(timeout)
        self.poll()

    def close(self) -> None:
        for worker in (self.optima, self.landscape, self.compile):
            worker.close()


__all__ = ["Background"]
