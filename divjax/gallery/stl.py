r"""Sticking the landing: zero variance at ``q = p``, and how it grows away from ``p``.

For a Gaussian ``p = N(m, s^2)`` and ``q = N(mu, sigma^2)``, ``delta = mu - m``,
``K`` samples, the per-parameter variances have closed forms (``z = mu + sigma eps``):

- ``stl``: ``Var(loc) = (sigma / s^2 - 1 / sigma)^2 / K``,
  ``Var(log sigma) = (sigma^2 delta^2 / s^4 + 2 (sigma^2 / s^2 - 1)^2) / K``;
- ``reparam``: ``Var(loc) = sigma^2 / (s^4 K)``,
  ``Var(log sigma) = (sigma^2 delta^2 / s^4 + 2 sigma^4 / s^4) / K``.

``stl``'s vanish at ``q = p`` and grow quadratically; they exceed ``reparam``'s
exactly where ``sigma^2 < s^2 / 2``, for both parameters and any mean.
"""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from divjax import divergences
from divjax.families import Gaussian
from divjax.gallery import _common as C
from divjax.targets import GaussianMixture

NAME = "stl"
TITLE = "Sticking the landing has zero variance at q = p"
SOURCE = (
    "Roeder, Wu & Duvenaud (2017), Sticking the landing: simple, lower-variance gradient "
    "estimators for variational inference, NeurIPS"
)
STATEMENT = (
    "Dropping the score term from the reparameterization gradient of KL(q || p) (one "
    "stop_gradient) keeps it unbiased, and its variance is zero when q = p and small when q "
    "is near p; the full reparameterization gradient keeps a variance of order 1/K at q = p."
)
SIZES = {
    "quick": dict(
        num_draws=4000,
        away=(0.0, 0.01, 0.03, 0.1, 0.3, 1.0),
        narrow=(0.35, 0.5, 0.6, 0.85, 1.25, 2.0),
    ),
    "full": dict(
        num_draws=50000,
        away=(0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 2.0),
        narrow=(0.3, 0.4, 0.5, 0.6, 0.65, 0.75, 0.85, 1.0, 1.25, 1.6, 2.0, 3.0),
    ),
}
M, S, K = 1.0, 0.7, 16
NARROW_OFFSET = 0.5  # the narrow-q scan's mean offset, in units of s
PARAMS = ("loc", "log_scale")


def target() -> GaussianMixture:
    return GaussianMixture([1.0], [M], [S])


def theory(estimator: str, delta, sigma, k: int = K) -> np.ndarray:
    """``(n, 2)`` closed-form variances (loc, log sigma) at ``N(m + delta, sigma^2)``."""
    delta, sigma = np.asarray(delta, np.float64), np.asarray(sigma, np.float64)
    mean_part = sigma**2 * delta**2 / S**4
    if estimator == "stl":
        v = [(sigma / S**2 - 1.0 / sigma) ** 2, mean_part + 2.0 * (sigma**2 / S**2 - 1.0) ** 2]
    else:
        v = [sigma**2 / S**4, mean_part + 2.0 * sigma**4 / S**4]
    return np.stack(v, -1) / k


def _grid(away, narrow):
    """``(delta, sigma)`` of every ``q``: the path away from ``p``, then the narrow-``q`` scan."""
    away, narrow = np.asarray(away), np.asarray(narrow)
    delta = np.concatenate([away * S, np.full(narrow.shape, NARROW_OFFSET * S)])
    sigma = np.concatenate([S * np.exp(away / 2.0), narrow * S])
    return delta, sigma


def _stack(tree):
    return np.stack([getattr(tree, k) for k in PARAMS], -1)


