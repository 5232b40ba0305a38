r"""A GIF of a fit from precomputed frames: the `divjax.plot.fit_figure` stack, updated in place.

The figure is drawn and laid out once; each frame restores that background
and redraws only what moves (``q``'s curve, the weights, the rug, two titles)
by blitting, so a frame costs a few milliseconds. Frames are written with Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from divjax.plot import _eval
from divjax.plot.panels import (
    density_top,
    draw_optima,
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


class _Scene(NamedTuple):
    fig: Any
    axes: Any
    line_q: Any
    weights: Any
    rug: list
    curves: list
    log_ws: list
    ylim: tuple
    power: float


def _layout(p, frames: Frames, qs, auxes, optima, x, dpi) -> _Scene:
    """The three axes with every static artist, and the ones that move."""
    fig = Figure(figsize=(6.4, 6.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True, height_ratios=[3, 2, 1.2])
    p_peak = draw_target(axes[0], p, x)
    line_q = axes[0].plot(x, np.zeros_like(x), color=PURPLE, lw=2.4, label=r"fitted $q_\phi$")[0]
    draw_optima(axes[0], x, optima)
    peaks = [float(np.exp(-as_float(q.log_scale))) / np.sqrt(2 * np.pi) for q in qs]
    axes[0].set_ylim(0, density_top(p_peak, peaks + optimum_peaks(optima)))
    axes[0].legend(fontsize=8, loc="upper left", frameon=False)
    axes[0].set_xlabel("")
    power = weight_power(frames.name)
    curves = [log_weight_curve(p, q, x, power) for q in qs]
    log_ws = [power * as_float(a.log_weights) for a in auxes]
    ylim = weights_ylim(np.concatenate(log_ws), [(c, log_q(q, x)) for c, q in zip(curves, qs)])
    symbol = r"$w^2 = (\tilde p/q_\phi)^2$" if power == 2 else r"$w = \tilde p/q_\phi$"
    weights = weight_artists(axes[1], symbol)
    axes[1].set_ylabel(symbol)
    axes[1].legend(fontsize=8, loc="upper left", frameon=False)
    rug = rug_artists(axes[2])
    axes[2].set_xlim(x[0], x[-1])
    return _Scene(fig, axes, line_q, weights, rug, curves, log_ws, ylim, power)


def _moving(scene: _Scene) -> list:
    return [scene.line_q, *scene.weights, *scene.rug, scene.axes[0].title, scene.axes[1].title]


def _update(scene: _Scene, p, frames: Frames, i: int, q, aux, x) -> None:
    steps = np.asarray(frames.steps).reshape(-1)
    step, div = int(steps[i]), int(frames.diverged_at)
    note = f" (diverged at step {div})" if 0 <= div <= step else ""
    head = f"minimize {label(frames.name, frames.alpha)}, {frames.estimator}: "
    head += f"step {step} / {int(steps[-1])}{note}"
    values = _eval.values_line(frames.name, p, q, frames.alpha)
    scene.axes[0].set_title(f"{head}\n{values}", fontsize=10)
    scene.line_q.set_ydata(np.exp(log_q(q, x)))
    samples = as_float(aux.samples)
    set_weights(scene.weights, x, scene.curves[i], samples, scene.log_ws[i], scene.ylim)
    scene.axes[1].set_title(weights_title(aux, scene.power, "importance weights"), fontsize=10)
    set_rug(scene.rug, aux)


def _blit(scene: _Scene, background) -> Image.Image:
    canvas = scene.fig.canvas
    canvas.restore_region(background)
    for artist in _moving(scene):
        artist.axes.draw_artist(artist)
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def animate_fit(
    path: str | Path,
    p,
    frames: Frames,
    *,
    optima=None,
    x: np.ndarray | None = None,
    fps: int = 8,
    dpi: int = 72,
) -> Path:
    r"""Writes a GIF of a 1-D fit: `fit_figure`'s stack at each of ``frames``.

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
    path = Path(path)
    n = int(np.size(frames.steps))
    qs = [row(frames.q, i) for i in range(n)]
    auxes = [_frame_aux(frames.aux, i) for i in range(n)]
    x = x_grid(p, *qs) if x is None else np.asarray(x, np.float64)
    scene = _layout(p, frames, qs, auxes, optima, x, dpi)
    _update(scene, p, frames, 0, qs[0], auxes[0], x)
    for artist in _moving(scene):
        artist.set_animated(True)
    scene.fig.canvas.draw()  # lays out (with frame 0's titles) and draws what does not move
    scene.fig.set_layout_engine("none")
    background = scene.fig.canvas.copy_from_bbox(scene.fig.bbox)
    images = []
    for i, (q, aux) in enumerate(zip(qs, auxes)):
        _update(scene, p, frames, i, q, aux, x)
        images.append(_blit(scene, background))
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    return path
