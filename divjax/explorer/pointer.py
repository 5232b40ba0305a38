r"""The mouse and the keys: drags on the fit panel and the landscape, hover, shortcuts.

Fit panel: drag a mode's dot (left/right: its location, up/down: its weight;
shift- or right-drag: its scale); double-click to add a mode, on a dot to
remove it; drag a ``q``'s dot (its mean) or diamond (its width). Landscape:
press anywhere to start both fits there (one start), on a ``q``'s marker to
move that one; hover for the value. Keys: space (run/pause), right or ``n``
(one step), ``r`` (random start), ``z`` (reset), ``+``/``-`` (``K``), up/down
(speed). matplotlib's own key bindings are switched off for the figure.
"""

from __future__ import annotations

import numpy as np

from divjax.explorer.options import mixture_arrays

MAX_SPEED = 1e4


class Pointer:
    """The mouse and the keys: drags on the fit panel and the landscape, hover, shortcuts."""

    HANDLE_PX = 12.0

    def __init__(self, ex):
        self.ex = ex
        self.drag = None
        canvas = ex.figure.fig.canvas
        manager = getattr(canvas, "manager", None)
        if manager is not None and getattr(manager, "key_press_handler_id", None) is not None:
            canvas.mpl_disconnect(manager.key_press_handler_id)  # our keys, not matplotlib's
        canvas.mpl_connect("button_press_event", self.on_press)
        canvas.mpl_connect("motion_notify_event", self.on_motion)
        canvas.mpl_connect("button_release_event", self.on_release)
        canvas.mpl_connect("key_press_event", self.on_key)

    @property
    def holding_q(self) -> bool:
        """Whether a ``q`` is being dragged (the fits then do not step)."""
        return self.drag is not None and self.drag[0] in ("q_loc", "q_width", "theta")

    def pick(self, event):
        """The fit panel's handle under the mouse: ``(kind, index_or_direction)`` or None."""
        ex = self.ex
        panel, best, best_d = ex.figure.fit, None, self.HANDLE_PX
        candidates = [("mode", panel.modes)]
        for d in ex.session.settings.directions:
            candidates += [(("q_loc", d), panel.peaks[d]), (("q_width", d), panel.shoulders[d])]
        for tag, artist in candidates:  # on a tie the later (drawn on top) wins
            xy = np.column_stack(artist.get_data())
            if not len(xy):
                continue
            dist = np.hypot(*(panel.ax.transData.transform(xy) - (event.x, event.y)).T)
            i = int(np.argmin(dist))
            if dist[i] <= best_d:
                best, best_d = (tag, i) if tag == "mode" else tag, dist[i]
        return best

    def on_press(self, event) -> None:
        ex = self.ex
        land = ex.figure.landscape
        if event.button not in (1, 3):
            return
        if event.inaxes is land.ax:
            theta = land.theta_at(event)
            if theta is not None and land.data is not None:
                self.drag = ("theta", land.near_head(ex.session, event))
                ex.move_q_to_theta(theta, self.drag[1])
            return
        if event.inaxes is not ex.figure.fit.ax:
            return
        hit = self.pick(event)
        x, y = event.xdata, event.ydata
        if event.dblclick:
            if hit is not None and hit[0] == "mode":
                ex.remove_mode(hit[1])
            elif hit is None:
                ex.add_mode(float(x))
            return
        if hit is None:
            return
        alt = event.button == 3 or "shift" in (event.key or "")
        kind, which = hit
        if kind == "mode" and alt:
            kind = "mode_scale"
        elif kind == "q_loc" and alt:
            kind = "q_width"
        q = ex.session.q(which) if kind.startswith("q") else None
        start = (x, y, mixture_arrays(ex.session.target), q)
        self.drag = (kind, which, start)

    def on_motion(self, event) -> None:
        ex = self.ex
        if self.drag is None:
            ex.hover(ex.figure.landscape.theta_at(event))
            return
        if self.drag[0] == "theta":
            theta = ex.figure.landscape.theta_at(event)
            if theta is not None:
                ex.move_q_to_theta(theta, self.drag[1])
            return
        if event.x is None or event.y is None:
            return
        kind, which, (x0, y0, (w0, m0, s0), q) = self.drag
        ax = ex.figure.fit.ax
        if event.inaxes is ax and event.xdata is not None:
            x, y = event.xdata, event.ydata
        else:  # past the panel's edges (to the pixel): a weight dragged up beyond the top
            # keeps growing instead of stopping where the mouse left the axes
            x, y = ax.transData.inverted().transform((event.x, event.y))
        if kind == "q_loc":
            ex.set_q(float(q.loc) + (x - x0), float(q.scale), which)
        elif kind == "q_width":
            ex.set_q(float(q.loc), max(abs(x - float(q.loc)), 0.02), which)
        else:
            w, m, s = w0.copy(), m0.copy(), s0.copy()
            if kind == "mode":
                m[which] = m0[which] + (x - x0)
                w[which] = w0[which] * min(max(y / max(y0, 1e-9), 0.02), 50.0)
            else:
                s[which] = max(s0[which] + (x - x0), 0.05)
            ex.set_target((w, m, s), final=False)

    def on_release(self, event) -> None:
        """Ends a drag where the mouse is let go (browsers send few motions: ipympl throttles)."""
        if self.drag is None:
            return
        self.on_motion(event)
        kind, self.drag = self.drag[0], None
        self.ex.drag_finished(target=kind.startswith("mode"))

    def on_key(self, event) -> None:
        ex, key = self.ex, event.key
        s = ex.session
        actions = {
            " ": ex.toggle_run,
            "right": ex.step_once,
            "n": ex.step_once,
            "r": ex.random_restart,
            "z": ex.reset,
            "+": lambda: ex.set_num_samples(ex.wanted("num_samples") + 1),
            "=": lambda: ex.set_num_samples(ex.wanted("num_samples") + 1),
            "-": lambda: ex.set_num_samples(ex.wanted("num_samples") - 1),
            "up": lambda: ex.set_speed(min(s.speed * 2, MAX_SPEED)),
            "down": lambda: ex.set_speed(max(s.speed / 2, 1.0)),
        }
        if key in actions:
            actions[key]()


__all__ = ["Pointer"]
