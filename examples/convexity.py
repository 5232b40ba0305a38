r"""Is each divergence convex (or log-convex) in each parameterization? A numerical check.

The seed page claims forward KL and forward chi-square are convex in the
natural parameters, forward chi-square even log-convex (``log(1 + chi^2)``,
the log of ``int p^2 / q``, is convex), and that reverse chi-square is
nonconvex in every parameterization. This script evaluates the Hessian of
``theta -> D(q_theta)`` (and of ``log(1 + D)``) with ``jax.hessian`` in every
parameterization, at the same grid of ``q``'s (kept inside each divergence's
finite region), and prints the smallest eigenvalue found, relative to the
largest eigenvalue at the same point, and where it was found.

A negative relative eigenvalue is a counterexample: the function is not
convex there. Non-negative on the grid is evidence, not proof.

The figure: the smallest relative eigenvalue per divergence and parameterization
(green where no counterexample was found), and the forward KL drawn in
``mu_log_sigma`` and in ``natural`` coordinates.

Run: ``python examples/convexity.py`` (``--quick`` for a coarser grid). The
Hessians are computed in float64.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import landscape, plot  # noqa: E402
from divjax.coordinates import PARAMETERIZATIONS  # noqa: E402

# A point counts as convex when its smallest eigenvalue is >= -TOL times its largest |eigenvalue|
# (float64 round-off and quadrature error are far below this).
TOL = 1e-7


def q_grid(name: str, p: dj.GaussianMixture, num: int) -> dj.Gaussian:
    """``q``'s spanning the target, with scales inside the divergence's finite region."""
    m, s = np.asarray(p.locs), float(np.max(p.scales))
    locs = np.linspace(m.min() - 4 * s, m.max() + 4 * s, num)
    lo, hi = {
        "chi2_forward": (0.75 * s, 6.0 * s),  # finite iff sigma^2 > s^2 / 2
        "chi2_reverse": (0.2 * s, 1.35 * s),  # finite iff sigma^2 < 2 s^2
    }.get(name, (0.2 * s, 6.0 * s))
    scales = np.geomspace(lo, hi, num)
    loc, scale = np.meshgrid(locs, scales)
    return dj.Gaussian(jnp.asarray(loc.ravel()), jnp.asarray(np.log(scale.ravel())))


def eigenvalues(name, p, qs, log):
    """Hessian eigenvalues ``(n, 2)`` per parameterization, all in one compiled program."""
    params = tuple(PARAMETERIZATIONS)
    ev = jax.jit(lambda q: [dj.hessian_eigenvalues(name, p, n, q, log=log) for n in params])(qs)
    return dict(zip(params, (np.asarray(e) for e in ev)))


def worst(ev, qs):
    """``(min eigenvalue, min relative eigenvalue, (mu, sigma) there)`` over the grid."""
    if not np.all(np.isfinite(ev)):
        raise RuntimeError("non-finite Hessian: the grid left the finite region")
    rel = ev[:, 0] / np.max(np.abs(ev), axis=1)
    i = int(np.argmin(rel))
    return float(ev[:, 0].min()), float(rel[i]), (float(qs.loc[i]), float(qs.scale[i]))


def table(p: dj.GaussianMixture, num: int) -> list[dict]:
    rows = []
    for name in dj.DIVERGENCES:
        qs = q_grid(name, p, num)
        plain = eigenvalues(name, p, qs, log=False)
        logs = eigenvalues(name, p, qs, log=True) if name.startswith("chi2") else {}
        for param in PARAMETERIZATIONS:
            row = {"divergence": name, "parameterization": param}
            row["min_eig"], row["rel"], row["at"] = worst(plain[param], qs)
            if logs:
                row["log_min_eig"], row["log_rel"], row["log_at"] = worst(logs[param], qs)
            rows.append(row)
    return rows


def _verdict(rel: float) -> str:
    return "yes" if rel >= -TOL else "NO"


def rows_for_figure(rows) -> tuple[list[str], np.ndarray]:
    """Row labels and the ``(rows, parameterizations)`` matrix of relative eigenvalues."""
    labels, mat = [], []
    params = list(PARAMETERIZATIONS)
    for name in dj.DIVERGENCES:
        mine = {r["parameterization"]: r for r in rows if r["divergence"] == name}
        labels.append(name)
        mat.append([mine[n]["rel"] for n in params])
        if "log_rel" in mine[params[0]]:
            labels.append(f"log(1 + {name})")
            mat.append([mine[n]["log_rel"] for n in params])
    return labels, np.array(mat)


def draw(rows, p, path: Path) -> None:
    labels, mat = rows_for_figure(rows)
    params = list(PARAMETERIZATIONS)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained",
                             gridspec_kw={"width_ratios": [1.3, 1, 1]})  # fmt: skip
    ax = axes[0]
    convex = mat >= -TOL
    ax.imshow(np.where(convex, 1.0, 0.0),
              cmap=matplotlib.colors.ListedColormap(["#F4A6A6", "#A6DBA0"]),
              vmin=0, vmax=1, aspect="auto")  # fmt: skip
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            ax.text(j, i, f"{mat[i, j]:+.2g}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(params)), params, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("smallest Hessian eigenvalue / largest |eigenvalue| on the grid\n"
                 "green: no counterexample (convex on the grid); red: not convex",
                 fontsize=9)  # fmt: skip
    surface = landscape.surface("kl_forward", p, (-3.0, 6.0), (0.2, 2.0))
    optima = dj.optimal_q("kl_forward", p)
    for ax, param in zip(axes[1:], ("mu_log_sigma", "natural")):
        plot.landscape(surface, optima=optima, parameterization=param, ax=ax)
        ax.set_title(f"KL(p || q) in {param} coordinates", fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 7 x 7 grid instead of 15 x 15")
    parser.add_argument("--num", type=int, default=None, help="grid points per axis")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with jax.enable_x64(True):
        p = dj.default_target()
        num = args.num or (7 if args.quick else 15)
        print(
            f"target: weights {np.asarray(p.probs)}, locs {np.asarray(p.locs)}, "
            f"scales {np.asarray(p.scales)}; {num} x {num} grid of q's per divergence"
        )
        print(
            "min eig: smallest Hessian eigenvalue over the grid (theta coordinates); rel: smallest"
        )
        print(
            "(min / max |eigenvalue|) at one point, and 'at' that point's (mu, sigma); "
            "log: the same"
        )
        print(f"for log(1 + chi^2). convex = rel >= -{TOL:g}.\n")
        head = (
            f"{'divergence':<13} {'param':<13} {'min eig':>10} {'rel':>9} {'convex':>6} {'at':<14}"
        )
        print(head + f" {'log min eig':>11} {'log rel':>9} {'log-cvx':>7} {'at':<14}")
        rows = table(p, num)
        for r in rows:
            at = f"({r['at'][0]:.2f}, {r['at'][1]:.2f})"
            line = f"{r['divergence']:<13} {r['parameterization']:<13} {r['min_eig']:>10.3g} "
            line += f"{r['rel']:>9.3g} {_verdict(r['rel']):>6} {at:<14}"
            if "log_rel" in r:
                log_at = f"({r['log_at'][0]:.2f}, {r['log_at'][1]:.2f})"
                line += f" {r['log_min_eig']:>11.3g} {r['log_rel']:>9.3g}"
                line += f" {_verdict(r['log_rel']):>7} {log_at}"
            print(line.rstrip())
        path = args.out / "convexity.png"
        draw(rows, p, path)
    print(f"saved {path}")
    return rows


if __name__ == "__main__":
    main()
