"""Why Monte Carlo fits get stuck: forward KL started on one mode.

KL(p || q) is convex in q's natural parameters, so exact gradient descent always
reaches the moment-matching optimum. Its Monte Carlo gradient (self-normalized
importance sampling, ``snis``) only sees what q's samples see: started on the small
mode N(-2, 0.5^2), q's K samples almost never land near the big mode at 3, so the
estimate has no signal to move towards it. This prints, per K, the fraction of
seeds still sitting on the left mode at the end, next to the exact fit.

    python examples/mc_stuck.py [--quick] [--out DIR]
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
from divjax import plot  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    return parser.parse_args(argv)


def outcome(path: dj.Gaussian, optimum: dj.Gaussian) -> np.ndarray:
    """'left mode' / 'optimum' / 'elsewhere' from the mean of the last tenth of each path."""
    tail = max(1, path.loc.shape[1] // 10)
    loc = np.mean(path.loc[:, -tail:], axis=1)
    log_scale = np.mean(path.log_scale[:, -tail:], axis=1)
    near_opt = (np.abs(loc - float(optimum.loc)) < 0.2 * float(optimum.scale)) & (
        np.abs(log_scale - float(optimum.log_scale)) < 0.2
    )
    on_left = np.abs(loc + 2.0) < 0.5
    return np.where(near_opt, "optimum", np.where(on_left, "left mode", "elsewhere"))


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    p = dj.default_target()
    q_start = dj.Gaussian.from_loc_scale(-2.0, 0.5)
    name, estimator = "kl_forward", "snis"
    ks = (2, 8, 32) if args.quick else (2, 4, 8, 16, 32, 64, 128)
    num_seeds = 8 if args.quick else 64
    num_steps = 200 if args.quick else 600
    key = jax.random.key(0)
    optima = dj.optimal_q("kl_forward", p)
    opt_q = dj.Gaussian._make((optima.q.loc[0], optima.q.log_scale[0]))
    exact, _ = plot.fit_paths(p, q_start, name, num_steps=num_steps, key=key)
    exact_out = outcome(exact, opt_q)[0]
    print(f"forward KL from N(-2, 0.5^2) (on the small mode), {num_steps} steps, {num_seeds} seeds")
    end = f"loc {exact.loc[0, -1]:.2f}, scale {np.exp(exact.log_scale[0, -1]):.2f}"
    print(f"exact gradient: ends at {end} -> {exact_out}")
    print(f"{'K':>5} {'at optimum':>11} {'stuck':>6} = {'on left mode':>12} + {'elsewhere':>9}")
    fractions, paths = {}, {}
    for k in ks:
        path, _ = plot.fit_paths(
            p,
            q_start,
            name,
            estimator,
            num_samples=k,
            num_seeds=num_seeds,
            num_steps=num_steps,
            key=jax.random.fold_in(key, k),
        )
        out = outcome(path, opt_q)
        fractions[k] = {o: float(np.mean(out == o)) for o in ("left mode", "optimum", "elsewhere")}
        f = fractions[k]
        stuck = f["left mode"] + f["elsewhere"]
        split = f"{f['left mode']:12.2f} + {f['elsewhere']:9.2f}"
        print(f"{k:5d} {f['optimum']:11.2f} {stuck:6.2f} = {split}")
        paths[k] = path
    print("stuck = not at the optimum after all steps (the exact gradient always gets there).")
    print("'on left mode': the samples never reached the big mode, so the estimate had no signal")
    print("to move there; 'elsewhere': noisy small-K estimates kick q around without finding it.")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    show = {"exact": exact}
    for k in (ks[0], ks[-1]):
        sel = jax.tree_util.tree_map(lambda a: a[:4], paths[k])
        show[f"snis, K = {k} (4 seeds)"] = sel
    plot.landscape(
        name,
        p,
        trajectories=show,
        optima=optima,
        loc_range=(-4, 7),
        log_scale_range=(-1.2, 4.0),
        ax=ax0,
    )
    bottom = np.zeros(len(ks))
    colors = {
        "left mode": plot.OUTCOME_COLORS["stuck"],
        "optimum": plot.OUTCOME_COLORS["global"],
        "elsewhere": "0.6",
    }
    for o, c in colors.items():
        frac = np.array([fractions[k][o] for k in ks])
        ax1.bar(np.arange(len(ks)), frac, bottom=bottom, color=c, label=o)
        bottom += frac
    ax1.set_xticks(np.arange(len(ks)), [str(k) for k in ks])
    ax1.set_xlabel("K (samples per step)")
    ax1.set_ylabel("fraction of seeds")
    ax1.set_title(f"where snis fits end (exact gradient: {exact_out})")
    ax1.legend(fontsize=8)
    out_path = args.out / "mc_stuck.png"
    fig.savefig(out_path, dpi=80)
    plt.close(fig)
    print(f"saved {out_path}")
    return {"exact": str(exact_out), "fractions": fractions}


if __name__ == "__main__":
    main()
