"""Step size and momentum: gradient descent on KL(p || q) with exact gradients.

The seed post's experiment: too small a step crawls, too large a step oscillates or
blows up, momentum 0 / 0.9 / 0.99 changes how fast (and how smoothly) the fit
arrives, and a negative step size climbs the divergence ("machine running away"),
which divjax reports as diverged instead of crashing. All runs start from
N(0, 5), are SGD with heavy-ball momentum, and run in one compiled program
(`divjax.paths.fit_paths`).

    python examples/step_size_momentum.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import landscape, paths, plot  # noqa: E402

# (label, learning rate, momentum)
RUNS = [
    ("too small", 0.001, 0.0),
    ("plain", 0.05, 0.0),
    ("momentum 0.9", 0.05, 0.9),
    ("momentum 0.99", 0.05, 0.99),
    ("large", 2.0, 0.0),
    ("too large", 3.0, 0.0),
    ("negative", -0.02, 0.0),
]
SHOWN = ("too small", "plain", "momentum 0.9", "momentum 0.99", "large")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    p, q0 = dj.default_target(), dj.default_q0()
    name = "kl_forward"
    num_steps = 200 if args.quick else 1000
    optimum = dj.optimal_q(name, p)
    best = float(optimum.value[0])
    path, diverged_at = paths.fit_paths(
        p, q0, name, learning_rate=[lr for _, lr, _ in RUNS], momentum=[m for _, _, m in RUNS],
        num_steps=num_steps, key=jax.random.key(0),
    )  # fmt: skip
    gap = np.asarray(landscape.path_values(name, p, path), np.float64) - best
    print(f"KL(p || q) from N(0, 5), {num_steps} steps; optimum KL* = {best:.4f}")
    head = f"{'run':<14} {'step':>6} {'momentum':>8} {'final KL - KL*':>15}"
    print(f"{head} {'first < 1e-3':>13}  status")
    findings = {}
    for i, (label, lr, mom) in enumerate(RUNS):
        reached = np.nonzero(gap[i] < 1e-3)[0]
        to_tol = int(reached[0]) if reached.size else None
        div = int(diverged_at[i])
        status = f"diverged at step {div}" if div >= 0 else "finite throughout"
        shown = "never" if to_tol is None else str(to_tol)
        print(f"{label:<14} {lr:6g} {mom:8g} {gap[i, -1]:15.3g} {shown:>13}  {status}")
        findings[label] = {"gap": float(gap[i, -1]), "diverged_at": div, "steps_to_tol": to_tol}

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    colors = dict(zip((label for label, _, _ in RUNS), plt.get_cmap("tab10").colors))
    steps = np.arange(num_steps + 1)
    for i, (label, lr, mom) in enumerate(RUNS):
        ax0.plot(
            steps,
            np.maximum(gap[i], 1e-8),
            color=colors[label],
            label=f"{label} (lr {lr:g}, m {mom:g})",
        )
        if diverged_at[i] >= 0:
            at = int(diverged_at[i])
            ax0.plot(at, max(gap[i, at], 1e-8), "x", color=colors[label], ms=9, mew=2)
    ax0.set_yscale("log")
    ax0.set_xlabel("step")
    ax0.set_ylabel(r"$\mathrm{KL}(p\,\|\,q) - \mathrm{KL}^*$")
    ax0.set_title("distance to the optimum (x = diverged; frozen after)", fontsize=10)
    ax0.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, frameon=False)
    shown = {
        label: dj.Gaussian._make((path.loc[i], path.log_scale[i]))
        for i, (label, _, _) in enumerate(RUNS)
        if label in SHOWN
    }
    surface = landscape.surface(name, p, (-3.0, 5.0), (-0.5, 2.5))
    plot.landscape(surface, trajectories=shown, optima=optimum, colors=colors, ax=ax1)
    out = args.out / "step_size_momentum.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"saved {out}")
    return findings


if __name__ == "__main__":
    main()
