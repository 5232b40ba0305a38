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

Run: ``python examples/convexity.py`` (``--quick`` for a coarser grid).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import divjax as dj
from divjax.parameterizations import PARAMETERIZATIONS, hessian_eigenvalues

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


def worst(name, p, param, qs, log):
    """``(min relative eigenvalue, min eigenvalue, q there)`` over the grid."""
    ev = np.asarray(hessian_eigenvalues(name, p, param, qs, log=log))
    rel = ev[:, 0] / np.max(np.abs(ev), axis=1)
    if not np.all(np.isfinite(rel)):
        raise RuntimeError(f"non-finite Hessian for {name} in {param}: grid leaves the finite region")
    i = int(np.argmin(rel))
    return rel[i], ev[i, 0], (float(qs.loc[i]), float(qs.scale[i]))


def table(p: dj.GaussianMixture, num: int) -> list[dict]:
    rows = []
    for name in dj.DIVERGENCES:
        qs = q_grid(name, p, num)
        for param in PARAMETERIZATIONS:
            row = {"divergence": name, "parameterization": param}
            row["rel"], row["min_eig"], row["at"] = worst(name, p, param, qs, log=False)
            if name.startswith("chi2"):
                row["log_rel"], row["log_min_eig"], row["log_at"] = worst(
                    name, p, param, qs, log=True
                )
            rows.append(row)
    return rows


def _verdict(rel: float) -> str:
    return "yes" if rel >= -TOL else "NO"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 9 x 9 grid instead of 25 x 25")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    p = dj.default_target()
    num = 9 if args.quick else 25
    print(f"target: weights {np.asarray(p.probs)}, locs {np.asarray(p.locs)}, "
          f"scales {np.asarray(p.scales)}; grid {num} x {num} q's per divergence")
    print("rel = min over the grid of (smallest / largest |eigenvalue|) of the Hessian in theta;")
    print("log columns: the same for log(1 + chi^2). 'at' = (mu, sigma) of the worst point.\n")
    head = f"{'divergence':<13} {'param':<13} {'rel':>10} {'convex':>6}  {'at (mu, sigma)':<16}"
    print(head + f" {'log rel':>10} {'log-cvx':>7}  {'at (mu, sigma)':<16}")
    for r in table(p, num):
        at = f"({r['at'][0]:.2f}, {r['at'][1]:.2f})"
        line = f"{r['divergence']:<13} {r['parameterization']:<13} {r['rel']:>10.3g} "
        line += f"{_verdict(r['rel']):>6}  {at:<16}"
        if "log_rel" in r:
            log_at = f"({r['log_at'][0]:.2f}, {r['log_at'][1]:.2f})"
            line += f" {r['log_rel']:>10.3g} {_verdict(r['log_rel']):>7}  {log_at:<16}"
        print(line)


if __name__ == "__main__":
    main()
