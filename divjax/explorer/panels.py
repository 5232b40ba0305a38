r"""The explorer's panels: artists made once, updated in place every frame.

Each panel owns its axes' artists and has ``update(session)``, returning
whether its axes' limits changed (the figure then redraws in full instead of
blitting), and ``animated``, the artists that change every frame.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from divjax.explorer.compute import DIRECTIONS
from divjax.explorer.options import mixture_arrays

PURPLE = "#7B2D8E"
POSITIVE = "#2166AC"
NEGATIVE = "#B2182B"
TARGET = "#333333"
OPTIMUM = "#E08214"
INFINITE = "#F4A6A6"
Q_STYLE = {  # forward and reverse q: one purple, two line styles
    "forward": {"color": "#A05DB8", "ls": "-", "marker": "o"},
    "reverse": {"color": PURPLE, "ls": (0, (5, 1.5)), "marker": "s"},
}
LABELS = {
    "kl_forward": r"$\mathrm{KL}(p\,\|\,q)$",
    "kl_reverse": r"$\mathrm{KL}(q\,\|\,p)$",
    "chi2_forward": r"$\chi^2(p\,\|\,q)$",
    "chi2_reverse": r"$\chi^2(q\,\|\,p)$",
}
PLAIN = {
    "kl_forward": "KL(p||q)",
    "kl_reverse": "KL(q||p)",
    "chi2_forward": "chi2(p||q)",
    "chi2_reverse": "chi2(q||p)",
}
SEEKING = {"forward": "mean-seeking", "reverse": "mode-seeking"}
SHORT = {"forward": "fwd", "reverse": "rev"}
COORD_SYMBOLS = {
    "mu_log_sigma": (r"\mu", r"\log\sigma"),
    "mu_sigma": (r"\mu", r"\sigma"),
    "mu_tau": (r"\mu", r"\tau"),
    "natural": (r"\eta_1", r"\eta_2"),
    "expectation": (r"m_1", r"m_2"),
}
COORD_PLAIN = {
    "mu_log_sigma": ("μ", "log σ"),
    "mu_sigma": ("μ", "σ"),
    "mu_tau": ("μ", "τ"),
    "natural": ("η₁", "η₂"),
    "expectation": ("m₁", "m₂"),
}
MAX_OPTIMA_SHOWN = 4  # per direction
_CAP = 80.0  # log-weights are clipped to +-_CAP before exp (inside float32's range)


def fmt_value(v: float) -> str:
    """A divergence value as text (``inf`` for infinite, 4 significant digits)."""
    return "inf" if math.isinf(v) else ("nan" if math.isnan(v) else f"{v:.4g}")


def gaussian_density(x: np.ndarray, loc: float, scale: float) -> np.ndarray:
    z = (x - loc) / scale
    return np.exp(-0.5 * z * z) / (scale * math.sqrt(2 * math.pi))


def mode_heights(target, locs: np.ndarray) -> np.ndarray:
    """The normalized mixture density at ``locs`` (the mode handles' heights), in numpy."""
    w, m, s = mixture_arrays(target)
    z = (np.asarray(locs, np.float64)[:, None] - m) / s
    return np.sum(w * np.exp(-0.5 * z**2) / (s * math.sqrt(2 * math.pi)), axis=1)


class FitPanel:
    """The target, both ``q``'s with their handles, the optima, and the values."""

    def __init__(self, ax):
        self.ax = ax
        self.fill_p = ax.fill_between([0.0, 1.0], [0.0, 0.0], color=TARGET, alpha=0.12, lw=0)
        (self.line_p,) = ax.plot([], [], color=TARGET, lw=1.8, label=r"target $p(z)$")
        self.lines_q, self.peaks, self.shoulders, self.optima = {}, {}, {}, {}
        for d in DIRECTIONS:
            st = Q_STYLE[d]
            (self.lines_q[d],) = ax.plot([], [], color=st["color"], ls=st["ls"], lw=2.4)
            (self.peaks[d],) = ax.plot(
                [], [], st["marker"], ms=8, color=st["color"], mec="w", zorder=7
            )
            (self.shoulders[d],) = ax.plot([], [], "D", ms=6, color=st["color"], mec="w", zorder=7)
            self.optima[d] = [
                ax.plot([], [], ls="--" if i == 0 else ":", color=OPTIMUM, lw=1.5)[0]
                for i in range(MAX_OPTIMA_SHOWN)
            ]
        (self.modes,) = ax.plot([], [], "o", ms=8, color=TARGET, mec="w", zorder=6)
        self.text_values = ax.text(
            0.99, 0.97, "", transform=ax.transAxes, ha="right", va="top", fontsize=9
        )
        ax.set_ylabel("density")
        ax.tick_params(labelbottom=False)
        self._ymax = None

    def legend(self, session) -> None:
        """The legend for the fitted directions (static: drawn in the background)."""
        handles = [self.line_p]
        labels = [r"target $p(z)$"]
        for d in session.settings.directions:
            st = Q_STYLE[d]
            handles.append(Line2D([], [], color=st["color"], ls=st["ls"], lw=2.4))
            labels.append(rf"$q_\phi$ {SHORT[d]} ({SEEKING[d]})")
        handles += [Line2D([], [], ls=ls, color=OPTIMUM, lw=1.5) for ls in ("--", ":")]
        labels += ["$q^*$ global", "$q^*$ local"]
        self.ax.legend(handles, labels, fontsize=8, loc="upper left", frameon=False)

    @property
    def animated(self) -> list:
        out = [self.fill_p, self.line_p, self.modes]
        for d in DIRECTIONS:
            out += [*self.optima[d], self.lines_q[d], self.peaks[d], self.shoulders[d]]
        return out + [self.text_values]

    def update(self, session) -> bool:
        frame, x = session.frame, session.x.astype(np.float64)
        dens_p = np.asarray(frame.dens_p, np.float64)
        self.line_p.set_data(x, dens_p)
        self.fill_p.set_verts([np.column_stack([np.r_[x[0], x, x[-1]], np.r_[0, dens_p, 0]])])
        _, m, _ = mixture_arrays(session.target)
        self.modes.set_data(m, mode_heights(session.target, m))
        peaks = [float(np.max(dens_p))]
        texts = []
        for i, d in enumerate(DIRECTIONS):
            on = d in session.settings.directions
            q = session.q(d)
            loc, scale = float(q.loc), math.exp(float(q.log_scale))
            peak = 1.0 / (scale * math.sqrt(2 * math.pi))
            self.lines_q[d].set_data(x, frame.dens_q[i])
            self.peaks[d].set_data([loc], [peak])
            self.shoulders[d].set_data([loc + scale], [peak * math.exp(-0.5)])
            self._draw_optima(session, d, x, on)
            for a in (self.lines_q[d], self.peaks[d], self.shoulders[d]):
                a.set_visible(on)
            if on:
                peaks.append(peak)
                name = session.settings.name(d)
                texts.append(f"{PLAIN[name]} = {fmt_value(session.value(d))}")
        self.text_values.set_text("    ".join(texts))
        return self._limits(peaks)

    def _draw_optima(self, session, d, x, on) -> None:
        optima, stale = session.current_optima(d)
        n = 0 if optima is None or not on else min(int(optima.value.shape[0]), MAX_OPTIMA_SHOWN)
        for k, line in enumerate(self.optima[d]):
            if k < n:
                loc, log_scale = float(optima.q.loc[k]), float(optima.q.log_scale[k])
                line.set_data(x, gaussian_density(x, loc, math.exp(log_scale)))
                line.set_alpha(0.35 if stale else 1.0)
            line.set_visible(k < n)

    def _limits(self, peaks) -> bool:
        """Grows the y-range with headroom, shrinks only far below: few full redraws."""
        pmax = peaks[0]
        top = 1.1 * max(pmax, min(max(peaks), 3.0 * pmax))
        if self._ymax is not None and 0.35 * self._ymax < top <= self._ymax:
            return False
        self._ymax = max(top, min(1.3 * top, 3.3 * pmax))
        self.ax.set_ylim(0, self._ymax)
        return True


class WeightsPanel:
    r"""``w = p~/q`` (``w^2`` for ``chi2_forward``) on a log axis with one draw's samples.

    Shows the forward fit's draw when forward is fitted, else the reverse one's.
    """

    def __init__(self, ax):
        self.ax = ax
        (self.line_w,) = ax.plot([], [], color=PURPLE, lw=1.4, alpha=0.7)
        self.stems = ax.add_collection(LineCollection([], color=TARGET, lw=0.8, alpha=0.6))
        self.dots = ax.scatter([], [], s=14, color=TARGET, zorder=3)
        self.text_ess = ax.text(
            1.0, 1.03, "", transform=ax.transAxes, ha="right", va="bottom", fontsize=9
        )
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 1e3)
        ax.tick_params(labelbottom=False)

    @staticmethod
    def focus(session) -> str:
        return "forward" if "forward" in session.settings.directions else "reverse"

    def label(self, session) -> None:
        """The title and the y label (static)."""
        d = self.focus(session)
        squared = session.settings.name(d) == "chi2_forward"
        symbol = r"$w^2 = (\tilde p/q_\phi)^2$" if squared else r"$w = \tilde p/q_\phi$"
        self.ax.set_ylabel(symbol)
        self.ax.set_title(
            f"importance weights of one draw at $q_\\phi$ {SHORT[d]}", fontsize=9.5, loc="left"
        )
        self.line_w.set_color(Q_STYLE[d]["color"])

    @property
    def animated(self) -> list:
        return [self.line_w, self.stems, self.dots, self.text_ess]

    def update(self, session) -> bool:
        frame, x = session.frame, session.x.astype(np.float64)
        d = self.focus(session)
        i = DIRECTIONS.index(d)
        squared = session.settings.name(d) == "chi2_forward"
        curve = np.clip(np.asarray(frame.log_w[i], np.float64), -_CAP, _CAP)
        log_w = np.clip(
            (2.0 if squared else 1.0) * np.asarray(frame.aux.log_weights[i], np.float64),
            -_CAP,
            _CAP,
        )
        dens_q = np.asarray(frame.dens_q[i])
        in_q = dens_q > np.max(dens_q) * math.exp(-8.0)
        shown = np.concatenate([log_w[np.isfinite(log_w)], curve[in_q & np.isfinite(curve)]])
        hi = float(np.max(shown)) + 1.0 if shown.size else 1.0
        lo = float(np.min(shown)) - 1.0 if shown.size else -1.0
        cur_lo, cur_hi = np.log(self.ax.get_ylim())
        changed = hi > cur_hi or hi < cur_hi - 10.0 or (lo < cur_lo and cur_hi - cur_lo < 34.0)
        if changed:
            self.ax.set_ylim(math.exp(max(lo, hi - 32.0) - 3.0), math.exp(hi + 3.0))
        y0, y1 = self.ax.get_ylim()
        self.line_w.set_data(x, np.exp(curve))
        xs = np.asarray(frame.aux.samples[i], np.float64)
        ws = np.clip(np.exp(log_w), y0, y1)
        self.stems.set_segments(
            np.stack([np.column_stack([xs, np.full_like(xs, y0)]), np.column_stack([xs, ws])], 1)
        )
        self.dots.set_offsets(np.column_stack([xs, ws]))
        k = session.settings.num_samples
        ess = float((frame.aux.ess_sq if squared else frame.aux.ess)[i])
        est = session.settings.estimators[i]
        self.text_ess.set_text(
            f"{est}, K = {k}: ESS{' of w²' if squared else ''} = {ess:.2f} / {k}"
        )
        return changed


