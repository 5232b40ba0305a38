r"""Beyond 1-D: the same fits on a 2-D target, with full-rank and mixture families.

The target is a 2-D mixture of two correlated Gaussians. The script prints and
draws:

1. ``divjax.optimal_q`` for every divergence over full-rank Gaussians: forward
   KL's moment match (closed form), forward chi-square's single minimum
   (closed-form objective), and the reverse divergences' mode-seeking minima
   (2-D quadrature, one per mode);
2. Monte Carlo fits with the 1-D estimators, unchanged: ``msc_rb`` (forward KL)
   and ``stl`` (reverse KL) on a full-rank q, classified against those optima;
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

import divjax as dj  # noqa: E402

COLORS = {"kl_forward": "#1B9E77", "kl_reverse": "#D95F02", "chi2_forward": "#7570B3",
          "chi2_reverse": "#E7298A"}  # fmt: skip


def target() -> dj.MvGaussianMixture:
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


def ellipse(ax, loc, cov, **kwargs):
    """The 2-standard-deviation ellipse of ``N(loc, cov)``."""
    evals, evecs = np.linalg.eigh(np.asarray(cov))
    t = np.linspace(0.0, 2.0 * np.pi, 100)
    circle = np.stack([np.cos(t), np.sin(t)])
    pts = np.asarray(loc)[:, None] + 2.0 * evecs @ (np.sqrt(evals)[:, None] * circle)
    ax.plot(pts[0], pts[1], **kwargs)


def density_contours(ax, p):
    g = np.linspace(-5.0, 5.0, 160)
    x = np.stack(np.meshgrid(g, g), -1)
    dens = np.exp(np.asarray(p.normalized_log_prob(jnp.asarray(x))))
    ax.contourf(g, g, dens, levels=12, cmap="Greys")


def describe(loc, cov, value) -> str:
    loc, cov = np.asarray(loc), np.asarray(cov)
    return (
        f"({loc[0]:6.3f}, {loc[1]:6.3f})  sd ({np.sqrt(cov[0, 0]):.3f}, {np.sqrt(cov[1, 1]):.3f})"
        f"  corr {cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]):+.3f}  D = {float(value):.4f}"
    )


def batched_cov(q):
    return jax.vmap(lambda q_: q_.cov)(q)


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
        covs = batched_cov(opt.q)
        print(f"  {name}: {opt.value.shape[0]} minimum(s)")
        for i in range(opt.value.shape[0]):
            print(f"    #{i} {describe(opt.q.loc[i], covs[i], opt.value[i])}")
        findings["optima"][name] = int(opt.value.shape[0])

    q0 = dj.FullRankGaussian.from_cov([0.0, -1.0], [[4.0, 0.0], [0.0, 4.0]])
    print(f"\nMonte Carlo fits from N((0, -1), 4 I), K = 16, {steps} steps at 0.01:")
    fits = {}
    for name, est in [("kl_forward", "msc_rb"), ("kl_reverse", "stl")]:
        res = dj.fit(
            p, q0, name, est, num_samples=16, key=key, num_steps=steps, learning_rate=0.01,
            optima=optima[name],
        )  # fmt: skip
        fits[name] = res
        print(f"  {name:11s} {est:7s} {res.status.describe()}")
        findings["fits"][name] = int(res.status.optimum)

    m0 = dj.MixtureGaussian(jnp.zeros(2), jnp.array([[-1.0, 0.0], [1.0, 0.0]]), jnp.zeros((2, 2)))
    mix = dj.fit(
        p, m0, "kl_reverse", "reinforce_cv", num_samples=32, key=key, num_steps=steps,
        learning_rate=0.01,
    )  # fmt: skip
    w = np.asarray(jax.nn.softmax(mix.q.logits))
    print("\nMixtureGaussian q (diagonal components) by reinforce_cv (K = 32):")
    print("  weights", np.round(w, 3), "(p: 0.3, 0.7)")
    for c in range(2):
        loc, sd = np.asarray(mix.q.locs[c]), np.exp(np.asarray(mix.q.log_scales[c]))
        print(f"  component {c}: loc ({loc[0]:.3f}, {loc[1]:.3f})  sd ({sd[0]:.3f}, {sd[1]:.3f})")
    findings["mixture_weights"] = sorted(w.tolist())

    fig, axes = plt.subplots(1, 3, figsize=(13, 5.0), layout="constrained", sharey=True)
    for ax in axes:
        density_contours(ax, p)
        ax.set_aspect("equal")
        ax.set_xlim(-5, 5)
        ax.set_ylim(-5, 5)
    ax = axes[0]
    for name, opt in optima.items():
        covs = batched_cov(opt.q)
        for i in range(opt.value.shape[0]):
            ellipse(ax, opt.q.loc[i], covs[i], color=COLORS[name], ls="-" if i == 0 else ":",
                    lw=2, label=name if i == 0 else None)  # fmt: skip
    ax.set_title("optimal q* (solid: global, dotted: local)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    for name, res in fits.items():
        path = res.trace.q
        ax.plot(path.loc[:, 0], path.loc[:, 1], color=COLORS[name], lw=0.8, alpha=0.7)
        ellipse(ax, res.q.loc, res.q.cov, color=COLORS[name], lw=2, label=f"{name} fit")
    ellipse(ax, q0.loc, q0.cov, color="k", ls="--", lw=1, label="q0")
    ax.set_title("Monte Carlo fits: msc_rb (forward), stl (reverse)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[2]
    for c in range(2):
        cov = np.diag(np.exp(2.0 * np.asarray(mix.q.log_scales[c])))
        ellipse(ax, mix.q.locs[c], cov, color="#6A3D9A", lw=2,
                label=f"component, weight {w[c]:.2f}")  # fmt: skip
    ax.set_title("mixture q (diagonal components) by reinforce_cv", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    out = args.out / "beyond_1d.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"saved {out}")
    return findings


if __name__ == "__main__":
    main()
