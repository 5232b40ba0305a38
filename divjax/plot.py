r"""Pictures of a fit: the seed page's panels, the landscape, estimator comparisons, a GIF.

Every function draws with matplotlib and returns the `matplotlib.figure.Figure`;
panel functions take an optional ``ax`` (multi-panel ones ``axes``) to draw
into, and create a figure with ``pyplot`` otherwise. None calls ``plt.show()``
and importing this module does not choose a backend.

Colours follow the seed page: the fitted ``q_phi`` is purple (`PURPLE`), a
sample's positive gradient contribution blue (`POSITIVE`), a negative one red
(`NEGATIVE`); optimal ``q*`` are dashed (global) or dotted (local).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from divjax.diagnostics import GradStats
from divjax.divergences import DIVERGENCES, divergence, is_infinite
from divjax.estimators import SurrogateAux, surrogate
from divjax.families import Gaussian
from divjax.fit import average_rate, init_state, make_step
from divjax.optima import Optima, optimal_q
from divjax.parameterizations import get_parameterization
from divjax.targets import GaussianMixture

PURPLE = "#7B2D8E"
POSITIVE = "#2166AC"
NEGATIVE = "#B2182B"
TARGET = "#333333"
OPTIMUM = "#E08214"
INFINITE = "#F4A6A6"
OUTCOME_COLORS = {
    "global": "#1B9E77",
    "local": "#7570B3",
    "stuck": "#E6AB02",
    "diverged": "#D95F02",
}

LABELS = {
    "kl_forward": r"$\mathrm{KL}(p\,\|\,q)$",
    "kl_reverse": r"$\mathrm{KL}(q\,\|\,p)$",
    "chi2_forward": r"$\chi^2(p\,\|\,q)$",
    "chi2_reverse": r"$\chi^2(q\,\|\,p)$",
}
_OTHER = {
    "kl_forward": "kl_reverse",
    "kl_reverse": "kl_forward",
    "chi2_forward": "chi2_reverse",
    "chi2_reverse": "chi2_forward",
}
_SEEKING = {"forward": "mean-seeking", "reverse": "mode-seeking"}


def _fmt(v) -> str:
    v = float(v)
    return r"$\infty$" if math.isinf(v) else ("nan" if math.isnan(v) else f"{v:.3g}")


@functools.partial(jax.jit, static_argnums=0)
def _divergence(name, p, q):
    return divergence(name, p, q)


def _log_q(q: Gaussian, x: np.ndarray) -> np.ndarray:
    loc, scale = float(q.loc), float(np.exp(float(q.log_scale)))
    return -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def _new_axes(ax, figsize=(6.0, 3.0)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def _row(q: Gaussian, i: int) -> Gaussian:
    return Gaussian._make((q.loc[i], q.log_scale[i]))


def x_grid(p: GaussianMixture, *qs: Gaussian, num: int = 400) -> np.ndarray:
    """Points covering ``p`` (and each ``q`` within reason) for density plots, ``(num,)``."""
    m, s = np.asarray(p.locs, np.float64), np.asarray(p.scales, np.float64)
    lo, hi = float(np.min(m - 4 * s)), float(np.max(m + 4 * s))
    span = hi - lo
    for q in qs:
        loc, sc = float(q.loc), float(q.scale)
        lo = max(min(lo, loc - 3.5 * sc), lo - span)
        hi = min(max(hi, loc + 3.5 * sc), hi + span)
    return np.linspace(lo, hi, num)


# ---------------------------------------------------------------------------
# Figure 1-3: the seed page's stacked panels


def fit_panel(
    p: GaussianMixture,
    q: Gaussian,
    name: str = "kl_forward",
    *,
    optima: Optima | None = None,
    x: np.ndarray | None = None,
    title: str | None = None,
    ax=None,
):
    r"""Target ``p(z)``, fitted ``q_phi`` (purple) and optimal ``q*`` (dashed global, dotted local).

    The title states the divergence minimized (and whether it is mean- or
    mode-seeking) and its value in both directions, ``inf`` shown as ``∞``.

    Args:
      p: the target (drawn normalized).
      q: the current fit, a `Gaussian` of scalars.
      name: the divergence being minimized, one of `divjax.DIVERGENCES`.
      optima: `divjax.optimal_q`'s result for ``name``; computed when omitted.
      x: the grid to draw on (default `x_grid`).
      title: replaces the default first title line.
      ax: a matplotlib ``Axes``; a new figure when omitted.
    """
    fig, ax = _new_axes(ax)
    if optima is None:
        optima = optimal_q(name, p)
    x = x_grid(p, q) if x is None else np.asarray(x)
    xj = jnp.asarray(x, p.locs.dtype)
    dens_p = np.exp(np.asarray(p.normalized_log_prob(xj)))
    ax.fill_between(x, dens_p, color=TARGET, alpha=0.12, lw=0)
    ax.plot(x, dens_p, color=TARGET, lw=1.8, label=r"target $p(z)$")
    ax.plot(x, np.exp(_log_q(q, x)), color=PURPLE, lw=2.4, label=r"fitted $q_\phi$")
    for i in range(optima.value.shape[0]):  # drawn over q_phi: visible once it converges
        qi = _row(optima.q, i)
        ls, what = ("--", "global") if i == 0 else (":", "local")
        label = rf"optimal $q^*$ ({what})" if i <= 1 else None
        ax.plot(x, np.exp(_log_q(qi, x)), ls=ls, color=OPTIMUM, lw=1.6, label=label)
    direction = name.split("_")[1]
    other = _OTHER[name]
    values = f"{LABELS[name]} = {_fmt(_divergence(name, p, q))},  "
    values += f"{LABELS[other]} = {_fmt(_divergence(other, p, q))}"
    head = title if title is not None else f"minimize {LABELS[name]} ({_SEEKING[direction]})"
    ax.set_title(f"{head}\n{values}", fontsize=10)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("$z$")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="best", frameon=False)
    return fig


def weights_panel(
    p: GaussianMixture,
    q: Gaussian,
    aux: SurrogateAux,
    name: str = "kl_forward",
    *,
    x: np.ndarray | None = None,
    ylim: tuple[float, float] | None = None,
    title: str | None = None,
    ax=None,
):
    r"""Importance weights ``w = p~/q`` (``w^2`` for ``chi2_forward``) on a log axis, with ESS.

    The curve is ``w(z)`` over the grid; stems mark the current samples'
    weights. ESS is ``aux.ess`` (``aux.ess_sq`` for ``w^2``) out of ``K``.
    """
    fig, ax = _new_axes(ax)
    power = 2.0 if name == "chi2_forward" else 1.0
    x = x_grid(p, q) if x is None else np.asarray(x)
    log_q = _log_q(q, x)
    log_w_curve = power * (np.asarray(p.log_prob(jnp.asarray(x, p.locs.dtype)), np.float64) - log_q)
    log_w = power * np.asarray(aux.log_weights, np.float64)
    xs = np.asarray(aux.samples, np.float64)
    cap = 700.0  # keep exp() inside float64
    w_curve = np.exp(np.clip(log_w_curve, -cap, cap))
    w = np.exp(np.clip(log_w, -cap, cap))
    symbol = r"$w^2 = (\tilde p/q_\phi)^2$" if power == 2 else r"$w = \tilde p/q_\phi$"
    ax.plot(x, w_curve, color=PURPLE, lw=1.4, alpha=0.7, label=symbol)
    if ylim is None:
        finite = log_w[np.isfinite(log_w)]
        lo = np.min(finite) if finite.size else 0.0
        hi = np.max(finite) if finite.size else 1.0
        q_mass = log_q > np.max(log_q) - 8.0
        shown = log_w_curve[q_mass & np.isfinite(log_w_curve)]
        if shown.size:
            lo, hi = min(lo, np.min(shown)), max(hi, np.max(shown))
        lo, hi = max(lo, hi - 28.0), min(hi, cap)  # at most ~12 decades
        ylim = (math.exp(lo - 2.0), math.exp(hi + 2.0))
    ax.set_yscale("log")
    ax.set_ylim(*ylim)
    ax.vlines(xs, ylim[0], np.clip(w, ylim[0], ylim[1]), color=TARGET, lw=0.8, alpha=0.6)
    ax.scatter(xs, np.clip(w, ylim[0], ylim[1]), s=14, color=TARGET, zorder=3, label="samples")
    k = xs.shape[0]
    ess = float(aux.ess_sq if power == 2 else aux.ess)
    ess_name = r"ESS of $w^2$" if power == 2 else "ESS"
    head = "importance weights" if title is None else title
    ax.set_title(f"{head}, K = {k}: {ess_name} = {ess:.2f} / {k}", fontsize=10)
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("$z$")
    ax.set_ylabel(symbol)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return fig


def rug(aux: SurrogateAux, *, x: np.ndarray | None = None, ax=None):
    r"""The samples as ticks, one row per parameter, blue/red by the sign of their gradient share.

    Row ``loc`` and row ``log_scale`` show ``aux.contributions``: sample ``i``
    is blue where its contribution to ``d/d loc`` (or ``d/d log_scale``) is
    positive, red where negative; tick height grows with ``|contribution|``.
    """
    fig, ax = _new_axes(ax, figsize=(6.0, 1.6))
    xs = np.asarray(aux.samples, np.float64)
    rows = [(1, r"$\partial/\partial\mu$", aux.contributions.loc)]
    rows.append((0, r"$\partial/\partial\log\sigma$", aux.contributions.log_scale))
    labelled = set()
    for y, _, c in rows:
        c = np.asarray(c, np.float64)
        mag = np.where(np.isfinite(c), np.abs(c), np.inf)
        top = np.max(mag[np.isfinite(mag)]) if np.any(np.isfinite(mag) & (mag > 0)) else 1.0
        height = 0.2 + 0.6 * np.minimum(mag / top, 1.0)
        for sign, color, label in ((1, POSITIVE, "positive"), (-1, NEGATIVE, "negative")):
            sel = np.sign(c) == sign
            if not np.any(sel):
                continue
            lab = f"{label} contribution" if label not in labelled else None
            labelled.add(label)
            h = height[sel] / 2
            ax.vlines(xs[sel], y - h, y + h, colors=color, lw=1.5, label=lab)
        zero = c == 0
        if np.any(zero):
            ax.vlines(xs[zero], y - 0.1, y + 0.1, colors="0.6", lw=1.0)
    ax.set_yticks([y for y, _, _ in rows], [lab for _, lab, _ in rows])
    ax.set_ylim(-0.6, 2.2)
    if x is not None:
        ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("$z$")
    ax.set_title("rug: blue = positive gradient contribution, red = negative", fontsize=9)
    ax.legend(fontsize=7, loc="upper right", frameon=False, ncols=2, borderaxespad=0.1)
    return fig


@functools.partial(jax.jit, static_argnames=("name", "estimator", "num_samples"))
def _auxes(target, q, keys, *, name, estimator, num_samples):
    loss_fn = surrogate(name, estimator, target, num_samples)
    return jax.vmap(lambda qq, k: loss_fn(qq, k)[1])(q, keys)


def sample_aux(
    p: GaussianMixture, q: Gaussian, name: str, estimator: str, num_samples: int, key: jax.Array
) -> SurrogateAux:
    """One draw of ``estimator``'s `SurrogateAux` at ``q`` (batched ``q`` gives batched aux)."""
    batched = jnp.ndim(q.loc) > 0
    qb = q if batched else jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], q)
    keys = jax.random.split(key, qb.loc.shape[0])
    aux = _auxes(p, qb, keys, name=name, estimator=estimator, num_samples=int(num_samples))
    return aux if batched else jax.tree_util.tree_map(lambda a: a[0], aux)


