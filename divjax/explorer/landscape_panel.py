r"""The live landscape panel: the divergence over ``q``'s two coordinates, optima, trajectories.

The surface (``log(1 + D)`` as a banded image with contour lines, the
infinite region hatched, the optima marked) is static and redrawn only when
a new `divjax.explorer.surface.Landscape` arrives; the trajectories, the
current ``q``'s and the hover readout are animated.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np

from divjax.coordinates import get_parameterization
from divjax.explorer.compute import DIRECTIONS
from divjax.explorer.panels import (
    COORD_PLAIN,
    COORD_SYMBOLS,
    INFINITE,
    LABELS,
    OPTIMUM,
    PLAIN,
    Q_STYLE,
    fmt_value,
)

NUM_LEVELS = 14
MAX_SHOWN = 1500  # trajectory points drawn per direction (the most recent ones)


def to_theta(parameterization: str, loc_log_scale) -> np.ndarray:
    """``(n, 2)`` ``(loc, log_scale)`` -> ``(n, 2)`` coordinates, in numpy.

    The maps of `divjax.coordinates` (``from_gaussian``), written out so a
    growing trajectory costs no compilation; the tests check they agree.
    """
    a = np.asarray(loc_log_scale, np.float64).reshape(-1, 2)
    mu, log_sigma = a[:, 0], a[:, 1]
    var = np.exp(2.0 * log_sigma)
    second = {
        "mu_log_sigma": (mu, log_sigma),
        "mu_sigma": (mu, np.exp(log_sigma)),
        "mu_tau": (mu, 1.0 / var),
        "natural": (mu / var, -0.5 / var),
        "expectation": (mu, mu**2 + var),
    }[parameterization]
    return np.column_stack(second)


def levels_of(values: np.ndarray) -> np.ndarray:
    """Contour levels: quantiles of the finite values (robust to huge values near the edges)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([0.0, 1.0])
    levels = np.unique(np.quantile(finite, np.linspace(0.0, 0.97, NUM_LEVELS)))
    return levels if levels.size >= 2 else np.array([levels[0], levels[0] + 1.0])


