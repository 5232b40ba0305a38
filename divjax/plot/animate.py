r"""A GIF of a fit from precomputed frames: the `divjax.plot.fit_figure` stack, updated in place.

The figure is laid out once; each frame only moves the data of its artists
(``q``'s curve, the weights, the rug, the titles), so a 30-frame GIF costs
about a second of drawing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import matplotlib.pyplot as plt
import numpy as np

from divjax.plot import _text
from divjax.plot.panels import (
    density_top,
    draw_target,
    log_q,
    log_weight_curve,
    optimum_peaks,
    row,
    rug_artists,
    set_rug,
    set_weights,
    weight_artists,
    weight_power,
    weights_title,
    weights_ylim,
    x_grid,
)
from divjax.plot.style import PURPLE, as_float, label


class Frames(NamedTuple):
    """What the GIF shows, computed beforehand (e.g. `divjax.paths.fit_paths` and `draw_aux`).

    Attributes:
      name: the divergence minimized; ``estimator``: the one whose draws are shown.
      steps: ``(T,)`` the optimizer step of each frame.
      q: a `divjax.Gaussian` with leaves ``(T,)``: the fit at each frame.
      aux: a `divjax.SurrogateAux` with leaves ``(T, K, ...)``: one draw at each frame's ``q``.
      alpha: the divergence's order, if any.
      diverged_at: the step at which the fit diverged, or ``-1``.
    """

    name: str
    estimator: str
    steps: Any
    q: Any
    aux: Any
    alpha: float | None = None
    diverged_at: int = -1


def _frame_aux(aux, i: int):
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[i], aux)


def _layout(p, frames: Frames, qs, auxes, optima, x):
    """The three axes with every static artist, and the updatable ones."""
    fig, axes = plt.subplots(
        3, 1, figsize=(6.4, 6.4), sharex=True, height_ratios=[3, 2, 1.2], layout="constrained"
    )
    p_peak = draw_target(axes[0], p, x, optima)
    line_q = axes[0].plot(x, np.zeros_like(x), color=PURPLE, lw=2.4, label=r"fitted $q_\phi$")[0]
    peaks = [float(np.exp(-as_float(q.log_scale))) / np.sqrt(2 * np.pi) for q in qs]
    axes[0].set_ylim(0, density_top(p_peak, peaks + optimum_peaks(optima)))
    axes[0].legend(fontsize=8, loc="upper left", frameon=False)
    axes[0].set_xlabel("")
    power = weight_power(frames.name)
    curves = [log_weight_curve(p, q, x, power) for q in qs]
    log_ws = [power * as_float(a.log_weights) for a in auxes]
    ylim = weights_ylim(np.concatenate(log_ws), [(c, log_q(q, x)) for c, q in zip(curves, qs)])
    symbol = r"$w^2 = (\tilde p/q_\phi)^2$" if power == 2 else r"$w = \tilde p/q_\phi$"
    art = weight_artists(axes[1], symbol)
    axes[1].set_ylabel(symbol)
    axes[1].legend(fontsize=8, loc="upper left", frameon=False)
    rug_lines = rug_artists(axes[2])
    axes[2].set_xlim(x[0], x[-1])
    return fig, axes, line_q, (art, curves, log_ws, ylim, power), rug_lines


def animate_fit(
    path: str | Path,
    p,
    frames: Frames,
    *,
    optima=None,
    x: np.ndarray | None = None,
    fps: int = 8,
    dpi: int = 60,
) -> Path:
    r"""Writes a GIF of a 1-D fit: `fit_figure`'s stack at each of ``frames`` (Pillow writer).

    Each frame shows ``q`` at that step, its exact divergence in both
    directions (where exact), the weights and the gradient shares of that
    frame's draw (``frames.aux``). Nothing is fitted or sampled here.

    Args:
      path: the ``.gif`` file written.
      p: the 1-D target; ``frames``: see `Frames`.
      optima: `divjax.optimal_q`'s result for ``frames.name`` (dashed / dotted curves).
      x: the ``z`` grid (default: covering ``p`` and every frame's ``q``).
      fps, dpi: frames per second and resolution.

    Returns:
      ``path`` as a `pathlib.Path`.
    """
    from matplotlib.animation import PillowWriter

    path = Path(path)
    steps = np.asarray(frames.steps).reshape(-1)
    qs = [row(frames.q, i) for i in range(steps.size)]
    auxes = [_frame_aux(frames.aux, i) for i in range(steps.size)]
    x = x_grid(p, qs[0], qs[-1]) if x is None else np.asarray(x, np.float64)
    fig, axes, line_q, (art, curves, log_ws, ylim, power), rug_lines = _layout(
        p, frames, qs, auxes, optima, x
    )
    head = f"minimize {label(frames.name, frames.alpha)}, {frames.estimator}"
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, dpi):
        for i, (q, aux) in enumerate(zip(qs, auxes)):
            step = int(steps[i])
            note = (
                f" (diverged at step {frames.diverged_at})"
                if 0 <= frames.diverged_at <= step
                else ""
            )
            values = _text.values_line(frames.name, p, q, frames.alpha)
            axes[0].set_title(
                f"{head}: step {step} / {int(steps[-1])}{note}\n{values}", fontsize=10
            )
            line_q.set_ydata(np.exp(log_q(q, x)))
            set_weights(art, x, curves[i], as_float(aux.samples), log_ws[i], ylim)
            axes[1].set_title(weights_title(aux, power, "importance weights"), fontsize=10)
            set_rug(rug_lines, aux)
            writer.grab_frame()
            if i == 0:  # laid out once: later frames only move data
                fig.set_layout_engine("none")
    plt.close(fig)
    return path