def fit_figure(
    p: GaussianMixture,
    q: Gaussian,
    name: str,
    aux: SurrogateAux,
    *,
    optima: Optima | None = None,
    x: np.ndarray | None = None,
    title: str | None = None,
    axes=None,
):
    """The seed page's stack: `fit_panel` over `weights_panel` over `rug`, sharing ``z``."""
    if axes is None:
        fig, axes = plt.subplots(
            3, 1, figsize=(6.4, 6.4), sharex=True, height_ratios=[3, 2, 1.2], layout="constrained"
        )
    x = x_grid(p, q) if x is None else x
    fit_panel(p, q, name, optima=optima, x=x, title=title, ax=axes[0])
    weights_panel(p, q, aux, name, x=x, ax=axes[1])
    rug(aux, x=x, ax=axes[2])
    for a in axes[:-1]:
        a.set_xlabel("")
    return axes[0].figure


# ---------------------------------------------------------------------------
# Figure 4: the landscape


@functools.partial(jax.jit, static_argnames="name")
def _divergence_grid(p, loc, log_scale, *, name):
    return jax.vmap(lambda m, s: divergence(name, p, Gaussian._make((m, s))))(loc, log_scale)


def landscape(
    name: str,
    p: GaussianMixture,
    *,
    trajectories: Mapping[str, Gaussian] | None = None,
    optima: Optima | None = None,
    loc_range: tuple[float, float] | None = None,
    log_scale_range: tuple[float, float] | None = None,
    num: int = 60,
    colors: Mapping[str, str] | None = None,
    parameterization: str = "mu_log_sigma",
    ax=None,
):
    r"""The divergence over ``(loc, log_scale)`` as filled contours, its optima and fit paths.

    KLs are drawn as their value, chi-squares as ``log(1 + chi^2)``; where a
    chi-square is infinite the region is hatched and labelled ``∞``. The global
    optimum is a star, local optima circles.

    Args:
      name: one of `divjax.DIVERGENCES`.
      p: the target.
      trajectories: ``{label: Gaussian}`` with leaves ``(T,)`` (one path) or
        ``(S, T)`` (``S`` seeds); each label gets one colour, a circle marks
        the start and a cross the end. ``label`` containing ``"exact"`` is drawn black.
      optima: `divjax.optimal_q`'s result; computed when omitted.
      loc_range, log_scale_range: the window; by default it covers the target,
        the optima and the paths' starts.
      num: grid points per axis.
      colors: ``{label: colour}`` overriding the default colour of a path.
      parameterization: draw in these coordinates (a name in
        `divjax.PARAMETERIZATIONS`). The window is still chosen in
        ``(loc, log_scale)``; the grid, the infinite region, the optima and the
        paths are all mapped through ``from_gaussian``, so the contours sit on
        the (curvilinear) image of that window.
      ax: a matplotlib ``Axes``.
    """
    param = get_parameterization(parameterization)

    def xy(loc, log_scale):
        """``(loc, log_scale)`` arrays -> the two coordinates of ``param``, same shape."""
        loc = np.asarray(loc, np.float64)
        log_scale = np.asarray(log_scale, np.float64)
        theta = np.asarray(param.from_gaussian(Gaussian._make((loc, log_scale))))
        return theta[..., 0], theta[..., 1]

    fig, ax = _new_axes(ax, figsize=(5.5, 4.2))
    if optima is None:
        optima = optimal_q(name, p)
    trajectories = dict(trajectories or {})
    m, s = np.asarray(p.locs, np.float64), np.asarray(p.scales, np.float64)
    sd = math.sqrt(float(p.variance()))
    if loc_range is None:
        pts = [m.min() - 2 * s.max(), m.max() + 2 * s.max()]
        pts += [
            float(np.asarray(t.loc).reshape(-1, np.shape(t.loc)[-1])[0, 0])
            for t in trajectories.values()
        ]
        loc_range = (min(pts) - 0.5, max(pts) + 0.5)
    if log_scale_range is None:
        pts = [math.log(s.min()) - 0.8, math.log(sd) + 0.6]
        pts += [
            float(np.asarray(t.log_scale).reshape(-1, np.shape(t.log_scale)[-1])[0, 0])
            for t in trajectories.values()
        ]
        log_scale_range = (min(pts) - 0.2, max(pts) + 0.2)
    locs = np.linspace(*loc_range, num)
    log_scales = np.linspace(*log_scale_range, num)
    mesh_l, mesh_s = np.meshgrid(locs, log_scales)
    dtype = p.locs.dtype
    vals = np.asarray(
        _divergence_grid(
            p, jnp.asarray(mesh_l.ravel(), dtype), jnp.asarray(mesh_s.ravel(), dtype), name=name
        ),
        np.float64,
    ).reshape(mesh_l.shape)
    chi2 = name.startswith("chi2")
    z = np.log1p(vals) if chi2 else vals
    finite = np.isfinite(z)
    if np.any(finite):
        levels = np.unique(np.quantile(z[finite], np.linspace(0.0, 0.97, 16)))
        if levels.size < 2:
            levels = np.array([levels[0], levels[0] + 1.0])
        # Infinite cells take the top colour; the hatched region below marks them exactly.
        zf = np.where(finite, z, 10 * abs(levels[-1]) + 1.0)
        gx, gy = xy(mesh_l, mesh_s)
        cs = ax.contourf(gx, gy, zf, levels=levels, cmap="Greys", extend="max", alpha=0.8)
        ax.contour(gx, gy, zf, levels=levels, colors="0.35", linewidths=0.4)
        cbar = fig.colorbar(cs, ax=ax, shrink=0.9)
        cbar.set_label(("log(1 + " + LABELS[name] + ")") if chi2 else LABELS[name])
    handles = []
    if np.any(~finite):
        # The infinite region from `is_infinite` on a finer grid: a clean boundary.
        fl, fs = np.meshgrid(
            np.linspace(*loc_range, 4 * num), np.linspace(*log_scale_range, 8 * num)
        )
        inf = np.asarray(
            is_infinite(name, p, Gaussian._make((jnp.asarray(fl, dtype), jnp.asarray(fs, dtype))))
        )
        ax.contourf(
            *xy(fl, fs),
            inf.astype(float),
            levels=[0.5, 1.5],
            colors=[INFINITE],
            hatches=["//"],
            alpha=0.9,
        )
        handles.append(Patch(facecolor=INFINITE, hatch="//", label=f"{LABELS[name]} = $\\infty$"))
    ol, os_ = xy(optima.q.loc, optima.q.log_scale)
    ol, os_ = np.atleast_1d(ol), np.atleast_1d(os_)
    ax.plot(ol[:1], os_[:1], "*", color=OPTIMUM, ms=16, mec="k", zorder=5, label="global optimum")
    if ol.size > 1:
        ax.plot(ol[1:], os_[1:], "o", color=OPTIMUM, ms=8, mec="k", zorder=5, label="local optimum")
    palette = itertools.cycle(
        ["#1B9E77", "#2C7FB8", "#E7298A", "#66A61E", "#A6761D", "#7570B3", "#E6AB02"]
    )
    for label, path in trajectories.items():
        exact = "exact" in label
        color = "k" if exact else next(palette)
        color = (colors or {}).get(label, color)
        pl, ps = xy(path.loc, path.log_scale)
        pl, ps = np.atleast_2d(pl), np.atleast_2d(ps)
        for i in range(pl.shape[0]):
            ax.plot(
                pl[i],
                ps[i],
                color=color,
                lw=2.0 if exact else 1.1,
                alpha=0.95 if exact else 0.7,
                zorder=5 if exact else 4,
                label=label if i == 0 else None,
            )
            ax.plot(pl[i, -1], ps[i, -1], "x", color=color, ms=7, mew=2, zorder=6)
        ax.plot(pl[:, 0], ps[:, 0], "o", color="k", mfc="w", ms=6, zorder=6)
    if trajectories:
        handles.append(Line2D([], [], marker="o", color="k", mfc="w", ls="", label="start"))
        handles.append(Line2D([], [], marker="x", color="0.3", ls="", mew=2, label="end"))
    if param.name == "mu_log_sigma":
        ax.set_xlim(*loc_range)
        ax.set_ylim(*log_scale_range)
    xlabel, ylabel = _COORD_LABELS[param.name]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    coords = f"$({xlabel.split('$')[1]}, {ylabel.split('$')[1]})$"
    ax.set_title(f"{LABELS[name]} over {coords}", fontsize=10)
    h, _ = ax.get_legend_handles_labels()
    ax.legend(handles=h + handles, fontsize=7, loc="best", framealpha=0.85)
    return fig


