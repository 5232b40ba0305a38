r"""The explorer's figure: layout, header texts, and drawing with blitting.

`ExplorerFigure.draw` puts a frame on screen. Where the canvas supports
blitting (TkAgg, QtAgg, ...), the static background (axes, ticks, legends,
widgets, the landscape's surface) is cached after each full draw; a frame
restores it, draws the changing artists on it and blits two regions (the
fit column and the landscape; between text updates only the four panels).
The texts, slow to render, are baked into the cached background every
`TEXT_INTERVAL_S` (at once after a message or a hover). A full draw happens only
when axis limits, labels, the landscape or the widgets changed. Elsewhere
(ipympl, Agg) every frame is a full ``draw_idle``.
"""

from __future__ import annotations

import time

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.transforms import Bbox, TransformedBbox

from divjax.explorer.compute import DIRECTIONS
from divjax.explorer.landscape_panel import LandscapePanel
from divjax.explorer.panels import (
    COORD_PLAIN,
    NEGATIVE,
    PLAIN,
    Q_STYLE,
    SEEKING,
    SHORT,
    FitPanel,
    RugPanel,
    WeightsPanel,
)

FIGSIZE = (15.5, 8.8)
TEXT_INTERVAL_S = 0.5
STATUS_COLORS = {
    "converged": "#1B9E77",
    "started": "#555555",
    "diverged": "#D95F02",
    "stuck": "#B8860B",
    "still": "#2C7FB8",
    "ran": "#D95F02",
    "settled": "#555555",
}
# Figure-fraction rectangles (left, bottom, width, height).
FIT_RECT = (0.065, 0.53, 0.435, 0.33)
WEIGHTS_RECT = (0.065, 0.30, 0.435, 0.18)
RUG_RECT = (0.065, 0.055, 0.435, 0.17)
LANDSCAPE_RECT = (0.555, 0.50, 0.225, 0.36)
COLORBAR_RECT = (0.785, 0.50, 0.007, 0.36)
BLIT_BOXES = ((0.0, 0.0, 0.515, 1.0), (0.525, 0.41, 0.83, 0.99))
PANELS_BOX = (0.0, 0.05, 0.505, 0.865)
_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "cairo", "pgf", "template"}


def interactive() -> bool:
    """Whether matplotlib's backend shows windows (or widgets) at all."""
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE


