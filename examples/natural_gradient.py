r"""The natural gradient: one direction in every parameterization, Newton's method in one of them.

Prints three tables for the default target ``p = 0.3 N(-2, 0.5^2) + 0.7 N(3, 1)``:

1. the natural gradient of each divergence at one ``q``, computed in each
   parameterization (``jax.grad`` through the map, preconditioned by that
   parameterization's inverse Fisher) and pushed forward to
   ``(mu, log sigma)``: the same vector every time;
2. natural-gradient descent with step size 1 on the forward KL in ``natural``
   coordinates, a Newton step: the error ``||eta_k - eta*||`` and
   ``e_{k+1} / e_k^2`` (bounded: quadratic convergence), next to
   ``expectation`` coordinates, where one step lands on moment matching;
3. (skipped with ``--quick``) the same step-size-1 iteration in every
   parameterization: the direction is invariant, the discrete path is not.

The figure: the natural-gradient paths of table 3 over the forward KL, in
``mu_log_sigma`` coordinates, and the Newton error of table 2.

Run: ``python examples/natural_gradient.py [--quick] [--out DIR]`` (float64).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import landscape, plot  # noqa: E402
from divjax.coordinates import PARAMETERIZATIONS, mu_log_sigma  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip table 3")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    return parser.parse_args(argv)


def pushed_forward(name, p, q):
    """The natural gradient in every parameterization, pushed forward to (mu, log sigma): (5, 2)."""

    def one(param):
        theta = param.from_gaussian(q)
        g = jax.grad(lambda t: dj.divergence(name, p, param.to_gaussian(t)))(theta)
        d = dj.natural_direction(param, theta, g)
        to_mls = lambda t: mu_log_sigma.from_gaussian(param.to_gaussian(t))  # noqa: E731
        return jax.jvp(to_mls, (theta,), (d,))[1]

    return jnp.stack([one(param) for param in PARAMETERIZATIONS.values()])


def invariance_table(p, q) -> dict:
    print(
        f"1. natural gradient at q = N({float(q.loc):.2f}, {float(q.scale):.2f}^2) in each "
        "parameterization, pushed forward to (mu, log sigma)"
    )
    print(
        f"   {'divergence':<13} {'d mu':>14} {'d log sigma':>14}  max relative deviation over "
        f"{', '.join(PARAMETERIZATIONS)}"
    )
    out = {}
    for name in dj.DIVERGENCES:
        rows = np.asarray(jax.jit(pushed_forward, static_argnums=0)(name, p, q))
        dev = float(np.max(np.abs(rows - rows[0])) / np.max(np.abs(rows[0])))
        print(f"   {name:<13} {rows[0, 0]:14.6e} {rows[0, 1]:14.6e}  {dev:.1e}")
        out[name] = dev
    return out


def step_one_fit(p, parameterization, num_steps):
    """Natural-gradient descent on the forward KL with step size 1, from q0 = N(0, 5)."""
    return dj.fit(
        p, dj.default_q0(), "kl_forward", parameterization=parameterization, natural_gradient=True,
        optimizer=optax.sgd(1.0), num_steps=num_steps, trace_value=False, progress=False,
    )  # fmt: skip


def newton_table(p, num_steps=8) -> dict:
    mean, var = float(p.mean()), float(p.variance())
    nat = PARAMETERIZATIONS["natural"]
    res = step_one_fit(p, "natural", num_steps)
    eta_star = nat.from_gaussian(dj.Gaussian.from_loc_variance(mean, var))
    eta = np.concatenate([nat.from_gaussian(dj.default_q0())[None], nat.from_gaussian(res.trace.q)])
    err = np.linalg.norm(eta - eta_star, axis=-1)
    print(
        f"\n2. forward KL, natural gradient, step size 1, from q0 = N(0, 5); "
        f"optimum N({mean:g}, {var:g})"
    )
    print("   natural coordinates (= Newton's method):")
    print(f"   {'k':>3} {'||eta_k - eta*||':>18} {'e_k / e_(k-1)^2':>16}")
    ratios = []
    for k, e in enumerate(err):
        ratio = e / err[k - 1] ** 2 if k and err[k - 1] > 1e-7 else None
        if ratio is not None:
            ratios.append(float(ratio))
        print(f"   {k:>3} {e:18.3e} " + (f"{ratio:16.4f}" if ratio is not None else ""))
    one = step_one_fit(p, "expectation", 1)
    print(
        f"   expectation coordinates, one step: q1 = N({float(one.q.loc):.15f}, "
        f"{float(one.q.variance):.15f}); moment match N({mean}, {var})"
    )
    return {
        "errors": err.tolist(),
        "ratios": ratios,
        "expectation_step": (float(one.q.loc), float(one.q.variance)),
        "natural_path": res.trace.q,
    }


def paths_table(p, names, num_steps=6) -> dict:
    mean, var = float(p.mean()), float(p.variance())
    print("\n3. the same iteration in every parameterization:")
    print(f"   max(|mu_k - {mean:g}|, |sigma_k^2 / {var:g} - 1|)")
    print("   (the direction is invariant, the discrete path is not)")
    head = " ".join(f"{'k=' + str(k):>9}" for k in range(1, num_steps + 1))
    print(f"   {'parameterization':<16} {head}  status")
    out = {}
    for name in names:
        res = step_one_fit(p, name, num_steps)
        err = np.maximum(
            np.abs(np.asarray(res.trace.q.loc) - mean),
            np.abs(np.asarray(res.trace.q.variance) / var - 1),
        )
        print(f"   {name:<16} " + " ".join(f"{e:9.2e}" for e in err) + "  " + res.status.describe())
        out[name] = (err.tolist(), res.trace.q)
    return out


def draw(p, newton, paths, path: Path) -> None:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12.5, 4.8), layout="constrained")
    q0 = dj.default_q0()
    show = {}
    for name, (_, trace) in paths.items():
        show[f"{name} coordinates"] = jax.tree_util.tree_map(
            lambda a, b: np.concatenate([np.atleast_1d(np.asarray(a)), np.asarray(b)]), q0, trace
        )
    surface = landscape.surface("kl_forward", p, (-0.5, 2.5), (0.55, 1.25))
    plot.landscape(surface, trajectories=show, optima=dj.optimal_q("kl_forward", p), ax=ax0,
                   title="natural gradient, step 1: the path depends on the coordinates",
                   )  # fmt: skip
    err = np.asarray(newton["errors"])
    k = np.arange(err.size)
    ax1.semilogy(k, np.maximum(err, 1e-17), "o-", color=plot.PURPLE)
    ax1.set_xlabel("step k")
    ax1.set_ylabel(r"$\|\eta_k - \eta^*\|$")
    ax1.set_title("natural coordinates: Newton's method, quadratic convergence", fontsize=10)
    ax1.axhline(np.finfo(np.float64).eps, color="0.6", ls=":", lw=1)
    ax1.text(
        k[-1],
        np.finfo(np.float64).eps * 2,
        "float64 eps",
        ha="right",
        va="bottom",
        fontsize=8,
        color="0.4",
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with jax.enable_x64(True):
        p = dj.default_target()
        findings = {"invariance": invariance_table(p, dj.Gaussian.from_loc_scale(0.5, 1.2))}
        newton = newton_table(p)
        names = ("natural", "expectation") if args.quick else tuple(PARAMETERIZATIONS)
        paths = paths_table(p, names)
        path = args.out / "natural_gradient.png"
        draw(p, newton, paths, path)
    findings.update(
        newton_errors=newton["errors"], newton_ratios=newton["ratios"],
        expectation_step=newton["expectation_step"], paths={n: e for n, (e, _) in paths.items()},
    )  # fmt: skip
    print(f"saved {path}")
    return findings


if __name__ == "__main__":
    main()
