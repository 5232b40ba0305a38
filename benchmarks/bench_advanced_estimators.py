"""MSC, DReG and control variates beside the estimators they improve on: tables.

Part 1, `divjax.grad_stats` at K in {1, 4, 16, 64, 256} (``n/a`` where an
estimator needs K >= 2), on the default scenario (target
``0.3 N(-2, 0.5^2) + 0.7 N(3, 1)``, ``q0 = N(0, 5)``; chi2_reverse at
``N(1, 1.1^2)`` since ``chi^2(q0 || p) = inf``) and on a three-mode target
``(0.3, 0.3, 0.4) N((-4, 0, 4), 0.6^2)`` at ``q0``. Columns: bias, variance and
SNR ``|mean| / std`` per parameter (loc / log_scale). ``msc``/``msc_rb`` draws
are taken after ``--burn-in`` kernel steps at the fixed ``q`` (stationarity);
``iwae``/``iwae_dreg`` are compared with ``grad KL(q || p)``, their estimand
only at K = 1.

Part 2, `divjax.sweep` on the default scenario: forward KL fitted by ``snis``,
``msc`` and ``msc_rb`` for K in {2, 4, 16, 64, 256}, ``--seeds`` seeds,
``--steps`` steps of Adam with a cosine-decayed rate, started (a) at q0 and (b)
at the optimum q* (moment matching). Columns: the final ``(loc, log_scale)``
offset from q* averaged over seeds with its standard error (the fixed point's
bias), the mean excess forward KL of the final q over seeds (bias + noise), and
the number of diverged fits.

Usage: ``python benchmarks/bench_advanced_estimators.py [--num-draws N] [--seeds S] [--steps T]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

import divjax as dj
from divjax.diagnostics import grad_stats
from divjax.estimators import min_samples
from divjax.sweeps import sweep

KS = (1, 4, 16, 64, 256)
GROUPS = {
    "kl_forward": ("snis", "snis_dreg", "msc", "msc_rb"),
    "kl_reverse (control variates)": ("reinforce", "reinforce_loo", "reinforce_cv"),
    "kl_reverse (IW bound)": ("reparam", "iwae", "iwae_dreg"),
    "chi2_reverse": ("score", "score_cv"),
}


def _three_modes():
    return dj.GaussianMixture([0.3, 0.3, 0.4], [-4.0, 0.0, 4.0], [0.6, 0.6, 0.6])


def _fmt(x):
    return f"{x:+.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:+.1e}"


def grad_tables(target, q_kl, q_chi2, num_draws, burn_in, title):
    print(f"\n=== grad_stats: {title}, {num_draws} draws, msc burn-in {burn_in} ===")
    for group, ests in GROUPS.items():
        name = group.split()[0]
        q = q_chi2 if name == "chi2_reverse" else q_kl
        print(f"\n{group} at q = N({float(q.loc):.3g}, {float(q.scale):.3g}^2)")
        print(
            f"{'estimator':<14}{'K':>4}  {'bias loc / log_scale':>22}  "
            f"{'variance loc / log_scale':>24}  {'SNR loc / log_scale':>20}"
        )
        for est in ests:
            ks = tuple(k for k in KS if k >= min_samples(est))
            t = time.perf_counter()
            s = grad_stats(name, est, target, q, ks, num_draws, jax.random.key(0), burn_in=burn_in)
            s = jax.tree_util.tree_map(np.asarray, s)
            dt = time.perf_counter() - t
            for k in KS:
                if k not in ks:
                    print(f"{est:<14}{k:>4}  {'n/a (K >= 2)':>22}")
                    continue
                j = ks.index(k)
                print(
                    f"{est:<14}{k:>4}  "
                    f"{_fmt(s.bias.loc[j]):>10} / {_fmt(s.bias.log_scale[j]):<9}  "
                    f"{s.variance.loc[j]:>11.3g} / {s.variance.log_scale[j]:<10.3g}  "
                    f"{s.snr.loc[j]:>8.3f} / {s.snr.log_scale[j]:<8.3f}"
                    + (f"  ({dt:.1f} s)" if j == 0 else "")
                )


def sweep_table(seeds, steps):
    p = dj.default_target()
    opt_q = dj.optimal_q("kl_forward", p).q
    q_star = dj.Gaussian(opt_q.loc[0], opt_q.log_scale[0])
    kl_star = float(dj.divergence("kl_forward", p, q_star))
    optimizer = optax.adam(optax.cosine_decay_schedule(0.05, steps, alpha=0.02))
    fits = [("kl_forward", "snis"), ("kl_forward", "msc"), ("kl_forward", "msc_rb")]
    for label, q0 in (("q0 = N(0, 5)", dj.default_q0()), ("q* (moment matching)", q_star)):
        res = sweep(
            p,
            q0,
            fits,
            num_samples=(2, 4, 16, 64, 256),
            num_seeds=seeds,
            num_steps=steps,
            optimizers={"adam": optimizer},
            key=jax.random.key(1),
        )
        print(
            f"\n=== sweep: forward KL, start {label}, {seeds} seeds x {steps} steps, Adam "
            f"0.05 cosine-decayed; q* = N(1.5, 6.025), KL* = {kl_star:.4f} "
            f"(compile {res.compile_s:.1f} s, run {res.run_s:.1f} s) ==="
        )
        print(
            f"{'estimator':<10}{'K':>4}  {'loc - loc*':>16}  {'log_scale - ls*':>16}  "
            f"{'mean KL - KL*':>13}  diverged"
        )
        for r in res.runs:
            ok = np.asarray(r.status.diverged_at) < 0
            x = np.stack(
                [
                    np.asarray(r.q.loc, np.float64)[ok] - float(q_star.loc),
                    np.asarray(r.q.log_scale, np.float64)[ok] - float(q_star.log_scale),
                ]
            )
            m, se = x.mean(1), x.std(1, ddof=1) / np.sqrt(max(ok.sum(), 1))
            excess = np.mean(np.asarray(r.status.final_value, np.float64)[ok]) - kl_star
            print(
                f"{r.config.estimator:<10}{r.config.num_samples:>4}  "
                f"{m[0]:+7.3f} ± {se[0]:<6.3f}  {m[1]:+7.3f} ± {se[1]:<6.3f}  "
                f"{excess:>13.4f}  {int((~ok).sum()):>4}"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-draws", type=int, default=4000)
    parser.add_argument("--burn-in", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    t = time.perf_counter()
    print(f"backend: {jax.default_backend()}")
    grad_tables(
        dj.default_target(),
        dj.default_q0(),
        dj.Gaussian.from_loc_scale(1.0, 1.1),
        args.num_draws,
        args.burn_in,
        "default scenario",
    )
    grad_tables(
        _three_modes(),
        dj.default_q0(),
        dj.Gaussian.from_loc_scale(0.0, 0.65),
        args.num_draws,
        args.burn_in,
        "three-mode target",
    )
    if not args.skip_sweep:
        sweep_table(args.seeds, args.steps)
    print(f"\ntotal {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
