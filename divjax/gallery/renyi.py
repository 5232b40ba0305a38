r"""Renyi divergences ``D_alpha(q || p)`` interpolate between forward-like and reverse-like fits.

``D_alpha(q || p) = log int q^alpha p^(1-alpha) / (alpha - 1)``. As ``alpha -> 1`` it
is ``KL(q || p)``; as ``alpha -> 0``, ``I(alpha) = E_p[(q/p)^alpha] = 1 - alpha
KL(p || q) + O(alpha^2)``, so ``D_alpha(q || p) / alpha -> KL(p || q)``: the
rescaled objective becomes the forward KL, and its minimizer the moment match.
Both limits, the local minima at every order and their path are exact in divjax.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from divjax import divergences
from divjax.families import Gaussian
from divjax.gallery import _common as C
from divjax.targets import default_target

NAME = "renyi"
TITLE = "Renyi divergences interpolate between forward- and reverse-KL fits"
SOURCE = "Li & Turner (2016), Renyi divergence variational inference, NeurIPS"
STATEMENT = (
    "The Renyi divergence D_alpha(q || p) (the VR bound) gives a smooth interpolation from "
    "the reverse KL (alpha -> 1: the ELBO, mode-seeking fits) to mass-covering fits as "
    "alpha -> 0 (the bound tends to log Z); alpha chooses between the two behaviours."
)
SIZES = {
    "quick": dict(grid_alphas=(0.5, 0.6), grid_num=41, optima_alphas=()),
    "full": dict(
        grid_alphas=(0.2, 0.5, 0.6, 0.9),
        grid_num=101,
        optima_alphas=(0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0),
    ),
}
SMALL = (1e-2, 1e-3)  # alpha -> 0 and 1 - alpha -> 0 steps of the limit checks
Q_SET = ((0.0, 5.0), (3.0, 1.0), (-2.0, 0.25), (1.5, 6.025), (1.0, 2.0))  # (mean, variance)
BARRIER = 2e-3  # a rise below this along a segment is grid noise, not a barrier
WINDOW = ((-4.0, 6.0), (-1.5, 1.5))  # the grid search's (loc, log sigma) window


def limits(p, q):
    """``(D_a / a, KL(p||q), D_(1 -+ e), KL(q||p))`` for ``a, e`` in `SMALL`, at a batch of q."""

    def one(q_):
        small = jnp.stack(
            [divergences.divergence("renyi_reverse", p, q_, alpha=a) / a for a in SMALL]
        )
        near1 = jnp.stack(
            [
                divergences.divergence("renyi_reverse", p, q_, alpha=1.0 + s * e)
                for e in SMALL
                for s in (-1, 1)
            ]
        )
        return (
            small,
            divergences.divergence("kl_forward", p, q_),
            near1,
            divergences.divergence("kl_reverse", p, q_),
        )

    return jax.vmap(one)(q)


def grid_minima(values, t1, t2):
    """The basins of a grid: ``(loc, log sigma, value)`` rows, by value.

    Strict local minima (8 neighbours), then any two joined by a straight
    segment with no barrier on the grid (grid noise in a flat valley) merged.
    """
    pad = np.pad(values, 1, constant_values=np.inf)
    c = pad[1:-1, 1:-1]
    nb = [
        pad[1 + i : pad.shape[0] - 1 + i, 1 + j : pad.shape[1] - 1 + j]
        for i in (-1, 0, 1)
        for j in (-1, 0, 1)
        if i or j
    ]
    idx = sorted(
        (tuple(ij) for ij in np.argwhere(np.all(c[None] < np.stack(nb), 0))),
        key=lambda ij: values[ij],
    )
    kept = []
    for a in idx:
        barrier = True
        for b in kept:
            n = 2 * max(abs(a[0] - b[0]), abs(a[1] - b[1])) + 1
            line = values[
                np.rint(np.linspace(a[0], b[0], n)).astype(int),
                np.rint(np.linspace(a[1], b[1], n)).astype(int),
            ]
            barrier &= bool(np.max(line) > max(values[a], values[b]) + BARRIER)
        if barrier:
            kept.append(a)
    rows = np.array([(t1[ij], t2[ij], values[ij]) for ij in kept]).reshape(-1, 3)
    return rows


def measure(size: str = "quick", key=None, **overrides) -> C.Result:
    import divjax as dj

    cfg = dict(SIZES[size], **overrides)
    p = default_target()
    with C.fast_compile():
        with jax.enable_x64(True):  # D_alpha / alpha at alpha = 1e-3 needs the digits
            p64 = dj.GaussianMixture([0.3, 0.7], [-2.0, 3.0], [0.5, 1.0])
            m, v = (np.array(x, np.float64) for x in zip(*Q_SET))
            qs = Gaussian._make((jnp.asarray(m), jnp.asarray(0.5 * np.log(v))))
            small, kl_fwd, near1, kl_rev = C.exact(limits, p64, qs, key=("renyi_limits",))
        grids = {}
        for a in cfg["grid_alphas"]:
            t1, t2, val = dj.landscape_grid(
                "renyi_reverse", p, "mu_log_sigma", *WINDOW, cfg["grid_num"], alpha=a
            )
            grids[a] = grid_minima(np.asarray(val, np.float64), np.asarray(t1), np.asarray(t2))
        optima = {}
        for a in cfg["optima_alphas"]:
            o = dj.optimal_q("renyi_reverse", p, alpha=a)
            optima[a] = np.stack(
                [
                    np.asarray(o.q.loc, np.float64),
                    np.exp(2 * np.asarray(o.q.log_scale, np.float64)),
                    np.asarray(o.value, np.float64),
                ],
                -1,
            )
    fwd = C.moment_match(p)
    data = dict(
        small=small,
        kl_fwd=kl_fwd,
        near1=near1.reshape(len(Q_SET), len(SMALL), 2),
        kl_rev=kl_rev,
        grids=grids,
        optima=optima,
        forward=(float(fwd.loc), float(fwd.variance)),
        reverse=((3.0, 1.0), (-2.0, 0.25)),
        cfg=cfg,
    )
    return C.result(sys.modules[__name__], data, "narrower")


def _rel(data):
    """Relative errors ``(n_q, len(SMALL))``: D_a / a vs KL(p||q); D_(1 -+ e) vs KL(q||p)."""
    r0 = np.abs(data["small"] / data["kl_fwd"][:, None] - 1.0)
    r1 = np.max(np.abs(data["near1"] / data["kl_rev"][:, None, None] - 1.0), -1)
    return r0, r1


def _table(data):
    cols = (
        "q",
        "KL(p‖q)",
        *(f"D_α/α, α={a:g}" for a in SMALL),
        "KL(q‖p)",
        *(f"D_(1±{e:g})" for e in SMALL),
    )
    rows = []
    for i, (m, v) in enumerate(Q_SET):
        rows.append(
            (
                f"N({m:g}, {v:g})",
                f"{data['kl_fwd'][i]:.5f}",
                *(f"{x:.5f}" for x in data["small"][i]),
                f"{data['kl_rev'][i]:.5f}",
                *(f"{lo:.5f} / {hi:.5f}" for lo, hi in data["near1"][i]),
            )
        )
    for a, mins in data["grids"].items():
        text = "; ".join(f"({m:.2f}, {np.exp(2 * s):.2f})" for m, s, _ in mins)
        rows.append((f"grid minima α={a:g}", text, *[""] * (len(cols) - 2)))
    for a, o in data["optima"].items():
        text = "; ".join(f"({m:.3f}, {v:.3f})" for m, v, _ in o)
        rows.append((f"optimal_q α={a:g}", text, *[""] * (len(cols) - 2)))
    return cols, rows


def checks(data) -> list[C.Check]:
    r0, r1 = _rel(data)
    out = [
        C.Check(
            "α -> 0: D_α(q‖p)/α -> KL(p‖q), error shrinking like α (exact, 5 q's)",
            bool(np.all(r0[:, 1] < 2e-2) and np.all(r0[:, 0] / r0[:, 1] > 5.0)),
            f"largest relative error {r0[:, 0].max():.2e} at α = {SMALL[0]:g}, "
            f"{r0[:, 1].max():.2e} at α = {SMALL[1]:g}",
        ),
        C.Check(
            "α -> 1: D_α(q‖p) -> KL(q‖p), error shrinking like |1 - α|",
            bool(np.all(r1[:, 1] < 2e-2) and np.all(r1[:, 0] / r1[:, 1] > 5.0)),
            f"largest relative error {r1[:, 0].max():.2e} at |1 - α| = {SMALL[0]:g}, "
            f"{r1[:, 1].max():.2e} at {SMALL[1]:g}",
        ),
    ]
    (fm, fv), rev = data["forward"], data["reverse"]
    if 0.5 in data["grids"]:
        mins = data["grids"][0.5]
        g = mins[0]
        gv = np.exp(2 * g[1])
        out.append(
            C.Check(
                "α = 1/2: three local minima; the global one lies between the forward- and "
                "reverse-KL optima",
                bool(len(mins) == 3 and fm < g[0] < rev[0][0] and rev[0][1] < gv < fv),
                f"{len(mins)} grid minima; global at (mean {g[0]:.2f}, variance {gv:.2f}) between "
                f"({fm:.2f}, {fv:.2f}) "
                f"and ({rev[0][0]:.2f}, {rev[0][1]:.2f})",
            )
        )
    if 0.5 in data["grids"] and 0.6 in data["grids"]:
        a, b = (np.exp(2 * data["grids"][x][0, 1]) for x in (0.5, 0.6))
        out.append(
            C.Check(
                "narrower: the fit does not move smoothly; the global minimum jumps from the "
                "broad basin (α = 0.5) to the big mode (α = 0.6)",
                bool(a > 3.0 and b < 1.6),
                f"global variance {a:.2f} at α = 0.5, {b:.2f} at α = 0.6",
            )
        )
    if data["optima"]:
        alphas = sorted(data["optima"])
        glob = np.array([data["optima"][a][0] for a in alphas])
        low, one = glob[0], data["optima"].get(1.0, [None])[0]
        out.append(
            C.Check(
                f"α = {alphas[0]:g}: the global optimum is within O(α) of the moment match "
                "(forward KL)",
                bool(abs(low[0] - fm) < 0.1 and abs(low[1] / fv - 1) < 0.1),
                f"({low[0]:.3f}, {low[1]:.3f}) vs ({fm:.3f}, {fv:.3f})",
            )
        )
        if one is not None:
            out.append(
                C.Check(
                    "α = 1: the global optimum is the reverse-KL one (the big mode)",
                    bool(abs(one[0] - rev[0][0]) < 0.05 and abs(one[1] / rev[0][1] - 1) < 0.05),
                    f"({one[0]:.3f}, {one[1]:.3f})",
                )
            )
        below1 = [a for a in alphas if a <= 1.0]
        v = np.array([data["optima"][a][0, 1] for a in below1])
        out.append(
            C.Check(
                "the global optimum's variance shrinks as α grows (mass-covering -> mode-seeking)",
                bool(np.all(np.diff(v) < 1e-6)),
                "variances "
                + ", ".join(f"{x:.2f}" for x in v)
                + f" at α = {', '.join(f'{a:g}' for a in below1)}",
            )
        )
    return out


def _measured(data) -> str:
    r0, r1 = _rel(data)
    text = (
        f"D_α/α -> KL(p‖q) (rel. error {r0[:, 1].max():.0e} at α = {SMALL[1]:g}); D_α -> KL(q‖p) "
        f"({r1[:, 1].max():.0e} at 1 ± {SMALL[1]:g})"
    )
    if 0.5 in data["grids"]:
        text += f"; {len(data['grids'][0.5])} local minima at α = 1/2"
    if 0.5 in data["grids"] and 0.6 in data["grids"]:
        a, b = (np.exp(2 * data["grids"][x][0, 1]) for x in (0.5, 0.6))
        text += f"; the global fit jumps (variance {a:.1f} at α = 0.5, {b:.1f} at 0.6)"
    if data["optima"]:
        alphas = sorted(data["optima"])
        text += "; global optimum (mean, var): " + ", ".join(
            f"α={a:g} ({data['optima'][a][0, 0]:.2f}, {data['optima'][a][0, 1]:.2f})"
            for a in alphas[:: max(1, len(alphas) // 5)]
        )
    return text


def _notes(data):
    notes = [
        "p = 0.3 N(-2, 0.5²) + 0.7 N(3, 1). Limits in float64 at five q's; forward-KL optimum "
        f"N({data['forward'][0]:.3g}, {data['forward'][1]:.4g}), reverse-KL minima N(3, 1)-like "
        "and N(-2, 0.25)-like.",
        f"Grid minima: strict local minima on a {data['cfg']['grid_num']}² grid of (loc, log σ) "
        "(divjax.landscape_grid), reported as (mean, variance).",
        "Narrower than 'smooth': D_α is smooth in α, but on this bimodal target the global "
        "minimizer is not: a broad minimum coexists with one minimum per mode, and between "
        "α = 0.5 and 0.6 the global one jumps from the broad basin to the big mode.",
    ]
    if not data["optima"]:
        notes.append(
            "The optimum's path over α (optimal_q) runs at the full size (divjax reproduce renyi)."
        )
    return notes


def figure(result):
    d = result.data
    fig, (ax1, ax2) = C.new_figure(2)
    r0, r1 = _rel(d)
    for i, (m, v) in enumerate(Q_SET):
        ax1.loglog(SMALL, r0[i], "o-", color=f"C{i}", label=f"N({m:g}, {v:g}): α -> 0")
        ax1.loglog(SMALL, r1[i], "s--", color=f"C{i}", mfc="none")
    ax1.loglog(SMALL, np.asarray(SMALL), "k:", lw=1, label="∝ α (dashed: α -> 1)")
    ax1.set(xlabel="α  (or |1 - α|)", ylabel="relative error", title="the two limits (exact)")
    ax1.legend(fontsize=7)
    (fm, fv), rev = d["forward"], d["reverse"]
    ax2.plot(fm, fv, "k*", ms=12, label="forward KL optimum")
    ax2.plot(*zip(*rev), "kX", ms=9, label="reverse KL minima")
    if d["optima"]:
        alphas = sorted(d["optima"])
        cmap = _cmap()
        for a in alphas:
            o = d["optima"][a]
            ax2.scatter(
                o[:, 0],
                o[:, 1],
                c=[cmap(a / max(alphas))] * len(o),
                s=[40] + [14] * (len(o) - 1),
                zorder=3,
            )
        glob = np.array([d["optima"][a][0] for a in alphas])
        ax2.plot(glob[:, 0], glob[:, 1], "-", color="gray", lw=1, label="global optimum as α grows")
        for a, (m, v, _) in zip(alphas, glob):
            ax2.annotate(f"{a:g}", (m, v), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for a, mins in d["grids"].items():
        ax2.plot(
            mins[:, 0],
            np.exp(2 * mins[:, 1]),
            "o",
            mfc="none",
            ms=9,
            label=f"grid minima α = {a:g}",
        )
    ax2.set(yscale="log", xlabel="mean of q", ylabel="variance of q", title="minima of D_α(q‖p)")
    ax2.legend(fontsize=7)
    return fig


def _cmap():
    from matplotlib import colormaps

    return colormaps["viridis"]
