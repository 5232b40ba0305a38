"""Why Monte Carlo fits get stuck: forward KL started on one mode.

KL(p || q) is convex in q's natural parameters, so exact gradient descent always
reaches the moment-matching optimum. Its Monte Carlo gradient (self-normalized
importance sampling, ``snis``) only sees what q's samples see: started on the small
mode N(-2, 0.5^2), q's K samples rarely land near the big mode at 3, so the
estimate has little signal to move towards it.

One `divjax.sweep` runs every K for every seed with two optimizers: Adam (step
0.05), whose steps are bounded by its learning rate, and the seed post's SGD with
momentum 0.9 (step 0.05), whose first steps are huge (the log-scale gradient at the
start is -72) and throw q far from where it started. This prints, per optimizer and
K, how the fits ended (`divjax.status` outcomes) and how many are still on the left
mode, next to the exact fits.

    python examples/mc_stuck.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import landscape, paths, plot  # noqa: E402
from divjax.plot.style import OUTCOME_LABELS  # noqa: E402
from divjax.status import OUTCOMES, outcome_masks  # noqa: E402

OPTIMIZERS = {"adam": optax.adam(0.05), "sgd": optax.sgd(0.05, momentum=0.9)}
SHOWN = ("global", "stuck", "moving", "ran_away", "diverged")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    return parser.parse_args(argv)


def on_left_mode(run, masks) -> np.ndarray:
    """Not at the optimum, and the final mean still within 0.5 of the small mode at -2."""
    return (np.abs(run.q.loc + 2.0) < 0.5) & ~masks["global"]


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    p = dj.default_target()
    q_start = dj.Gaussian.from_loc_scale(-2.0, 0.5)
    name, estimator = "kl_forward", "snis"
    ks = (2, 8, 32) if args.quick else (2, 4, 8, 16, 32, 64, 128)
    num_seeds = 8 if args.quick else 64
    num_steps = 200 if args.quick else 1000
    key = jax.random.key(0)
    optima = dj.optimal_q(name, p)
    res = dj.sweep(
        p, q_start, [(name, "exact"), (name, estimator)], num_samples=ks, num_seeds=num_seeds,
        num_steps=num_steps, optimizers=OPTIMIZERS, key=key, optima={name: optima}, progress=False,
    )  # fmt: skip
    print(f"forward KL from N(-2, 0.5^2) (on the small mode), {num_steps} steps, {num_seeds} seeds")
    print(
        f"{'optimizer':<9} {'K':>5} "
        + " ".join(f"{o:>8}" for o in SHOWN)
        + f" {'on left mode':>12}"
    )
    fractions: dict = {label: {} for label in OPTIMIZERS}
    left: dict = {label: {} for label in OPTIMIZERS}
    exact = {}
    for run in res.runs:
        label, k = run.config.optimizer, run.config.num_samples
        masks = outcome_masks(run.status)
        if run.config.estimator == "exact":
            exact[label] = str(run.status.outcome()[0])
            where = f"loc {run.q.loc[0]:.2f}, scale {np.exp(run.q.log_scale[0]):.2f}"
            print(f"{label:<9} {'exact':>5}  ends at {where}: {exact[label]}")
            continue
        fractions[label][k] = {o: float(np.mean(m)) for o, m in masks.items()}
        left[label][k] = float(np.mean(on_left_mode(run, masks)))
        cells = " ".join(f"{fractions[label][k][o]:8.2f}" for o in SHOWN)
        print(f"{label:<9} {k:5d} {cells} {left[label][k]:12.2f}")
    print("the exact gradient reaches the optimum; a snis fit only moves towards the big mode")
    print("when its samples land there. 'on left mode': not at the optimum, mean within 0.5 of -2.")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5.0), layout="constrained")
    kw = dict(num_steps=num_steps, optimizer="adam", learning_rate=0.05)
    show = {"exact": paths.fit_paths(p, q_start, name, key=key, **kw)[0]}
    for k in (ks[0], ks[-1]):
        sub = jax.random.fold_in(key, k)
        path, _ = paths.fit_paths(
            p, q_start, name, estimator, num_samples=k, num_seeds=4, key=sub, **kw
        )
        show[f"snis, K = {k} (4 seeds)"] = path
    surface = landscape.surface(name, p, (-4.0, 5.0), (-1.2, 2.0))
    plot.landscape(
        surface,
        trajectories=show,
        optima=optima,
        ax=ax0,
        title=r"Adam (0.05) paths over $\mathrm{KL}(p\,\|\,q)$",
    )
    width = 0.38
    x = np.arange(len(ks))
    for j, label in enumerate(OPTIMIZERS):
        pos = x + (j - 0.5) * width
        bottom = np.zeros(len(ks))
        for o in OUTCOMES:
            frac = np.array([fractions[label][k][o] for k in ks])
            if frac.any():
                color = plot.OUTCOME_COLORS[o]
                ax1.bar(
                    pos, frac, width * 0.95, bottom=bottom, color=color, label=OUTCOME_LABELS[o]
                )
                bottom += frac
        ax1.plot(
            pos, [left[label][k] for k in ks], "D", color="k", ms=6, label="still on the left mode"
        )
        for xx in pos:
            ax1.text(xx, 1.02, label, ha="center", fontsize=7)
    handles, labels = ax1.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one entry per outcome, in drawing order
    ax1.legend(
        unique.values(),
        unique.keys(),
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
    )
    ax1.set_xticks(x, [str(k) for k in ks])
    ax1.set_ylim(0, 1.09)
    ax1.set_xlabel("K (samples per step)")
    ax1.set_ylabel(f"fraction of {num_seeds} seeds")
    ax1.set_title("how snis fits end, per optimizer", fontsize=10)
    out_path = args.out / "mc_stuck.png"
    fig.savefig(out_path, dpi=80)
    plt.close(fig)
    print(f"saved {out_path}")
    return {"exact": exact, "fractions": fractions, "left_mode": left}


if __name__ == "__main__":
    main()
