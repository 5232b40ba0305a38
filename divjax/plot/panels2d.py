r"""A fit in two dimensions: contours of ``p`` and ``q``, weighted samples, ``q*`` ellipses.

For ``d = 2`` targets (a `divjax.GaussianMixture`, or a log density) and any
family (`divjax.DiagGaussian`, `divjax.FullRankGaussian`,
`divjax.MixtureGaussian`). Contours are drawn at the levels that enclose 50%,
90% and 99% of each density's mass on the grid, so an unnormalized log density
is drawn the same way as a normalized one.
"""

from __future__ import annotations

import math

import matplotlib.colors as mcolors
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse

from divjax.families import mean_and_log_sd
from divjax.plot import _eval
from divjax.plot.panels import row, weight_power
from divjax.plot.style import OPTIMUM, PURPLE, TARGET, as_float, new_axes
from divjax.targets import GaussianMixture, as_target

MASSES = (0.5, 0.9, 0.99)


def _box(means: np.ndarray, sds: np.ndarray, width: float) -> np.ndarray:
    """``[[lo1, lo2], [hi1, hi2]]`` around points ``(n, 2)``, ``width`` sds either side."""
    return np.stack([np.min(means - width * sds, 0), np.max(means + width * sds, 0)])


def window2d(p, *qs, samples=None) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((z1_lo, z1_hi), (z2_lo, z2_hi))`` covering ``p``, each ``q`` and the samples.

    A mixture target's box (3.5 marginal sds around each component) grows for
    ``q`` and the samples by at most its own size per side.
    """
    boxes = []
    for q in qs:
        m, s = (as_float(a).reshape(-1, 2) for a in mean_and_log_sd(q))
        boxes.append(_box(m, np.exp(s), 3.5))
    if samples is not None and np.size(samples):
        pts = as_float(samples).reshape(-1, 2)
        boxes.append(_box(pts[np.all(np.isfinite(pts), -1)], np.zeros(2), 0.0))
    if isinstance(p, GaussianMixture):
        box = _box(as_float(p.locs), as_float(p.scales), 3.5)
        size = box[1] - box[0]
        for b in boxes:
            box = np.stack(
                [
                    np.maximum(np.minimum(box[0], b[0]), box[0] - size),
                    np.minimum(np.maximum(box[1], b[1]), box[1] + size),
                ]
            )
    elif boxes:
        box = np.stack([np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)])
    else:
        raise ValueError("window2d needs a GaussianMixture target or at least one q")
    return (float(box[0, 0]), float(box[1, 0])), (float(box[0, 1]), float(box[1, 1]))


def mesh(window, num: int):
    """``(Z1, Z2, points (num * num, 2))`` over ``window``."""
    z1, z2 = np.meshgrid(np.linspace(*window[0], num), np.linspace(*window[1], num))
    return z1, z2, np.stack([z1.ravel(), z2.ravel()], -1)


def log_density(dist, points: np.ndarray) -> np.ndarray:
    """``log p~`` of a target or ``log q`` of a family at ``points (n, 2)``, float64."""
    if hasattr(dist, "family"):
        return _eval.log_density(dist, points)
    return _eval.log_density(as_target(dist, (2,)), points)


def mass_levels(log_dens: np.ndarray, masses=MASSES) -> np.ndarray:
    """Density levels (ascending, relative to the peak) enclosing ``masses`` of the grid's mass."""
    d = np.exp(log_dens - np.max(log_dens[np.isfinite(log_dens)]))
    d = np.where(np.isfinite(d), d, 0.0).ravel()
    order = np.sort(d)[::-1]
    cum = np.cumsum(order) / np.sum(order)
    levels = [order[min(np.searchsorted(cum, m), order.size - 1)] for m in masses]
    return np.unique(np.asarray(levels))


def density_contours(ax, z1, z2, log_dens, *, filled: bool, color: str, lw: float = 1.2):
    """Contours of ``exp(log_dens)`` (relative to its peak) at the `MASSES` levels."""
    rel = np.exp(log_dens - np.max(log_dens[np.isfinite(log_dens)]))
    rel = np.where(np.isfinite(rel), rel, 0.0).reshape(z1.shape)
    levels = mass_levels(log_dens)
    if filled:
        ax.contourf(z1, z2, rel, levels=np.append(levels, 1.01), colors=[color], alpha=0.1)
        ax.contourf(z1, z2, rel, levels=[levels[-1], 1.01], colors=[color], alpha=0.12)
    ax.contour(z1, z2, rel, levels=levels, colors=[color], linewidths=lw)


def ellipse(mean, cov, *, num_sds: float = 2.0, **kw) -> Ellipse:
    """The ``num_sds``-standard-deviation ellipse of a 2-D Gaussian (a matplotlib patch)."""
    vals, vecs = np.linalg.eigh(as_float(cov))
    angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
    w, h = 2 * num_sds * np.sqrt(np.maximum(vals[::-1], 0.0))
    return Ellipse(tuple(as_float(mean)), w, h, angle=angle, fill=False, **kw)