class ExplorerFigure:
    """The figure, its panels and texts, and the drawing logic (see the module docstring)."""

    def __init__(self, blit: bool | None = None):
        fig = self.fig = plt.figure(figsize=FIGSIZE)
        self.fit = FitPanel(fig.add_axes(FIT_RECT))
        self.weights = WeightsPanel(fig.add_axes(WEIGHTS_RECT, sharex=self.fit.ax))
        self.rug = RugPanel(fig.add_axes(RUG_RECT, sharex=self.fit.ax))
        self.landscape = LandscapePanel(fig.add_axes(LANDSCAPE_RECT), fig.add_axes(COLORBAR_RECT))
        self.text_status = {
            d: fig.text(0.065, 0.965 - 0.026 * i, "", fontsize=10.5, weight="bold")
            for i, d in enumerate(DIRECTIONS)
        }
        self.text_speed = fig.text(0.50, 0.965, "", fontsize=9.5, ha="right", family="monospace")
        self.text_q = fig.text(0.065, 0.89, "", fontsize=9, color=Q_STYLE["reverse"]["color"])
        self.text_reason = fig.text(0.065, 0.872, "", fontsize=8, color=NEGATIVE)
        self.text_message = fig.text(0.555, 0.965, "", fontsize=9.5, color="#D95F02")
        self.text_settings = fig.text(
            0.555, 0.945, "", fontsize=8.5, color="0.25", va="top", linespacing=1.5
        )
        canvas = fig.canvas
        for name in ("header_visible", "toolbar_visible", "resizable"):  # ipympl: a clean canvas
            if hasattr(canvas, name):
                setattr(canvas, name, False)
        self.blit = bool(canvas.supports_blit if blit is None else blit) and interactive()
        for artist in self.animated + self.texts:
            artist.set_animated(self.blit)
        self._boxes = [TransformedBbox(Bbox.from_extents(*b), fig.transFigure) for b in BLIT_BOXES]
        self._panel_boxes = [  # the fit column's three panels, the landscape
            TransformedBbox(Bbox.from_extents(*PANELS_BOX), fig.transFigure),
            TransformedBbox(Bbox([[-0.01, -0.01], [1.01, 1.01]]), self.landscape.ax.transAxes),
        ]
        self._bg = self._bg_text = None
        self.needs_full = True
        self._texts_dirty = True
        self._text_time = -float("inf")
        canvas.mpl_connect("draw_event", self._on_draw)

    @property
    def animated(self) -> list:
        """The artists that change every frame (not texts)."""
        out = []
        for panel in (self.fit, self.weights, self.rug, self.landscape):
            out += [a for a in panel.animated if not hasattr(a, "get_text")]
        return out

    @property
    def texts(self) -> list:
        """The texts that change (baked into the background every `TEXT_INTERVAL_S`)."""
        out = [*self.text_status.values(), self.text_speed, self.text_q, self.text_reason]
        out += [self.text_message, self.text_settings]
        for panel in (self.fit, self.weights, self.rug, self.landscape):
            out += [a for a in panel.animated if hasattr(a, "get_text")]
        return out

    def label(self, session) -> None:
        """Titles, legends and tick labels for the current settings (then a full draw)."""
        self.fit.legend(session)
        kind = session.settings.kind
        parts = [f"{PLAIN[f'{kind}_{d}']} ({SEEKING[d]})" for d in session.settings.directions]
        self.fit.ax.set_title("minimize " + " and ".join(parts), fontsize=10, loc="left")
        self.weights.label(session)
        self.rug.label(session)
        self.fit.ax.set_xlim(float(session.x[0]), float(session.x[-1]))
        self.needs_full = True

    def update(self, session, status: dict, speed: str, settings_line: str) -> None:
        """Sets every changing artist from the session's frame (nothing is drawn yet)."""
        for panel in (self.fit, self.weights, self.rug, self.landscape):
            self.needs_full |= panel.update(session)
        for d, text in self.text_status.items():
            on = d in session.settings.directions
            text.set_text(f"{SHORT[d]}: {status[d]}" if on else "")
            text.set_color(STATUS_COLORS.get(status.get(d, "").split(" ")[0], "k"))
        self.text_speed.set_text(speed)
        self.text_settings.set_text(settings_line)
        qs = []
        reasons = []
        for d in session.settings.directions:
            q = session.q(d)
            qs.append(f"q {SHORT[d]}: mean {float(q.loc):.3f}, sd {float(q.scale):.3f}")
            reason = session.infinite_reason(d)
            if reason:
                reasons.append(reason)
        self.text_q.set_text("     ".join(qs))
        self.text_reason.set_text("   ".join(reasons)[:220])

    def message(self, text: str) -> None:
        if self.text_message.get_text() != text:
            self.text_message.set_text(text)
            self._texts_dirty = True

    # --- drawing ------------------------------------------------------------------

    def draw(self) -> None:
        """Puts the current frame on screen (blitting where possible; see the module)."""
        canvas = self.fig.canvas
        if not (self.blit and self._bg is not None and not self.needs_full):
            canvas.draw_idle() if interactive() else canvas.draw()
            return
        now = time.perf_counter()
        baked = self._texts_dirty or now - self._text_time > TEXT_INTERVAL_S
        if baked:
            for bg in self._bg:
                canvas.restore_region(bg)
            self._bake_texts(canvas.get_renderer(), now)
        for bg in self._bg_text:
            canvas.restore_region(bg)
        for artist in self.animated:
            if artist.get_visible():
                self.fig.draw_artist(artist)
        # The texts changed: the whole regions; else only the panels (a third of the pixels).
        for box in self._boxes if baked else self._panel_boxes:
            canvas.blit(box)

    def _bake_texts(self, renderer, now) -> None:
        for artist in self.texts:
            artist.draw(renderer)
        self._bg_text = [self.fig.canvas.copy_from_bbox(b) for b in self._boxes]
        self._text_time, self._texts_dirty = now, False

    def _on_draw(self, event) -> None:
        """After a full draw: cache the background, then draw the animated artists on it."""
        if not self.blit:
            self.needs_full = False
            return
        if self.fig.canvas.is_saving():  # savefig: animated artists are drawn by matplotlib
            return
        self._bg = [self.fig.canvas.copy_from_bbox(b) for b in self._boxes]
        self.needs_full = False
        self._bake_texts(event.renderer, time.perf_counter())
        for artist in self.animated:
            if artist.get_visible():
                artist.draw(event.renderer)

    def savefig(self, path, **kwargs) -> None:
        """Saves the figure as it is on screen (animated artists included)."""
        animated = self.animated + self.texts
        for a in animated:
            a.set_animated(False)
        try:
            self.fig.savefig(path, **kwargs)
        finally:
            for a in animated:
                a.set_animated(self.blit)
            self.needs_full = True

    def close(self) -> None:
        plt.close(self.fig)


def settings_line(session) -> str:
    """One line saying how the fits step: gradient, optimizer, step size, coordinates, options."""
    s, h, flags = session.settings, session.hyper, session.flags
    grad = "exact gradients" if s.exact else f"Monte Carlo, K = {s.num_samples}"
    t = max(session.step(d) for d in s.directions)
    step = "SGD" if flags["optimizer"] == "sgd" else "Adam"
    step += f" lr {h['learning_rate']:.3g}"
    if h["decay"]:
        step += f"/(1+{h['decay']:.3g}t) = {h['learning_rate'] / (1 + h['decay'] * t):.3g}"
    parts = [grad, f"{step}, momentum {h['momentum']:.2f}"]
    coords = ", ".join(COORD_PLAIN[s.parameterization])
    parts.append(("natural gradient in " if flags["natural_gradient"] else "in ") + f"({coords})")
    if session.clip:
        parts.append(f"clip {session.clip_value:.3g}")
    if flags["fixed_scale"]:
        parts.append("σ fixed")
    return " | ".join(parts[:2]) + "\n" + " | ".join(parts[2:])


__all__ = ["ExplorerFigure", "interactive", "settings_line"]
