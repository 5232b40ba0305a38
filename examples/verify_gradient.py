r"""Verifying a hand-derived gradient with `divjax.check_grad`.

For the forward KL, ``KL(p || q) = const - E_p[log q]``, so with m = E_p[x] and
v = Var_p[x]:

    d/dmu        KL = -(m - mu) / sigma^2
    d/dlog sigma KL = 1 - (v + (m - mu)^2) / sigma^2

`check_grad` compares such a formula with ``jax.grad`` of the exact divergence on a
grid of q's. A correct derivation passes; a typical slip (differentiating with
respect to sigma instead of log sigma, i.e. dropping the chain-rule factor sigma)
fails loudly.

    python examples/verify_gradient.py [--quick] [--out DIR]
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


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    parser.add_argument("--out", type=Path, default=Path("divjax_out/examples"))
    return parser.parse_args(argv)


def kl_forward_grad(p: dj.GaussianMixture, q: dj.Gaussian) -> dj.Gaussian:
    """The correct hand-derived gradient with respect to (loc, log_scale)."""
    m, v = p.mean(), p.variance()
    return dj.Gaussian._make((-(m - q.loc) / q.variance, 1.0 - (v + (m - q.loc) ** 2) / q.variance))


def kl_forward_grad_wrt_sigma(p: dj.GaussianMixture, q: dj.Gaussian) -> dj.Gaussian:
    """A common slip: d/dsigma (= (1 - (v + (m - mu)^2) / sigma^2) / sigma) used as d/dlog sigma."""
    m, v = p.mean(), p.variance()
    d_sigma = (1.0 - (v + (m - q.loc) ** 2) / q.variance) / q.scale
    return dj.Gaussian._make((-(m - q.loc) / q.variance, d_sigma))


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    p = dj.default_target()
    name = "kl_forward"
    print("hand-derived d KL(p || q) / d(loc, log_scale):")
    good = dj.check_grad(kl_forward_grad, name, p, rtol=1e-4)
    print("\nthe same with d/dsigma in place of d/dlog sigma:")
    bad = dj.check_grad(kl_forward_grad_wrt_sigma, name, p, rtol=1e-4)
    verdict = {True: "PASS", False: "FAIL"}
    print(f"\ncorrect formula: {verdict[good.ok]}; slipped formula: {verdict[bad.ok]}")

    num = 41 if args.quick else 121
    log_scales = jnp.linspace(-1.0, 2.0, num)
    qs = dj.Gaussian(jnp.full(num, 0.0), log_scales)
    auto = jax.jit(jax.vmap(lambda q: dj.autodiff_grad(name, p, q)))(qs)
    right = jax.jit(jax.vmap(lambda q: kl_forward_grad(p, q)))(qs)
    wrong = jax.jit(jax.vmap(lambda q: kl_forward_grad_wrt_sigma(p, q)))(qs)
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    x = np.asarray(log_scales)
    ax.plot(x, np.asarray(auto.log_scale), color="k", lw=3, alpha=0.35, label="jax.grad (autodiff)")
    ax.plot(x, np.asarray(right.log_scale), color="#1B9E77", ls="--", label="hand-derived: PASS")
    ax.plot(
        x, np.asarray(wrong.log_scale), color="#D95F02", ls=":", lw=2, label="d/dsigma slip: FAIL"
    )
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel(r"$\log\sigma$ (loc = 0)")
    ax.set_ylabel(r"$\partial\,\mathrm{KL}(p\,\|\,q) / \partial\log\sigma$")
    ax.set_title("check_grad: a hand-derived gradient against autodiff", fontsize=10)
    ax.legend(fontsize=8)
    out = args.out / "verify_gradient.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"saved {out}")
    rel = lambda r: max(float(a) for a in r.max_rel_err)  # noqa: E731
    return {"good_ok": good.ok, "bad_ok": bad.ok, "good_rel": rel(good), "bad_rel": rel(bad)}


if __name__ == "__main__":
    main()