class LandscapePanel:
    """The landscape axes (and its colour bar)."""

    def __init__(self, ax, cax):
        self.ax, self.cax = ax, cax
        self.data = None
        self.image = None
        self._static = []  # contour sets replaced with each landscape
        self._markers = []  # the optima's markers
        self.paths, self.heads = {}, {}
        for d in DIRECTIONS:
            st = Q_STYLE[d]
            (self.paths[d],) = ax.plot([], [], color=st["color"], lw=1.6, zorder=6)
            (self.heads[d],) = ax.plot(
                [], [], st["marker"], ms=9, color=st["color"], mec="w", mew=1.2, zorder=8
            )
        (self.start,) = ax.plot([], [], "o", ms=7, color="k", mfc="w", zorder=7)
        self.text_hover = ax.text(
            0.0, -0.13, "", transform=ax.transAxes, fontsize=8.5, va="top", family="monospace"
        )
        self.text_pending = ax.text(
            0.5, 0.5, "", transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.3"
        )

    @property
    def animated(self) -> list:
        return [*self.paths.values(), *self.heads.values(), self.start, self.text_hover]

    def set_data(self, data, session, shown: str) -> None:
        """Draws a new surface (static artists; the figure then redraws in full)."""
        for artist in self._static:
            artist.remove()
        self._static = []
        self.data = data
        ax = self.ax
        t1, t2, values = data.theta1, data.theta2, data.values
        levels = levels_of(values)
        cmap = plt.get_cmap("Greys").with_extremes(bad=(1, 1, 1, 0), over="0.35")
        norm = mcolors.BoundaryNorm(levels, cmap.N, extend="max")
        shown_values = np.where(np.isinf(values), levels[-1] + 1.0, values)  # hatched below
        extent = (t1[0], t1[-1], t2[0], t2[-1])
        if self.image is None:
            self.image = ax.imshow(
                shown_values, origin="lower", extent=extent, aspect="auto", cmap=cmap, norm=norm,
                interpolation="bilinear", alpha=0.85, zorder=1,
            )  # fmt: skip
            self.colorbar = ax.figure.colorbar(self.image, cax=self.cax)
        else:
            self.image.set_data(shown_values)
            self.image.set_extent(extent)
            self.image.set_norm(norm)
            self.colorbar.update_normal(self.image)
        self.cax.tick_params(labelsize=7)
        self.colorbar.set_label(f"log(1 + {LABELS[data.name]})", fontsize=8)
        finite = np.where(np.isfinite(values), values, np.nan)
        if np.isfinite(finite).sum() > 3:
            self._static.append(
                ax.contour(t1, t2, finite, levels=levels, colors="0.3", linewidths=0.45, zorder=2)
            )
        if data.infinite.any():
            self._static.append(
                ax.contourf(
                    t1,
                    t2,
                    data.infinite.astype(float),
                    levels=[0.5, 1.5],
                    colors=[INFINITE],
                    hatches=["//"],
                    alpha=0.9,
                    zorder=3,
                )  # fmt: skip
            )
        self.mark_optima(session, shown)
        ax.set_xlim(t1[0], t1[-1])
        ax.set_ylim(t2[0], t2[-1])
        s1, s2 = COORD_SYMBOLS[data.parameterization]
        ax.set_xlabel(f"${s1}$", labelpad=1)
        ax.set_ylabel(f"${s2}$", labelpad=1)
        ax.set_title(f"{LABELS[data.name]} over $({s1}, {s2})$", fontsize=10)
        self.text_pending.set_text("")

    def mark_optima(self, session, shown: str) -> None:
        """The optima of every fitted direction: filled for ``shown``, hollow for the other."""
        for artist in self._markers:
            artist.remove()
        self._markers = []
        if self.data is None:
            return
        for d in session.settings.directions:
            optima, _ = session.current_optima(d)
            if optima is None:
                continue
            qs = np.column_stack([np.asarray(optima.q.loc), np.asarray(optima.q.log_scale)])
            theta = to_theta(self.data.parameterization, qs)
            filled = d == shown
            face = OPTIMUM if filled else "none"
            star = self.ax.plot(
                theta[:1, 0], theta[:1, 1], "*", ms=15, color=OPTIMUM, mfc=face, mec="k", zorder=5
            )[0]
            rest = self.ax.plot(
                theta[1:, 0], theta[1:, 1], "o", ms=8, color=OPTIMUM, mfc=face, mec="k", zorder=5
            )[0]
            self._markers += [star, rest]

    def pending(self, text: str) -> None:
        self.text_pending.set_text(text)

    def update(self, session) -> bool:
        """Trajectories and current ``q``'s in the landscape's coordinates."""
        if self.data is None:
            return False
        param = self.data.parameterization
        for i, d in enumerate(DIRECTIONS):
            on = d in session.settings.directions
            self.paths[d].set_visible(on)
            self.heads[d].set_visible(on)
            if not on:
                continue
            theta = to_theta(param, session.path(d)[-MAX_SHOWN:])
            now = to_theta(param, [[session.frame.loc[i], session.frame.log_scale[i]]])
            self.paths[d].set_data(theta[:, 0], theta[:, 1])
            self.heads[d].set_data(now[:, 0], now[:, 1])
        start = to_theta(param, [session.start])
        self.start.set_data(start[:, 0], start[:, 1])
        return False

    def theta_at(self, event) -> tuple[float, float] | None:
        """The coordinates under a mouse event, or None outside the axes."""
        if event.inaxes is not self.ax or event.xdata is None:
            return None
        return float(event.xdata), float(event.ydata)

    def to_gaussian(self, theta) -> tuple[float, float] | None:
        """``(loc, log_scale)`` at the landscape's ``theta`` (None: outside the domain)."""
        param = get_parameterization(self.data.parameterization)
        t = jnp.asarray(theta, jnp.result_type(float))
        if not bool(param.in_domain(t)):
            return None
        q = param.to_gaussian(t)
        loc, log_scale = float(q.loc), float(q.log_scale)
        return (loc, log_scale) if math.isfinite(loc) and math.isfinite(log_scale) else None

    def near_head(self, session, event, pixels: float = 12.0) -> str | None:
        """The fitted direction whose current ``q`` marker is under the mouse, or None."""
        best, best_d = None, pixels
        for d in session.settings.directions:
            xs, ys = self.heads[d].get_data()
            if len(xs) == 0:
                continue
            px = self.ax.transData.transform((xs[0], ys[0]))
            dist = math.hypot(px[0] - event.x, px[1] - event.y)
            if dist <= best_d:  # on a tie the later (drawn on top) wins
                best, best_d = d, dist
        return best

    def hover_text(self, theta, value: float) -> str:
        """The readout: the coordinates and the shown divergence there (interpolated)."""
        s1, s2 = COORD_PLAIN[self.data.parameterization]
        head = f"({s1}, {s2}) = ({theta[0]:.3g}, {theta[1]:.3g})"
        if math.isnan(value):
            return head + ": outside the coordinates' domain"
        return f"{head}:  {PLAIN[self.data.name]} = {fmt_value(value)}"


__all__ = ["LandscapePanel", "levels_of", "to_theta"]
