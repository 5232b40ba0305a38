r"""The divergence over a 1-D Gaussian's two parameters: filled contours, optima, infinity, paths.

`landscape` draws a `divjax.landscape.Surface` (computed by
`divjax.landscape.surface`) in any of the five coordinate systems of
`divjax.PARAMETERIZATIONS`: the mesh, the infinite region, the optima and the
paths are all mapped through the parameterization's ``from_gaussian``.
"""

from __future__ import annotations

import itertools

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from divjax.coordinates import get_parameterization
from divjax.families import Gaussian
from divjax.plot.style import INFINITE, OPTIMUM, as_float, label, new_axes

COORD_LABELS = {
    "mu_log_sigma": (r"loc $\mu$", r"log scale $\log\sigma$"),
    "mu_sigma": (r"loc $\mu$", r"scale $\sigma$"),
    "mu_tau": (r"loc $\mu$", r"precision $\tau$"),
    "natural": (r"natural $\eta_1$", r"natural $\eta_2$"),
    "expectation": (r"mean $m_1$", r"second moment $m_2$"),
}
PATH_COLORS = ("#1B9E77", "#2C7FB8", "#E7298A", "#66A61E", "#A6761D", "#7570B3", "#E6AB02")
NUM_LEVELS = 16


def to_coords(param, loc, log_scale) -> tuple[np.ndarray, np.ndarray]:
    """``(loc, log_scale)`` arrays -> ``param``'s two coordinates, same shape."""
    loc, log_scale = as_float(loc), as_float(log_scale)
    theta = as_float(param.from_gaussian(Gaussian._make((loc, log_scale))))
    return theta[..., 0], theta[..., 1]


def levels_of(z: np.ndarray) -> np.ndarray:
    """Contour levels at quantiles of the finite values (dense where the surface is low)."""
    finite = z[np.isfinite(z)]
    levels = np.unique(np.quantile(finite, np.linspace(0.0, 0.97, NUM_LEVELS)))
    return levels if levels.size >= 2 else np.array([levels[0], levels[0] + 1.0])


def draw_surface(ax, surface, param, alpha=None):
    """Filled contours of the finite values (colourbar), the infinite region hatched."""
    z = as_float(surface.values)
    finite = np.isfinite(z)
    handles = []
    gx, gy = to_coords(param, surface.loc, surface.log_scale)
    if finite.any():
        levels = levels_of(z)
        zf = np.where(finite, z, 10 * abs(levels[-1]) + 1.0)  # top colour; hatched below
        cs = ax.contourf(gx, gy, zf, levels=levels, cmap="Greys", extend="max", alpha=0.8)
        ax.contour(gx, gy, zf, levels=levels, colors="0.35", linewidths=0.4)
        cbar = ax.figure.colorbar(cs, cax=ax.inset_axes([1.03, 0.0, 0.045, 1.0]))
        sym = label(surface.name, alpha)
        cbar.set_label(f"log(1 + {sym})" if surface.log else sym)
    else:
        ax.text(
            0.5,
            0.5,
            "infinite everywhere in this window",
            transform=ax.transAxes,
            ha="center",
            va="center",
        )
    inf = np.asarray(surface.infinite, bool)
    if inf.any():
        fx, fy = to_coords(param, surface.fine_loc, surface.fine_log_scale)
        ax.contourf(
            fx,
            fy,
            inf.astype(float),
            levels=[0.5, 1.5],
            colors=[INFINITE],
            hatches=["//"],
            alpha=0.9,
        )
        sym = label(surface.name, alpha)
        handles.append(Patch(facecolor=INFINITE, hatch="//", label=rf"{sym} = $\infty$"))
    return handles, (gx, gy)


def draw_optima(ax, optima, param) -> None:
    ol, os_ = (np.atleast_1d(a) for a in to_coords(param, optima.q.loc, optima.q.log_scale))
    ax.plot(ol[:1], os_[:1], "*", color=OPTIMUM, ms=16, mec="k", zorder=5, label="global optimum")
    if ol.size > 1:
        ax.plot(ol[1:], os_[1:], "o", color=OPTIMUM, ms=8, mec="k", zorder=5, label="local optimum")


def inside(x, y, box) -> np.ndarray:
    (x0, x1), (y0, y1) = box
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def draw_paths(ax, trajectories, param, box, colors) -> list:
    """Each path (leaves ``(T,)`` or ``(S, T)``): a line per seed, a start circle, an end cross."""
    palette = itertools.cycle(PATH_COLORS)
    for name, path in trajectories.items():
        exact = "exact" in name
        color = colors.get(name, "k" if exact else next(palette))
        px, py = (np.atleast_2d(a) for a in to_coords(param, path.loc, path.log_scale))
        leaves = int(np.sum(~np.all(inside(px, py, box), axis=-1)))
        text = name + (f" ({leaves}/{px.shape[0]} leave the window)" if leaves else "")
        for i in range(px.shape[0]):
            ax.plot(
                px[i],
                py[i],
                color=color,
                lw=2.0 if exact else 1.1,
                alpha=0.95 if exact else 0.7,
                zorder=5 if exact else 4,
                label=text if i == 0 else None,
            )
            ax.plot(px[i, -1], py[i, -1], "x", color=color, ms=7, mew=2, zorder=6)
        ax.plot(px[:, 0], py[:, 0], "o", color="k", mfc="w", ms=6, zorder=6)
    if not trajectories:
        return []
    return [
        Line2D([], [], marker="o", color="k", mfc="w", ls="", label="start"),
        Line2D([], [], marker="x", color="0.3", ls="", mew=2, label="end"),
    ]


def landscape(
    surface,
    *,
    optima=None,
    trajectories=None,
    parameterization="mu_log_sigma",
    colors=None,
    alpha=None,
    title: str | None = None,
    ax=None,
):
    r"""A divergence surface as filled contours, with its optima, infinite region and fit paths.

    Args:
      surface: a `divjax.landscape.Surface` (``log(1 + D)`` where ``surface.log``).
      optima: `divjax.optimal_q`'s result: the global optimum a star, local ones circles.
      trajectories: ``{label: Gaussian}`` paths with leaves ``(T,)`` or ``(S, T)``
        (`divjax.paths.fit_paths`); a label containing ``"exact"`` is drawn
        black. Paths leaving the window are cut at its edge and counted in the legend.
      parameterization: the coordinates drawn (a name in `divjax.PARAMETERIZATIONS`).
      colors: ``{label: colour}`` for the paths.
      alpha: the divergence's order, for its label.
      title: replaces the default title.
      ax: a matplotlib ``Axes``.
    """
    param = get_parameterization(parameterization)
    fig, ax = new_axes(ax, figsize=(5.5, 4.2))
    handles, (gx, gy) = draw_surface(ax, surface, param, alpha)
    ok = np.isfinite(gx) & np.isfinite(gy)
    box = ((gx[ok].min(), gx[ok].max()), (gy[ok].min(), gy[ok].max()))
    if optima is not None:
        draw_optima(ax, optima, param)
    handles += draw_paths(ax, dict(trajectories or {}), param, box, dict(colors or {}))
    ax.set_xlim(*box[0])
    ax.set_ylim(*box[1])
    xlabel, ylabel = COORD_LABELS[param.name]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    coords = f"$({xlabel.split('$')[1]}, {ylabel.split('$')[1]})$"
    ax.set_title(title or f"{label(surface.name, alpha)} over {coords}", fontsize=10)
    h, _ = ax.get_legend_handles_labels()
    ax.legend(
        handles=h + handles,
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncols=2,
        frameon=False,
    )
    return fig