_COORD_LABELS = {
    "mu_log_sigma": (r"loc $\mu$", r"log scale $\log\sigma$"),
    "mu_sigma": (r"loc $\mu$", r"scale $\sigma$"),
    "mu_tau": (r"loc $\mu$", r"precision $\tau$"),
    "natural": (r"natural $\eta_1$", r"natural $\eta_2$"),
    "expectation": (r"mean $m_1$", r"second moment $m_2$"),
}


@functools.partial(
    jax.jit, static_argnames=("name", "estimator", "num_samples", "num_steps", "optimizer")
)
def _paths(target, q0, keys, lrs, moms, *, name, estimator, num_samples, num_steps, optimizer):
    loss_fn = surrogate(name, estimator, target, num_samples)

    def one(q_start, key, lr, mom):
        # SGD with heavy-ball momentum as in `divjax.fit` (momentum 0 is plain SGD);
        # built from traced numbers so one program serves every step size.
        opt = optax.sgd(lr, momentum=mom) if optimizer == "sgd" else optax.adam(lr, b1=mom)
        step = make_step(loss_fn, opt, average_rate=average_rate(num_steps))

        def body(state, _):
            state, _ = step(state)
            return state, state.params

        init = init_state(q_start, opt, key)
        state, params = jax.lax.scan(body, init, None, length=num_steps)
        start = jnp.stack([q_start.loc, q_start.log_scale]).astype(params.dtype)
        return jnp.concatenate([start[None], params]), state.diverged_at

    params, diverged_at = jax.vmap(one)(q0, keys, lrs, moms)
    return Gaussian._make((params[..., 0], params[..., 1])), diverged_at


