r"""The 1-D panels: the fit, the importance weights, the gradient rug, and their stack.

Each function draws into ``ax`` (a new figure when omitted) and returns the
`matplotlib.figure.Figure`. They take results (``q``, `divjax.Optima`,
`divjax.SurrogateAux`) and only evaluate densities on a grid of ``z`` and the
exact divergence at ``q`` (for the title).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from divjax.families import Gaussian
from divjax.plot import _eval
from divjax.plot.style import (
    NEGATIVE,
    OPTIMUM,
    POSITIVE,
    PURPLE,
    TARGET,
    as_float,
    new_axes,
)
from divjax.targets import GaussianMixture, as_target

LOG_CAP = 700.0  # exp() stays inside float64
WEIGHT_DECADES = 12.0  # the weights axis spans at most this many decades below its top


def require_1d(q, what: str) -> None:
    """`ValueError` unless ``q`` is a 1-D `divjax.Gaussian` (the 1-D panels' family)."""
    if getattr(q, "event_shape", None) != ():
        raise ValueError(f"{what} draws a 1-D Gaussian q; for d = 2 use divjax.plot.fit_panel2d")


def x_grid(p, *qs, num: int = 400) -> np.ndarray:
    """Points covering a 1-D ``p`` (a mixture) and each ``q`` within reason, ``(num,)``."""
    spans = [
        (
            float(q.loc) - 3.5 * math.exp(float(q.log_scale)),
            float(q.loc) + 3.5 * math.exp(float(q.log_scale)),
        )
        for q in qs
    ]
    if isinstance(p, GaussianMixture):
        m, s = as_float(p.locs), as_float(p.scales)
        lo, hi = float(np.min(m - 4 * s)), float(np.max(m + 4 * s))
        width = hi - lo
        for a, b in spans:  # widen for q, by at most the target's own width per side
            lo, hi = max(min(lo, a), lo - width), min(max(hi, b), hi + width)
    elif spans:
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    else:
        raise ValueError("x_grid needs a GaussianMixture target or at least one q")
    return np.linspace(lo, hi, num)


def target_density(p, x: np.ndarray) -> np.ndarray:
    """The normalized density of a 1-D target on ``x`` (a log density normalized on the grid)."""
    p = as_target(p, ())
    if isinstance(p, GaussianMixture):
        return np.exp(_eval.log_density(p, x, normalized=True))
    log_p = _eval.log_density(p, x)
    dens = np.exp(log_p - np.max(log_p[np.isfinite(log_p)], initial=0.0))
    mass = np.trapezoid(dens, x)
    return dens / mass if mass > 0 else dens


def log_q(q: Gaussian, x: np.ndarray) -> np.ndarray:
    """``log q(x)`` of a scalar `Gaussian` in float64."""
    loc, log_scale = float(q.loc), float(q.log_scale)
    z = (x - loc) * math.exp(-log_scale)
    return -0.5 * z**2 - log_scale - 0.5 * math.log(2 * math.pi)


def row(q, i: int):
    """Row ``i`` of a batched family."""
    return type(q)._make(np.asarray(a)[i] for a in q)


def draw_target(ax, p, x: np.ndarray) -> float:
    """``p`` on ``x`` (filled, normalized); returns its peak."""
    dens = target_density(p, x)
    ax.fill_between(x, dens, color=TARGET, alpha=0.12, lw=0)
    ax.plot(x, dens, color=TARGET, lw=1.8, label=r"target $p(z)$")
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("$z$")
    ax.set_ylabel("density")
    return float(np.max(dens))


def draw_optima(ax, x: np.ndarray, optima) -> None:
    """The optimal ``q*`` (dashed global, dotted local), drawn over ``q``."""
    n = 0 if optima is None else int(np.shape(optima.value)[0])
    for i in range(n):
        ls, what = ("--", "global") if i == 0 else (":", "local")
        lab = rf"optimal $q^*$ ({what})" if i <= 1 else None
        ax.plot(x, np.exp(log_q(row(optima.q, i), x)), ls=ls, color=OPTIMUM, lw=1.6, label=lab)


def optimum_peaks(optima) -> list[float]:
    """The peak density ``1 / (sqrt(2 pi) sigma)`` of each optimal ``q*``."""
    if optima is None:
        return []
    return list(np.exp(-as_float(optima.q.log_scale).reshape(-1)) / math.sqrt(2 * math.pi))


def density_top(p_peak: float, q_peaks) -> float:
    """The density axis' top: every curve's peak, at most 4 times p's."""
    return 1.08 * min(max([p_peak, *q_peaks]), 4.0 * p_peak)


def fit_panel(
    p,
    q: Gaussian,
    name: str = "kl_forward",
    *,
    alpha=None,
    optima=None,
    x: np.ndarray | None = None,
    title: str | None = None,
    ax=None,
):
    r"""Target ``p(z)``, the fit ``q_phi`` (purple), optimal ``q*`` (dashed global, dotted local).

    The title says what is minimized (mean- or mode-seeking) and the exact
    divergence at ``q`` in both directions where it exists: ``∞`` where it is
    infinite, ``≈ 10^k`` where it is finite but beyond the float range.

    Args:
      p: a 1-D target (`divjax.GaussianMixture`, or a log density: normalized on the grid).
      q: the fit, a scalar `divjax.Gaussian`.
      name, alpha: the divergence minimized.
      optima: `divjax.optimal_q`'s result for ``name`` (not drawn when omitted).
      x: the grid (default `x_grid`).
      title: replaces the first title line.
      ax: a matplotlib ``Axes``.
    """
    require_1d(q, "fit_panel")
    fig, ax = new_axes(ax)
    x = x_grid(p, q) if x is None else np.asarray(x, np.float64)
    p_peak = draw_target(ax, p, x)
    dens_q = np.exp(log_q(q, x))
    ax.plot(x, dens_q, color=PURPLE, lw=2.4, label=r"fitted $q_\phi$")
    draw_optima(ax, x, optima)
    peaks = [float(np.max(dens_q))] + optimum_peaks(optima)
    top = density_top(p_peak, peaks)
    ax.set_ylim(0, top)
    if np.max(dens_q) > top:
        ax.annotate(
            rf"$q_\phi$ peaks at {np.max(dens_q):.3g} $\uparrow$",
            (float(q.loc), top),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=8,
            color=PURPLE,
        )
    head = _eval.head(name, alpha) if title is None else title
    ax.set_title(f"{head}\n{_eval.values_line(name, p, q, alpha)}", fontsize=10)
    ax.legend(fontsize=8, loc="best", framealpha=0.8)
    return fig


class WeightArtists(NamedTuple):
    curve: Line2D
    stems: LineCollection
    dots: object
    above: object
    below: object


def weight_power(name: str) -> float:
    """2 for ``chi2_forward`` (its estimators weight by ``w^2``), 1 otherwise."""
    return 2.0 if name == "chi2_forward" else 1.0


def log_weight_curve(p, q: Gaussian, x: np.ndarray, power: float) -> np.ndarray:
    """``power * (log p~(x) - log q(x))`` on ``x`` (the same ``p~`` the estimators see)."""
    target = as_target(p, ())
    log_p = _eval.log_density(target, x)
    return power * (log_p - log_q(q, x))


def weights_ylim(log_w: np.ndarray, curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple:
    """``(lo, hi)`` in log space: the samples and each curve where its ``q`` has mass."""
    vals = [log_w[np.isfinite(log_w)]]
    for curve, lq in curves:
        mass = (lq > np.max(lq) - 8.0) & np.isfinite(curve)
        vals.append(curve[mass])
    vals = np.concatenate(vals)
    hi = float(np.max(vals)) if vals.size else 0.0
    lo = float(np.min(vals)) if vals.size else -1.0
    hi = min(hi, LOG_CAP - 2.0)
    lo = max(lo, hi - WEIGHT_DECADES * math.log(10.0))
    return lo - 1.0, hi + 1.0


def weight_artists(ax, symbol: str) -> WeightArtists:
    curve = ax.plot([], [], color=PURPLE, lw=1.4, alpha=0.7, label=symbol)[0]
    stems = ax.add_collection(LineCollection([], colors=TARGET, lw=0.8, alpha=0.6))
    dots = ax.scatter([], [], s=14, color=TARGET, zorder=3, label="samples")
    above = ax.scatter([], [], s=28, marker="^", color=TARGET, zorder=3, clip_on=False)
    below = ax.scatter([], [], s=28, marker="v", color=TARGET, zorder=3, clip_on=False)
    ax.set_yscale("log")
    return WeightArtists(curve, stems, dots, above, below)


def set_weights(art: WeightArtists, x, curve, xs, log_w, ylim) -> None:
    """Updates the artists: the curve ``exp(curve)``, stems and dots (clipped ones as triangles)."""
    lo, hi = ylim
    art.curve.set_data(x, np.exp(np.clip(curve, -LOG_CAP, LOG_CAP)))
    inside = np.isfinite(log_w) & (log_w >= lo) & (log_w <= hi)
    above, below = log_w > hi, ~inside & ~(log_w > hi)
    y = np.exp(np.clip(log_w, lo, hi))
    bottom = math.exp(lo)
    art.stems.set_segments([[(a, bottom), (a, b)] for a, b in zip(xs, y)])
    empty = np.zeros((0, 2))
    art.dots.set_offsets(np.column_stack([xs[inside], y[inside]]) if inside.any() else empty)
    art.above.set_offsets(np.column_stack([xs[above], y[above]]) if above.any() else empty)
    art.below.set_offsets(np.column_stack([xs[below], y[below]]) if below.any() else empty)
    art.curve.axes.set_ylim(math.exp(lo), math.exp(hi))


def weights_title(aux, power: float, head: str) -> str:
    k = int(np.shape(aux.log_weights)[0])
    ess = float(aux.ess_sq if power == 2 else aux.ess)
    what = r"ESS of $w^2$" if power == 2 else "ESS"
    return f"{head}, K = {k}: {what} = {ess:.2f} / {k}"


def weights_panel(
    p,
    q: Gaussian,
    aux,
    name: str = "kl_forward",
    *,
    x: np.ndarray | None = None,
    ylim: tuple[float, float] | None = None,
    title: str | None = None,
    ax=None,
):
    r"""Importance weights ``w = p~/q`` (``w^2`` for ``chi2_forward``) on a log axis, with the ESS.

    The curve is ``w(z)``; stems mark the ``K`` samples of ``aux`` (one
    `divjax.SurrogateAux`, K taken from it). Samples beyond the axis are drawn
    as triangles on its edge. The ESS is ``aux.ess`` (``aux.ess_sq`` for ``w^2``).

    Args:
      ylim: the axis range of the weights (default: the samples and the curve
        where ``q`` has mass, at most 12 decades).
    """
    require_1d(q, "weights_panel")
    fig, ax = new_axes(ax)
    power = weight_power(name)
    x = x_grid(p, q) if x is None else np.asarray(x, np.float64)
    curve = log_weight_curve(p, q, x, power)
    xs, log_w = as_float(aux.samples), power * as_float(aux.log_weights)
    symbol = r"$w^2 = (\tilde p/q_\phi)^2$" if power == 2 else r"$w = \tilde p/q_\phi$"
    art = weight_artists(ax, symbol)
    if ylim is None:
        ylim = weights_ylim(log_w, [(curve, log_q(q, x))])
    else:
        ylim = (math.log(ylim[0]), math.log(ylim[1]))
    set_weights(art, x, curve, xs, log_w, ylim)
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("$z$")
    ax.set_ylabel(symbol)
    ax.set_title(weights_title(aux, power, title or "importance weights"), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return fig


RUG_ROWS = {"loc": r"$\partial/\partial\mu$", "log_scale": r"$\partial/\partial\log\sigma$"}


def rug_segments(xs: np.ndarray, c: np.ndarray, y: float):
    """Segments and colours: blue where ``c > 0``, red where ``c < 0``, grey where 0 or NaN."""
    mag = np.abs(c)
    finite = np.isfinite(mag)
    top = np.max(mag[finite], initial=0.0)
    rel = np.where(finite, mag / top if top > 0 else 0.0, 1.0)
    half = (0.2 + 0.6 * np.nan_to_num(rel, nan=0.0)) / 2
    colors = np.where(c > 0, POSITIVE, np.where(c < 0, NEGATIVE, "0.6"))
    segs = [[(a, y - h), (a, y + h)] for a, h in zip(xs, half)]
    return segs, list(colors)


def rug_artists(ax) -> list[LineCollection]:
    lines = [ax.add_collection(LineCollection([], lw=1.5)) for _ in RUG_ROWS]
    ax.set_yticks(range(len(RUG_ROWS))[::-1], list(RUG_ROWS.values()))
    ax.set_ylim(-0.6, len(RUG_ROWS) + 0.2)  # room for the legend above the rows
    ax.set_xlabel("$z$")
    proxies = [Line2D([], [], color=c, lw=1.5) for c in (POSITIVE, NEGATIVE)]
    ax.legend(
        proxies,
        ["positive contribution", "negative contribution"],
        fontsize=7,
        loc="upper right",
        frameon=False,
        ncols=2,
        borderaxespad=0.1,
    )
    return lines


def set_rug(lines: list[LineCollection], aux) -> None:
    xs = as_float(aux.samples)
    for i, (field, coll) in enumerate(zip(RUG_ROWS, lines)):
        y = len(RUG_ROWS) - 1 - i
        segs, colors = rug_segments(xs, as_float(getattr(aux.contributions, field)), y)
        coll.set_segments(segs)
        coll.set_colors(colors)


def rug(aux, *, x: np.ndarray | None = None, title: str | None = None, ax=None):
    r"""The ``K`` samples as ticks, a row per parameter, blue/red by the sign of their share.

    Row ``d/d mu`` shows ``aux.contributions.loc``, row ``d/d log sigma``
    ``aux.contributions.log_scale`` (a 1-D `divjax.Gaussian`'s): sample ``i``
    is blue where its share of the estimate is positive, red where negative,
    grey where zero; tick height grows with ``|contribution|``.
    """
    if np.ndim(aux.samples) != 1:
        raise ValueError("rug draws the samples of a 1-D Gaussian q; for d = 2 use fit_panel2d")
    fig, ax = new_axes(ax, figsize=(6.0, 1.6))
    set_rug(rug_artists(ax), aux)
    xs = as_float(aux.samples)
    if x is not None:
        ax.set_xlim(x[0], x[-1])
    elif xs.size:
        pad = 0.05 * (np.ptp(xs) or 1.0)
        ax.set_xlim(xs.min() - pad, xs.max() + pad)
    k = xs.shape[0]
    ax.set_title(title or f"gradient shares of the K = {k} samples", fontsize=9)
    return fig


def fit_figure(
    p,
    q: Gaussian,
    name: str,
    aux,
    *,
    alpha=None,
    optima=None,
    x: np.ndarray | None = None,
    title: str | None = None,
    axes=None,
):
    """`fit_panel` over `weights_panel` over `rug`, sharing ``z``; ``axes`` three ``Axes``."""
    if axes is None:
        _, axes = plt.subplots(
            3, 1, figsize=(6.4, 6.4), sharex=True, height_ratios=[3, 2, 1.2], layout="constrained"
        )
    x = x_grid(p, q) if x is None else x
    fit_panel(p, q, name, alpha=alpha, optima=optima, x=x, title=title, ax=axes[0])
    weights_panel(p, q, aux, name, x=x, ax=axes[1])
    rug(aux, x=x, ax=axes[2])
    for a in axes[:-1]:
        a.set_xlabel("")
    return axes[0].figure