class RugPanel:
    r"""Each sample's signed share of the gradient, one row per (direction, coordinate).

    Blue: the sample pushes the gradient's component up; red: down. The tick
    height grows with the share's size. Shares are in the chosen coordinates.
    """

    def __init__(self, ax):
        self.ax = ax
        self.lines = ax.add_collection(LineCollection([], lw=1.5))
        ax.set_xlabel("$z$")
        ax.legend(
            [Line2D([], [], color=POSITIVE), Line2D([], [], color=NEGATIVE)],
            ["positive", "negative"],
            fontsize=7, loc="lower right", frameon=False, ncols=2, borderaxespad=0.05,
            bbox_to_anchor=(1.0, 1.0),
        )  # fmt: skip

    def rows(self, session) -> list[tuple[int, int, str]]:
        """``(direction index, coordinate, label)`` per row, top to bottom."""
        sym = COORD_SYMBOLS[session.settings.parameterization]
        return [
            (DIRECTIONS.index(d), j, rf"{SHORT[d]} $\partial/\partial {sym[j]}$")
            for d in session.settings.directions
            for j in (0, 1)
        ]

    def label(self, session) -> None:
        rows = self.rows(session)
        n = len(rows)
        self.ax.set_yticks(range(n - 1, -1, -1), [r[2] for r in rows], fontsize=8)
        self.ax.set_ylim(-0.6, n - 0.4)
        self.ax.set_title(
            "gradient rug: each sample's signed share (blue = positive, red = negative)",
            fontsize=9, loc="left",
        )  # fmt: skip

    @property
    def animated(self) -> list:
        return [self.lines]

    def update(self, session) -> bool:
        frame = session.frame
        segs, colors = [], []
        rows = self.rows(session)
        for r, (i, j, _) in enumerate(rows):
            y = len(rows) - 1 - r
            xs = np.asarray(frame.aux.samples[i], np.float64)
            c = np.asarray(frame.aux.contributions[i][:, j], np.float64)
            h = rug_heights(c) / 2
            segs.append(np.stack([np.column_stack([xs, y - h]), np.column_stack([xs, y + h])], 1))
            colors += [sign_color(v) for v in c]
        self.lines.set_segments(np.concatenate(segs) if segs else [])
        self.lines.set_color(colors)
        return False


def rug_heights(c: np.ndarray) -> np.ndarray:
    """Tick heights in ``[0.2, 0.8]`` growing with ``|c|`` (infinite shares: the tallest)."""
    mag = np.where(np.isfinite(c), np.abs(c), np.inf)
    fin = mag[np.isfinite(mag)]
    top = np.max(fin) if fin.size and np.max(fin) > 0 else 1.0
    return 0.2 + 0.6 * np.minimum(mag / top, 1.0)


def sign_color(v: float) -> str:
    """`POSITIVE` (blue) for a positive share, `NEGATIVE` (red) for a negative one, grey for 0."""
    return POSITIVE if v > 0 else NEGATIVE if v < 0 else "0.6"


__all__ = ["FitPanel", "RugPanel", "WeightsPanel", "fmt_value", "rug_heights", "sign_color"]