def fit_paths(
    target: GaussianMixture,
    q0: Gaussian,
    name: str,
    estimator: str = "exact",
    *,
    num_samples: int = 16,
    num_seeds: int = 1,
    num_steps: int = 300,
    learning_rate: float | Sequence[float] = 0.05,
    momentum: float | Sequence[float] = 0.9,
    optimizer: str = "sgd",
    key: jax.Array,
) -> tuple[Gaussian, np.ndarray]:
    r"""Paths of several fits (the step of `divjax.fit`, SGD with momentum), in one program.

    Fits are vmapped over ``num_seeds`` PRNG keys and, when given as
    sequences, over ``learning_rate``, ``momentum`` and the starts ``q0``
    (leaves of shape ``(S,)``), all broadcast against each other. An
    ``"exact"`` fit is deterministic: one seed per start and step size.
    ``optimizer="adam"`` uses ``optax.adam(learning_rate, b1=momentum)`` instead
    of SGD.

    Returns:
      ``(path, diverged_at)``: ``path`` a `Gaussian` with leaves ``(S, T + 1)``
      (the start first; frozen after a divergence, as in `divjax.fit`) and
      ``diverged_at`` of shape ``(S,)`` (``-1`` = never).
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    dtype = target.locs.dtype
    lrs = np.atleast_1d(np.asarray(learning_rate, np.float64))
    moms = np.atleast_1d(np.asarray(momentum, np.float64))
    locs = np.atleast_1d(np.asarray(q0.loc, np.float64))
    log_scales = np.atleast_1d(np.asarray(q0.log_scale, np.float64))
    n = max(lrs.size, moms.size, locs.size, 1 if estimator == "exact" else num_seeds)
    lrs, moms, locs, log_scales = (np.broadcast_to(a, (n,)) for a in (lrs, moms, locs, log_scales))
    starts = Gaussian._make((jnp.asarray(locs, dtype), jnp.asarray(log_scales, dtype)))
    path, div = _paths(
        target,
        starts,
        jax.random.split(key, n),
        jnp.asarray(lrs, dtype),
        jnp.asarray(moms, dtype),
        name=name,
        estimator=estimator,
        num_samples=1 if estimator == "exact" else int(num_samples),
        num_steps=int(num_steps),
        optimizer=optimizer,
    )
    return jax.tree_util.tree_map(np.asarray, path), np.asarray(div)


@functools.partial(jax.jit, static_argnames="name")
def path_values(name: str, p: GaussianMixture, path: Gaussian) -> jax.Array:
    """The exact divergence at every point of a path (leaves of any shape)."""
    flat = jax.tree_util.tree_map(lambda a: jnp.ravel(jnp.asarray(a, p.locs.dtype)), path)
    values = jax.vmap(lambda m, s: divergence(name, p, Gaussian._make((m, s))))(*flat)
    return values.reshape(jnp.shape(path.loc))


# ---------------------------------------------------------------------------
# Figure 5: estimator comparison


def _label(name: str, estimator: str) -> str:
    return f"{name} / {estimator}"


def _series(stats: GradStats, q_index: int):
    """Numpy views of the fields we plot, with the K axis first and any batch axis indexed."""

    def pick(a):
        a = np.asarray(a, np.float64)
        return a[:, q_index] if a.ndim > 1 else a

    return pick, np.atleast_1d(np.asarray(stats.num_samples)).reshape(-1)


def estimator_comparison(
    grad_stats_by_estimator: Mapping[tuple[str, str], GradStats],
    *,
    q_index: int = 0,
    axes=None,
):
    r"""Gradient variance, MSE and SNR against ``K`` (log-log), one line per estimator.

    Rows are the parameters ``loc`` and ``log_scale``; columns variance, MSE
    and SNR (``|mean| / sd``, Rainforth et al. 2018) of one draw, from
    `divjax.grad_stats` run with a sequence of ``K``. A grey dotted line shows
    the ``1/K`` (variance, MSE) or ``sqrt(K)`` (SNR) rate. Where an estimator's
    variance is infinite (``GradStats.infinite_variance``) its sample variance
    is drawn dashed and the label says so; ``"exact"`` (zero variance) and
    points where the divergence itself is infinite are left out.

    Args:
      grad_stats_by_estimator: ``{(divergence, estimator): GradStats}`` with a
        leading ``K`` axis (``num_samples`` gives the K values).
      q_index: which ``q`` when the stats were computed for a batch of ``q``.
      axes: a ``(2, 3)`` array of ``Axes``.
    """
    if axes is None:
        fig, axes = plt.subplots(2, 3, figsize=(12, 6.2), layout="constrained")
    axes = np.asarray(axes)
    fig = axes.flat[0].figure
    colors = plt.get_cmap("tab10").colors
    anchors = {}
    handles = []
    for i, ((name, est), stats) in enumerate(grad_stats_by_estimator.items()):
        if est == "exact":
            continue
        pick, ks = _series(stats, q_index)
        color = colors[i % len(colors)]
        inf_var = bool(np.any(pick(stats.infinite_variance)))
        div_inf = bool(np.all(pick(stats.divergence_infinite)))
        label = _label(name, est)
        if div_inf:
            label += r" (divergence $\infty$)"
        elif inf_var:
            label += r" (variance $\infty$: sample values)"
        ls = "--" if inf_var else "-"
        for r, field in enumerate(Gaussian._fields):
            var = pick(getattr(stats.variance, field))
            if inf_var:
                var = pick(getattr(stats.sample_variance, field))
            bias = pick(getattr(stats.bias, field))
            mse = pick(getattr(stats.mse, field))
            if inf_var:
                mse = bias**2 + var
            mean = pick(getattr(stats.mean, field))
            with np.errstate(divide="ignore", invalid="ignore"):
                snr = np.abs(mean) / np.sqrt(var)
            cols = [var] if div_inf else [var, mse]
            cols.append(snr)
            col_idx = [0, 2] if div_inf else [0, 1, 2]
            for c, y in zip(col_idx, cols):
                ok = np.isfinite(y) & (y > 0)
                if not np.any(ok):
                    continue
                ax = axes[r, c]
                ax.plot(ks[ok], y[ok], marker="o", ms=3.5, color=color, ls=ls, lw=1.4)
                anchors.setdefault((r, c), (ks[ok][0], y[ok][0]))
        handles.append(Line2D([], [], color=color, ls=ls, marker="o", ms=3.5, label=label))
    titles = ["variance of one estimate", "MSE vs the exact gradient", "SNR = |mean| / sd"]
    for r, field in enumerate(Gaussian._fields):
        pname = r"$\mu$" if field == "loc" else r"$\log\sigma$"
        for c in range(3):
            ax = axes[r, c]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{titles[c]}, d/d{pname}", fontsize=10)
            ax.set_xlabel("K (samples per estimate)")
            ax.grid(True, which="major", alpha=0.3)
            if (r, c) in anchors:
                k0, y0 = anchors[(r, c)]
                lo, hi = ax.get_xlim()
                kk = np.geomspace(max(k0, lo), hi, 20)
                ref = y0 * (kk / k0) ** (0.5 if c == 2 else -1.0)
                ax.plot(kk, ref, ":", color="0.5", lw=1.2)
                ax.set_xlim(lo, hi)
    handles.append(Line2D([], [], ls=":", color="0.5", label=r"rate $1/K$ (SNR: $\sqrt{K}$)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    return fig


def _outcomes(status) -> dict[str, np.ndarray]:
    diverged = np.asarray(status.diverged_at) >= 0
    opt = np.asarray(status.optimum)
    return {
        "global": ~diverged & (opt == 0),
        "local": ~diverged & (opt > 0),
        "stuck": ~diverged & (opt == -1),
        "diverged": diverged,
    }


def sweep_summary(runs: Sequence, *, max_cols: int = 4, axes=None):
    r"""Per Monte Carlo configuration: final divergence per ``K`` and how the fits ended.

    One column per ``(divergence, estimator, optimizer)`` of the `divjax.sweep`
    runs. Top: the final exact divergence of every seed per ``K`` (box and
    points; diverged or infinite ones are counted in the tick label), with
    the exact-gradient fit as a dashed line when the runs include it.
    Bottom: the fraction of seeds that ended at the global optimum, a local
    optimum, stuck near none, or diverged.

    Args:
      runs: `divjax.sweep.SweepRun`'s (``SweepResult.runs``, or several
        sweeps' runs concatenated) for one target and start.
      max_cols: columns per row of panels.
      axes: a ``(2 * rows, cols)`` array of ``Axes``.
    """
    groups: dict[tuple[str, str, str], list] = {}
    exact: dict[tuple[str, str], float] = {}
    for run in runs:
        c = run.config
        if c.estimator == "exact":
            exact[(c.name, c.optimizer)] = float(np.asarray(run.status.final_value).reshape(-1)[0])
        else:
            groups.setdefault((c.name, c.estimator, c.optimizer), []).append(run)
    n = max(len(groups), 1)
    cols = min(n, max_cols)
    rows = -(-n // cols)
    if axes is None:
        fig, axes = plt.subplots(
            2 * rows,
            cols,
            figsize=(3.4 * cols + 0.6, 5.0 * rows),
            squeeze=False,
            layout="constrained",
            height_ratios=[1.6, 1.0] * rows,
        )
    axes = np.asarray(axes).reshape(2 * rows, cols)
    fig = axes.flat[0].figure
    for j, ((name, est, opt), group) in enumerate(groups.items()):
        top, bottom = axes[2 * (j // cols), j % cols], axes[2 * (j // cols) + 1, j % cols]
        group = sorted(group, key=lambda r: r.config.num_samples)
        ks = [r.config.num_samples for r in group]
        pos = np.arange(len(group))
        data, ticks = [], []
        for r, k in zip(group, ks):
            v = np.asarray(r.status.final_value, np.float64)
            ok = np.isfinite(v) & (np.asarray(r.status.diverged_at) < 0)
            data.append(v[ok])
            ticks.append(f"{k}" + (f"\n({(~ok).sum()} diverged/inf)" if (~ok).any() else ""))
        nonempty = [i for i, d in enumerate(data) if d.size]
        if nonempty:
            top.boxplot(
                [data[i] for i in nonempty],
                positions=pos[nonempty],
                widths=0.55,
                showfliers=False,
                medianprops={"color": PURPLE},
            )
            rng = np.random.default_rng(0)
            for i in nonempty:
                jitter = rng.uniform(-0.18, 0.18, data[i].size)
                top.scatter(pos[i] + jitter, data[i], s=6, color=PURPLE, alpha=0.45, lw=0)
            vals = np.concatenate([data[i] for i in nonempty])
            if vals.min() > 0 and vals.max() / vals.min() > 30:
                top.set_yscale("log")
        if (name, opt) in exact and np.isfinite(exact[(name, opt)]):
            top.axhline(exact[(name, opt)], color="k", ls="--", lw=1.0, label="exact-gradient fit")
            top.legend(fontsize=7, loc="upper right")
        top.set_xticks(pos, ticks, fontsize=7)
        top.set_title(f"{LABELS[name]}, {est}" + (f" [{opt}]" if opt != "sgd" else ""), fontsize=10)
        top.set_ylabel("final divergence")
        bottom_acc = np.zeros(len(group))
        for outcome, color in OUTCOME_COLORS.items():
            frac = np.array([_outcomes(r.status)[outcome].mean() for r in group])
            bottom.bar(
                pos,
                frac,
                bottom=bottom_acc,
                color=color,
                width=0.7,
                label=outcome if j == 0 else None,
            )
            bottom_acc += frac
        bottom.set_xticks(pos, [str(k) for k in ks], fontsize=8)
        bottom.set_ylim(0, 1)
        bottom.set_xlabel("K")
        bottom.set_ylabel("fraction of seeds")
    for j in range(len(groups), rows * cols):
        axes[2 * (j // cols), j % cols].set_visible(False)
        axes[2 * (j // cols) + 1, j % cols].set_visible(False)
    if not groups:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, "no Monte Carlo runs", ha="center", va="center")
    handles = [Patch(color=c, label=o) for o, c in OUTCOME_COLORS.items()]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=4,
        fontsize=8,
        title="how each seed's fit ended",
        title_fontsize=8,
    )
    return fig


# ---------------------------------------------------------------------------
# Figure 6: animation


def animate_fit(
    path: str | Path,
    p: GaussianMixture,
    q0: Gaussian,
    name: str,
    estimator: str = "exact",
    *,
    num_samples: int = 16,
    num_frames: int = 40,
    steps_per_frame: int = 5,
    learning_rate: float = 0.05,
    momentum: float = 0.9,
    key: jax.Array,
    optima: Optima | None = None,
    dpi: int = 72,
    fps: int = 8,
) -> Path:
    r"""Writes a GIF of a fit: the `fit_figure` stack evolving (Pillow writer).

    The fit runs ``num_frames * steps_per_frame`` steps of `fit_paths`; each
    frame shows ``q`` at that step with a fresh draw of ``num_samples`` samples
    (their weights, ESS and gradient shares under ``estimator``).

    Returns:
      ``path`` as a `pathlib.Path`.
    """
    from matplotlib.animation import PillowWriter

    path = Path(path)
    k_fit, k_aux = jax.random.split(key)
    if optima is None:
        optima = optimal_q(name, p)
    num_steps = num_frames * steps_per_frame
    qs, diverged_at = fit_paths(
        p,
        q0,
        name,
        estimator,
        num_samples=num_samples,
        num_steps=num_steps,
        learning_rate=learning_rate,
        momentum=momentum,
        key=k_fit,
    )
    idx = np.minimum(np.arange(num_frames) * steps_per_frame, num_steps)
    idx[-1] = num_steps
    frames = Gaussian._make((jnp.asarray(qs.loc[0, idx]), jnp.asarray(qs.log_scale[0, idx])))
    auxes = sample_aux(p, frames, name, estimator, num_samples, k_aux)
    auxes = jax.tree_util.tree_map(np.asarray, auxes)
    x = x_grid(p, q0, _row(frames, num_frames - 1))
    fig, axes = plt.subplots(
        3, 1, figsize=(6.4, 6.4), sharex=True, height_ratios=[3, 2, 1.2], layout="constrained"
    )
    div = int(diverged_at[0])

    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, dpi):
        for i in range(num_frames):
            for a in axes:
                a.clear()
            step = int(idx[i])
            note = f" (diverged at step {div})" if 0 <= div <= step else ""
            title = f"minimize {LABELS[name]}, {estimator} K = {num_samples}: "
            title += f"step {step}/{num_steps}{note}"
            aux = jax.tree_util.tree_map(lambda a, i=i: a[i], auxes)
            fit_figure(p, _row(frames, i), name, aux, optima=optima, x=x, title=title, axes=axes)
            writer.grab_frame()
            if i == 0:  # lay out once: every frame has the same texts
                fig.set_layout_engine("none")
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# The demo's figures

DEMO_ESTIMATORS = {
    "kl_forward": "snis",
    "kl_reverse": "reparam",
    "chi2_forward": "snis2",
    "chi2_reverse": "score_sn",
}


def _single(status, i: int = 0):
    return type(status)._make(np.asarray(a).reshape(-1)[i] for a in status)


def demo_figures(
    out_dir: str | Path,
    target: GaussianMixture,
    q0: Gaussian,
    sweep_results: Sequence,
    grad_stats_by_estimator: Mapping[tuple[str, str], GradStats],
    *,
    key: jax.Array,
    optima: Mapping[str, Optima] | None = None,
    num_steps: int = 300,
    path_ks: Sequence[int] = (4, 64),
    num_frames: int = 40,
    verbose: bool = False,
) -> list[Path]:
    r"""Writes figures 1-5 and one GIF for a scenario; returns their paths.

    Files (PNG unless said):

    - ``fit_panel``: one `fit_panel` per divergence, ``q`` the exact-gradient
      fit from ``sweep_results`` (or ``num_steps`` exact steps from ``q0``);
    - ``weights`` and ``rug``: `weights_panel` and `rug` at those same ``q``,
      for one draw of K = 32 samples of a Monte Carlo estimator;
    - ``landscape``: `landscape` per divergence with paths from ``q0``: exact,
      and the Monte Carlo estimator at each of ``path_ks`` (3 seeds each);
    - ``estimators``: `estimator_comparison` of ``grad_stats_by_estimator``;
    - ``sweep_summary``: `sweep_summary` of ``sweep_results``;
    - ``fit.gif``: `animate_fit` of forward KL with ``snis`` (K = 16) from ``q0``.

    The Monte Carlo estimator of a divergence is the first one in
    ``sweep_results``, else `DEMO_ESTIMATORS`.

    Args:
      out_dir: the folder (created if missing).
      target, q0: the scenario.
      sweep_results: `divjax.sweep.SweepRun`'s for this target and start.
      grad_stats_by_estimator: ``{(divergence, estimator): GradStats}`` with a
        leading ``K`` axis.
      key: PRNG key for the paths, the samples shown and the animation.
      optima: ``{divergence: Optima}``; computed with `divjax.optimal_q` where missing.
      num_steps: steps of the landscape paths (and of the fallback exact fits).
      path_ks: the Monte Carlo K's of the landscape paths.
      num_frames: frames of the GIF (5 steps each).
      verbose: print progress with timings.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k_aux, k_paths, k_anim = jax.random.split(key, 3)
    t0 = time.perf_counter()

    def log(msg):
        if verbose:
            print(f"  [{time.perf_counter() - t0:5.1f}s] {msg}")

    def save(fig, fname):
        path = out / fname
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
        log(f"wrote {path}")

    written: list[Path] = []
    names = list(DIVERGENCES)
    optima = dict(optima or {})
    for n in names:
        if n not in optima:
            optima[n] = optimal_q(n, target)
    log("optima")
    mc, fitted, notes = {}, {}, {}
    for run in sweep_results:
        c = run.config
        if c.estimator != "exact":
            mc.setdefault(c.name, c.estimator)
        elif c.name not in fitted:
            fitted[c.name] = _row(Gaussian._make(np.asarray(a) for a in run.q), 0)
            notes[c.name] = _single(run.status).describe()
    for n in names:
        mc.setdefault(n, DEMO_ESTIMATORS[n])

    paths = {}
    for i, n in enumerate(names):
        key_n = jax.random.fold_in(k_paths, i)
        exact_path, exact_div = fit_paths(target, q0, n, "exact", num_steps=num_steps, key=key_n)
        label = "exact" + (f" (diverged at step {exact_div[0]})" if exact_div[0] >= 0 else "")
        paths[n] = {label: exact_path}
        for k in path_ks:
            path, _ = fit_paths(
                target, q0, n, mc[n], num_samples=k, num_seeds=3, num_steps=num_steps, key=key_n
            )
            paths[n][f"{mc[n]}, K = {k}"] = path
        if n not in fitted:
            fitted[n] = Gaussian._make(
                (jnp.asarray(exact_path.loc[0, -1]), jnp.asarray(exact_path.log_scale[0, -1]))
            )
            notes[n] = f"{num_steps} exact steps" + (
                f", diverged at step {exact_div[0]}" if exact_div[0] >= 0 else ""
            )
    log("paths")

    fig, axs = plt.subplots(2, 2, figsize=(11, 7), layout="constrained")
    for ax, n in zip(axs.flat, names):
        head = f"minimize {LABELS[n]} ({_SEEKING[n.split('_')[1]]})\nexact gradient: {notes[n]}"
        fit_panel(target, fitted[n], n, optima=optima[n], ax=ax, title=head)
    save(fig, "fit_panel.png")

    auxes = {
        n: sample_aux(target, fitted[n], n, mc[n], 32, jax.random.fold_in(k_aux, i))
        for i, n in enumerate(names)
    }
    fig, axs = plt.subplots(2, 2, figsize=(11, 6), layout="constrained")
    for ax, n in zip(axs.flat, names):
        weights_panel(
            target,
            fitted[n],
            auxes[n],
            n,
            x=x_grid(target, fitted[n]),
            ax=ax,
            title=f"{LABELS[n]}, {mc[n]} at the fitted q",
        )
    save(fig, "weights.png")

    fig, axs = plt.subplots(2, 2, figsize=(11, 4.2), layout="constrained")
    for ax, n in zip(axs.flat, names):
        rug(auxes[n], x=x_grid(target, fitted[n]), ax=ax)
        ax.set_title(
            f"{LABELS[n]}, {mc[n]}, K = 32: blue = positive, red = negative contribution",
            fontsize=9,
        )
    save(fig, "rug.png")

    fig, axs = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
    for ax, n in zip(axs.flat, names):
        landscape(n, target, trajectories=paths[n], optima=optima[n], ax=ax)
    save(fig, "landscape.png")
    log("landscape")

    save(estimator_comparison(grad_stats_by_estimator), "estimators.png")
    save(sweep_summary(list(sweep_results)), "sweep_summary.png")
    gif = animate_fit(
        out / "fit.gif",
        target,
        q0,
        "kl_forward",
        mc["kl_forward"],
        num_samples=16,
        num_frames=num_frames,
        key=k_anim,
        optima=optima["kl_forward"],
    )
    written.append(gif)
    log(f"wrote {gif}")
    return written