def measure(size: str = "quick", key=None, **overrides) -> C.Result:
    cfg = dict(SIZES[size], **overrides)
    key = jax.random.key(0) if key is None else key
    p = target()
    delta, sigma = _grid(cfg["away"], cfg["narrow"])
    q = Gaussian._make(
        (jnp.asarray(M + delta, jnp.float32), jnp.asarray(np.log(sigma), jnp.float32))
    )
    with C.fast_compile():
        draws = C.gradient_draws(
            "kl_reverse", {"stl": (K,), "reparam": (K,)}, p, q, cfg["num_draws"], key
        )
        exact = C.exact(
            jax.vmap(lambda p_, q_: divergences.exact_grad("kl_reverse", p_, q_), (None, 0)),
            p,
            q,
            key=("kl_reverse_grad",),
        )
    # the float32 grid, as computed
    delta = np.asarray(q.loc, np.float64) - M
    sigma = np.exp(np.asarray(q.log_scale, np.float64))
    exact = _stack(exact)
    stats = {}
    for est in ("stl", "reparam"):
        g = _stack(draws[(est, K)])  # (nq, n, 2)
        g = np.moveaxis(g, 1, 0)  # (n, nq, 2)
        var, var_se = C.jackknife(C.variance, g)
        mean, mean_se = C.mean_se(g)
        stats[est] = dict(
            var=var, var_se=var_se, mean=mean, mean_se=mean_se, theory=theory(est, delta, sigma)
        )
    n_away = len(cfg["away"])
    data = dict(
        delta=delta,
        sigma=sigma,
        away=np.asarray(cfg["away"]),
        n_away=n_away,
        exact=exact,
        stats=stats,
    )
    return C.result(sys.modules[__name__], data, "holds")


def _table(data):
    cols = (
        "q",
        "sigma/s",
        "Var stl loc",
        "closed form",
        "Var stl log σ",
        "closed form",
        "Var reparam loc",
        "Var reparam log σ",
    )
    rows = []
    st, rp = data["stats"]["stl"], data["stats"]["reparam"]
    for i, (d, sg) in enumerate(zip(data["delta"], data["sigma"])):
        label = f"t = {data['away'][i]:g}" if i < data["n_away"] else f"μ - m = {d:.2g}"
        rows.append(
            (
                label,
                f"{sg / S:.3g}",
                C.fmt(st["var"][i, 0], st["var_se"][i, 0]),
                C.fmt(st["theory"][i, 0]),
                C.fmt(st["var"][i, 1], st["var_se"][i, 1]),
                C.fmt(st["theory"][i, 1]),
                C.fmt(rp["var"][i, 0], rp["var_se"][i, 0]),
                C.fmt(rp["var"][i, 1], rp["var_se"][i, 1]),
            )
        )
    return cols, rows


def checks(data, z: float = C.Z, claimed_slope: float | None = None) -> list[C.Check]:
    """The claim's checks; ``claimed_slope`` replaces the closed form's small-t slope."""
    st, rp = data["stats"]["stl"], data["stats"]["reparam"]
    n_away = data["n_away"]
    ratio0 = st["var"][0] / rp["var"][0]
    out = [
        C.Check(
            "stl's variance vanishes at q = p (float round-off only)",
            bool(np.all(ratio0 < 1e-8)),
            f"Var stl / Var reparam at q = p: {ratio0[0]:.1e} (loc), {ratio0[1]:.1e} (log σ)",
        ),
        C.Check(
            "reparam's variance at q = p is the closed form 1/(s^2 K), 2/K (not zero)",
            C.within(rp["var"][0], rp["theory"][0], rp["var_se"][0], z),
            f"{C.fmt(rp['var'][0, 0], rp['var_se'][0, 0])} vs {rp['theory'][0, 0]:.4g}; "
            f"{C.fmt(rp['var'][0, 1], rp['var_se'][0, 1])} vs {rp['theory'][0, 1]:.4g}",
        ),
    ]
    worst = np.max(np.abs(st["var"] - st["theory"])[1:] / (st["var_se"][1:] + 1e-10))
    out.append(
        C.Check(
            "stl's variance is the closed form at every q (smooth, quadratic near p)",
            C.within(
                st["var"][1:], st["theory"][1:], st["var_se"][1:] + 1e-10, z
            ),  # + float round-off
            f"largest |measured - closed form| = {worst:.1f} SE over {len(st['var']) - 1} q's x 2 "
            "parameters",
        )
    )
    small = slice(1, max(2, int(np.sum(data["away"] <= 0.1))))
    t = data["away"][small]
    for j, par in enumerate(("loc", "log σ")):
        v, se = st["var"][small, j], st["var_se"][small, j]
        fit = C.loglog_slope(t, np.log(v), se / v)
        th = st["theory"][small, j]
        expected = C.loglog_slope(t, np.log(th), np.full_like(th, 1.0)).slope
        out.append(
            C.slope_check(
                f"Var stl ({par}) grows like t^2 near p (log-log slope, t <= 0.1)",
                fit,
                expected if claimed_slope is None else claimed_slope,
                z,
            )
        )
    for est in ("stl", "reparam"):
        s = data["stats"][est]
        out.append(
            C.Check(
                f"{est} is unbiased for the exact gradient at every q",
                C.within(s["mean"], data["exact"], s["mean_se"] + 1e-6, z),
                "largest |mean - exact| = "
                f"{np.max(np.abs(s['mean'] - data['exact']) / (s['mean_se'] + 1e-6)):.1f} SE",
            )
        )
    ratio = st["var"][n_away:] / rp["var"][n_away:]
    ratio_se = ratio * np.sqrt(
        (st["var_se"][n_away:] / st["var"][n_away:]) ** 2
        + (rp["var_se"][n_away:] / rp["var"][n_away:]) ** 2
    )
    narrow = data["sigma"][n_away:] ** 2 < S**2 / 2
    worse = np.all((ratio[narrow] - 1.0) > z * ratio_se[narrow])
    better = np.all((1.0 - ratio[~narrow]) > z * ratio_se[~narrow])
    out.append(
        C.Check(
            "stl's variance exceeds reparam's exactly where sigma^2 < s^2 / 2 (both parameters)",
            bool(worse and better),
            "Var stl / Var reparam over sigma/s = "
            f"{np.round(data['sigma'][n_away:] / S, 2).tolist()}: "
            + ", ".join(f"{r:.2g}" for r in ratio[:, 0])
            + " (loc)",
        )
    )
    return out


