r"""Beyond 1-D: the same fits on a 2-D target, with full-rank and mixture families.

The target is a 2-D mixture of two correlated Gaussians. The script prints and
draws:

1. ``divjax.optimal_q`` for every divergence over full-rank Gaussians: forward
   KL's moment match (closed form), forward chi-square's single minimum
   (closed-form objective), and the reverse divergences' minima (2-D
   quadrature);
2. Monte Carlo fits with the 1-D estimators, unchanged: ``msc_rb`` (forward KL)
   and ``stl`` (reverse KL) on a full-rank q, judged against those optima, each
   drawn by ``divjax.plot.fit_panel2d`` with one draw of its samples;
3. a two-component ``MixtureGaussian`` q fitted by ``reinforce_cv`` (a
   score-function estimator: the component draw is not reparameterizable). It
   finds both modes and their weights; its components are diagonal, so p's
   correlated components are matched only approximately.

Run: ``python examples/beyond_1d.py`` (``--quick``: fewer steps, and no
chi2_reverse optimum, the slowest search).
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
from matplotlib.lines import Line2D  # noqa: E402

import divjax as dj  # noqa: E402
from divjax import paths, plot  # noqa: E402

COLORS = {"kl_forward": "#1B9E77", "kl_reverse": "#D95F02", "chi2_forward": "#7570B3",
          "chi2_reverse": "#E7298A"}  # fmt: skip
MC_FITS = (("kl_forward", "msc_rb"), ("kl_reverse", "stl"))


def target() -> dj.GaussianMixture:
    return dj.GaussianMixture(
        [0.3, 0.7],
        [[-2.0, 0.0], [2.0, 1.0]],
        covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.8, -0.2], [-0.2, 1.2]]],
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    return parser.parse_args(argv)


def describe(loc, cov, value) -> str:
    loc, cov = np.asarray(loc), np.asarray(cov)
    return (
        f"({loc[0]:6.3f}, {loc[1]:6.3f})  sd ({np.sqrt(cov[0, 0]):.3f}, {np.sqrt(cov[1, 1]):.3f})"
        f"  corr {cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]):+.3f}  D = {float(value):.4f}"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    p = target()
    steps = 600 if args.quick else 3000
    key = jax.random.key(0)
    findings: dict = {"optima": {}, "fits": {}}

    print("divjax.optimal_q over full-rank Gaussians (row 0 global):")
    optima = {}
    names = [n for n in dj.DIVERGENCES if not (args.quick and n == "chi2_reverse")]
    for name in names:
        opt = dj.optimal_q(name, p, family="full")
        optima[name] = opt
        covs = opt.q.covariance()
        print(f"  {name}: {opt.value.shape[0]} minimum(s)")
        for i in range(opt.value.shape[0]):
            print(f"    #{i} {describe(opt.q.loc[i], covs[i], opt.value[i])}")
        findings["optima"][name] = int(opt.value.shape[0])

    q0 = dj.FullRankGaussian.from_cov([0.0, -1.0], [[4.0, 0.0], [0.0, 4.0]])
    print(
        f"\nMonte Carlo fits from N((0, -1), 4 I), K = 16, "
        f"{steps} steps of SGD(0.01, momentum 0.9):"
    )
    fits = {}
    for name, est in MC_FITS:
        res = dj.fit(
            p, q0, name, est, num_samples=16, key=key, num_steps=steps, learning_rate=0.01,
            optima=optima[name], trace_value=False, progress=False,
        )  # fmt: skip
        fits[name] = res
        print(f"  {name:11s} {est:7s} {res.status.describe()}")
        findings["fits"][name] = str(res.status.outcome())

    m0 = dj.MixtureGaussian(jnp.zeros(2), jnp.array([[-1.0, 0.0], [1.0, 0.0]]), jnp.zeros((2, 2)))
    mix = dj.fit(
        p, m0, "kl_reverse", "reinforce_cv", num_samples=32, key=key, num_steps=steps,
        learning_rate=0.01, progress=False,
    )  # fmt: skip
    w = np.asarray(mix.q.probs)
    print("\nMixtureGaussian q (diagonal components) by reinforce_cv (K = 32):")
    print("  weights", np.round(w, 3), "(p: 0.3, 0.7)")
    for c in range(2):
        loc, sd = np.asarray(mix.q.locs[c]), np.exp(np.asarray(mix.q.log_scales[c]))
        print(f"  component {c}: loc ({loc[0]:.3f}, {loc[1]:.3f})  sd ({sd[0]:.3f}, {sd[1]:.3f})")
    print(f"  {mix.status.describe()}")
    findings["mixture_weights"] = sorted(w.tolist())

    window = ((-6.0, 6.0), (-4.0, 5.0))
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.6), layout="constrained")
    ax = axes[0, 0]
    z1, z2 = np.meshgrid(np.linspace(*window[0], 160), np.linspace(*window[1], 160))
    dens = np.exp(np.asarray(p.log_prob(jnp.stack([z1, z2], -1))))
    ax.contourf(z1, z2, dens, levels=10, cmap="Greys", alpha=0.8)
    handles = []
    for name, opt in optima.items():
        covs = opt.q.covariance()
        for i in range(opt.value.shape[0]):
            ls = "-" if i == 0 else ":"
            ax.add_patch(plot.ellipse(opt.q.loc[i], covs[i], ec=COLORS[name], lw=2, ls=ls))
        handles.append(Line2D([], [], color=COLORS[name], lw=2, label=plot.LABELS[name]))
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title("optimal $q^*$ over full-rank Gaussians (2-sd ellipses) on $p$", fontsize=9)
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncols=2, frameon=False)  # fmt: skip
    for ax, (name, est) in zip((axes[0, 1], axes[1, 0]), MC_FITS):
        res = fits[name]
        aux = paths.draw_aux(p, res.q, name, est, 16, jax.random.fold_in(key, 1))
        title = f"{est}, {steps} steps: {res.status.outcome()}"
        plot.fit_panel2d(
            p, res.q, name, aux=aux, optima=optima[name], window=window, ax=ax, title=title
        )
        trace = np.asarray(res.trace.q.loc)
        ax.plot(trace[:, 0], trace[:, 1], color=plot.PURPLE, lw=0.7, alpha=0.5)
    title = f"MixtureGaussian q by reinforce_cv: weights {w[0]:.2f} / {w[1]:.2f}"
    plot.fit_panel2d(p, mix.q, window=window, ax=axes[1, 1], title=title)
    out = args.out / "beyond_1d.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"saved {out}")
    return findings


if __name__ == "__main__":
    main()