def draw_optima(ax, optima) -> None:
    """Each optimal ``q*`` as its 90%-mass ellipse (dashed global, dotted local) and centre.

    The 90% ellipse is where ``q``'s middle contour lies once ``q`` is at ``q*``.
    """
    r90 = math.sqrt(-2.0 * math.log(1.0 - 0.9))
    for i in range(int(np.shape(optima.value)[0])):
        qi = row(optima.q, i)
        ls = "--" if i == 0 else ":"
        patch = ellipse(
            qi.mean(), qi.covariance(), num_sds=r90, ls=ls, ec=OPTIMUM, lw=1.8, zorder=4
        )
        ax.add_patch(patch)
        ax.plot(
            *as_float(qi.mean()), "*" if i == 0 else "o", color=OPTIMUM, mec="k", ms=9, zorder=5
        )


def draw_samples(ax, aux, power: float):
    """``aux``'s samples; marker area and colour by their normalized weight (of ``w^power``)."""
    log_w = power * as_float(aux.log_weights)
    finite = np.isfinite(log_w)
    w = np.zeros_like(log_w)
    if finite.any():
        e = np.exp(log_w[finite] - np.max(log_w[finite]))
        w[finite] = e / e.sum()
    pts = as_float(aux.samples)
    sizes = 10.0 + 190.0 * w / max(float(w.max()), 1e-300)
    top = max(float(w.max()), 1e-300)
    norm = mcolors.LogNorm(vmin=max(float(w[w > 0].min(initial=top)), top * 1e-8), vmax=top)
    if norm.vmin >= norm.vmax:  # equal weights
        norm = mcolors.LogNorm(vmin=top / 2, vmax=top * 2)
    sc = ax.scatter(
        pts[:, 0],
        pts[:, 1],
        s=sizes,
        c=np.maximum(w, norm.vmin),
        cmap="viridis",
        norm=norm,
        edgecolors="k",
        linewidths=0.4,
        zorder=6,
    )
    symbol = r"$w^2$" if power == 2 else r"$w$"
    cax = ax.inset_axes([1.03, 0.0, 0.04, 1.0])  # as tall as the (equal-aspect) axes
    cbar = ax.figure.colorbar(sc, cax=cax)
    cbar.set_label(f"normalized weight of {symbol} (also size)", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    return sc


def fit_panel2d(
    p,
    q,
    name: str | None = None,
    *,
    aux=None,
    alpha=None,
    optima=None,
    window=None,
    num: int = 100,
    title: str | None = None,
    ax=None,
):
    r"""A 2-D fit: contours of ``p`` (grey) and ``q`` (purple), ``aux``'s weighted samples, ``q*``.

    Args:
      p: a ``d = 2`` target (`divjax.GaussianMixture`, `divjax.LogDensity` or a callable).
      q: the fit, any family with ``event_shape (2,)``.
      name, alpha: the divergence minimized: the title gives it (both
        directions) at ``q`` where it is exact, and ``chi2_forward`` weights by ``w^2``.
      aux: one `divjax.SurrogateAux` at ``q``: its samples, area and colour by
        self-normalized weight, and the ESS in the title.
      optima: `divjax.optimal_q`'s result: 90%-mass ellipses, dashed global, dotted local.
      window: ``((lo, hi), (lo, hi))`` (default `window2d`).
      num: grid points per axis.
    """
    if getattr(q, "event_shape", None) != (2,):
        raise ValueError("fit_panel2d draws a q with event_shape (2,); for 1-D use fit_panel")
    fig, ax = new_axes(ax, figsize=(5.2, 4.4))
    if window is None:
        extra = () if optima is None else (optima.q,)
        window = window2d(p, q, *extra, samples=None if aux is None else aux.samples)
    z1, z2, pts = mesh(window, num)
    density_contours(ax, z1, z2, log_density(p, pts), filled=True, color=TARGET)
    density_contours(ax, z1, z2, log_density(q, pts), filled=False, color=PURPLE, lw=1.8)
    if optima is not None:
        draw_optima(ax, optima)
    power = weight_power(name or "")
    if aux is not None:
        draw_samples(ax, aux, power)
    head = title if title is not None else (_eval.head(name, alpha) if name else "fit")
    lines = [head] + ([_eval.values_line(name, p, q, alpha)] if name else [])
    lines += [] if aux is None else [_ess_line(aux, power)]
    _frame(ax, window, "\n".join(lines), _handles(optima, aux))
    return fig


def _ess_line(aux, power: float) -> str:
    k, ess = int(np.shape(aux.log_weights)[0]), float(aux.ess_sq if power == 2 else aux.ess)
    return f"K = {k} samples, ESS{' of $w^2$' if power == 2 else ''} = {ess:.2f} / {k}"


def _handles(optima, aux) -> list[Line2D]:
    handles = [
        Line2D([], [], color=TARGET, label=r"target $p$"),
        Line2D([], [], color=PURPLE, lw=1.8, label=r"fitted $q_\phi$"),
    ]
    if optima is not None:
        handles.append(Line2D([], [], color=OPTIMUM, ls="--", label=r"optimal $q^*$ (global)"))
        if np.shape(optima.value)[0] > 1:
            handles.append(Line2D([], [], color=OPTIMUM, ls=":", label=r"optimal $q^*$ (local)"))
    if aux is not None:
        handles.append(Line2D([], [], ls="", marker="o", mfc="0.6", mec="k", label="samples"))
    return handles


def _frame(ax, window, title: str, handles) -> None:
    """Equal-aspect window, labels, title, and the legend below the axes."""
    ax.set_xlim(*window[0])
    ax.set_ylim(*window[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title, fontsize=9)
    ncols = min(len(handles), 3)
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncols=ncols,
        frameon=False,
    )