def _measured(data) -> str:
    st, rp = data["stats"]["stl"], data["stats"]["reparam"]
    return (
        f"K = {K} at q = p: Var stl = {C.fmt(st['var'][0, 0], digits=2)} / "
        f"{C.fmt(st['var'][0, 1], digits=2)}, reparam "
        f"{rp['var'][0, 0]:.3f} / {rp['var'][0, 1]:.3f} (loc / log σ); stl matches its "
        "closed form (∝ t² near p); stl is worse than reparam wherever σ² < s²/2"
    )


def _notes(data):
    return [
        f"p = N({M:g}, {S:g}²), K = {K}; the path away from p is q_t = N(m + t s, (s e^(t/2))²); "
        f"the narrow-q scan has μ - m = {NARROW_OFFSET:g} s.",
        "The closed forms come from z = μ + σ ε: stl's per-sample gradient is "
        "((μ - m)/s² + ε(σ/s² - 1/σ), σε(μ - m)/s² + ε²(σ²/s² - 1)).",
        "Narrower than 'lower variance': removing the score term raises the variance wherever "
        "σ² < s²/2, whatever the mean (the score term was a control variate there).",
    ]


def figure(result):
    d = result.data
    fig, (ax1, ax2) = C.new_figure(2)
    n = d["n_away"]
    t = d["away"][1:n]
    colors = {"stl": "C0", "reparam": "C3"}
    for est, s in d["stats"].items():
        for j, (par, mark) in enumerate((("loc", "o"), ("log σ", "s"))):
            ax1.errorbar(
                t,
                s["var"][1:n, j],
                yerr=C.Z * s["var_se"][1:n, j],
                fmt=mark,
                color=colors[est],
                mfc="none" if j else colors[est],
                label=f"{est} ({par})",
            )
            ax1.plot(t, s["theory"][1:n, j], "-" if j == 0 else "--", color=colors[est], lw=1)
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="t  (q_t = N(m + t s, (s e^{t/2})²))",
        ylabel=f"variance (K = {K})",
        title="moving away from q = p",
    )
    ax1.legend(fontsize=7)
    ratio = d["stats"]["stl"]["var"][n:] / d["stats"]["reparam"]["var"][n:]
    x = d["sigma"][n:] / S
    xs = np.linspace(x.min(), x.max(), 200)
    ths = theory("stl", NARROW_OFFSET * S, xs * S) / theory("reparam", NARROW_OFFSET * S, xs * S)
    for j, (par, mark) in enumerate((("loc", "o"), ("log σ", "s"))):
        ax2.plot(
            x, ratio[:, j], mark, color="C0", mfc="none" if j else "C0", label=f"measured ({par})"
        )
        ax2.plot(
            xs, ths[:, j], "-" if j == 0 else "--", color="k", lw=1, label=f"closed form ({par})"
        )
    ax2.axhline(1.0, color="gray", lw=0.8)
    ax2.axvline(1 / math.sqrt(2), color="gray", ls=":", label="σ² = s²/2")
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="σ / s",
        ylabel="Var stl / Var reparam",
        title=f"narrow q is where stl loses (μ - m = {NARROW_OFFSET:g} s)",
    )
    ax2.legend(fontsize=7)
    return fig
