"""Where the chi-squares are infinite, and what the Monte Carlo estimators do there.

For p with widest component variance s^2 (= 1 here) and q = N(mu, sigma^2):
chi^2(p || q) is infinite iff sigma^2 <= s^2 / 2, chi^2(q || p) iff sigma^2 >= 2 s^2.
Before those walls the estimators' variance is already infinite (snis2 from
sigma^2 <= 3 s^2 / 4, score from sigma^2 >= 3 s^2 / 2). This prints both
divergences and the estimators' statistics across sigma^2, then fits reverse
chi-square from the default start N(0, 5), where it is infinite.

    python examples/infinite_chi2.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import landscape, paths, plot  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    return parser.parse_args(argv)


def _f(v) -> str:
    return f"{float(v):10.3g}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    p, q0 = dj.default_target(), dj.default_q0()
    num_draws = 100 if args.quick else 2000
    num_steps = 100 if args.quick else 600
    variances = np.array([0.3, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 1.8, 2.0, 3.0, 5.0])
    qs = dj.Gaussian(jnp.full(variances.size, 1.0), 0.5 * jnp.log(jnp.asarray(variances)))
    fwd = landscape.path_values("chi2_forward", p, qs)
    rev = landscape.path_values("chi2_reverse", p, qs)
    key = jax.random.key(0)
    k = 16
    stats = {
        ("chi2_forward", "snis2"): dj.grad_stats("chi2_forward", "snis2", p, qs, k, num_draws, key),
        ("chi2_reverse", "score"): dj.grad_stats("chi2_reverse", "score", p, qs, k, num_draws, key),
    }
    s2 = stats[("chi2_forward", "snis2")]
    sc = stats[("chi2_reverse", "score")]
    print(f"q = N(1, sigma^2); widest component variance s^2 = 1; K = {k}, {num_draws} draws")
    print(
        f"{'sigma^2':>7} {'chi2(p||q)':>10} {'chi2(q||p)':>10} | {'snis2 var':>10} {'inf var':>7}"
        f" | {'score var':>10} {'inf var':>7} {'score mean':>10} {'exact':>10}"
    )
    for i, v in enumerate(variances):
        print(
            f"{v:7.2f} {_f(fwd[i])} {_f(rev[i])} | {_f(s2.sample_variance.loc[i])}"
            f" {str(bool(s2.infinite_variance[i])):>7} | {_f(sc.sample_variance.loc[i])}"
            f" {str(bool(sc.infinite_variance[i])):>7} {_f(sc.mean.loc[i])} {_f(sc.exact.loc[i])}"
        )
    print("(sample variances of d/dloc; 'exact' is the estimand. A sample variance is finite, or")
    print(" overflows the float type, whatever the true variance: past the walls it means nothing)")
    print(dj.infinite_reason("chi2_reverse", p, q0))

    optima = dj.optimal_q("chi2_reverse", p)
    print(f"\nfitting chi2(q || p) from N(0, 5), {num_steps} steps (lr 0.05, momentum 0.9):")
    fits = {}
    names = {0: "global", 1: "local", -1: "stuck", -2: "diverged"}
    for est in ("exact", "score_sn") if args.quick else ("exact", "score", "score_sn"):
        path, div = paths.fit_paths(
            p, q0, "chi2_reverse", est, num_samples=k, num_seeds=4, num_steps=num_steps, key=key
        )
        end = dj.Gaussian._make((jnp.asarray(path.loc[:, -1]), jnp.asarray(path.log_scale[:, -1])))
        where = np.where(div >= 0, -2, np.asarray(dj.classify(end, optima)))
        summary = ", ".join(
            f"{names[int(w)]}" + (f"@{int(d)}" if d >= 0 else "") for w, d in zip(where, div)
        )
        print(f"  {est:<9} seeds: {summary}")
        fits[est] = {"where": where.tolist(), "diverged_at": div.tolist()}

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    grid = np.geomspace(0.2, 6.0, 200)
    qg = dj.Gaussian(jnp.full(grid.size, 1.0), 0.5 * jnp.log(jnp.asarray(grid)))
    for name, color in (("chi2_forward", "#2C7FB8"), ("chi2_reverse", plot.PURPLE)):
        vals = np.asarray(landscape.path_values(name, p, qg))
        ax0.plot(
            grid, np.where(np.isfinite(vals), vals, np.nan), color=color, label=plot.LABELS[name]
        )
    ax0.axvspan(0.2, 0.5, color=plot.INFINITE, alpha=0.5, label=r"$\chi^2(p\|q) = \infty$")
    ax0.axvspan(
        2.0, 6.0, color=plot.INFINITE, hatch="//", alpha=0.5, label=r"$\chi^2(q\|p) = \infty$"
    )
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    ax0.set_xlabel(r"$\sigma^2$ (q = N(1, $\sigma^2$))")
    ax0.set_ylabel("divergence")
    ax0.set_title("the chi-squares across q's variance")
    ax0.legend(fontsize=8)
    for (name, est), st, color in zip(stats, (s2, sc), ("#2C7FB8", plot.PURPLE)):
        ax1.plot(
            variances,
            np.asarray(st.sample_variance.loc),
            "o-",
            color=color,
            label=f"{est} ({name})",
        )
    ax1.axvspan(
        0.2, 0.75, color="#2C7FB8", alpha=0.12, label="snis2: infinite (asymptotic) variance"
    )
    ax1.axvspan(1.5, 6.0, color=plot.PURPLE, alpha=0.12, label="score: infinite variance")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(r"$\sigma^2$")
    ax1.set_ylabel(f"sample variance of d/dloc (K = {k}, {num_draws} draws)")
    ax1.set_title("what the estimators report")
    ax1.legend(fontsize=8)
    for ax in (ax0, ax1):
        ticks = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    out = args.out / "infinite_chi2.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"saved {out}")
    return {
        "chi2_forward": np.asarray(fwd).tolist(),
        "chi2_reverse": np.asarray(rev).tolist(),
        "fits": fits,
    }


if __name__ == "__main__":
    main()
