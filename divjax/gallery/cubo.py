r"""The chi-square upper bound (CUBO) and the mass-covering fits of ``chi^2(p || q)``.

With ``p~ = Z p``: ``ELBO = log Z - KL(q || p) <= log Z <= CUBO_2 = log Z + log(1 +
chi^2(p || q)) / 2``, all three exact in divjax. ``chi^2(p || q)`` is infinite
exactly where q's tails are too thin for p's, in 1-D ``sigma^2 <= max_k s_k^2 / 2``.

The K-sample Monte Carlo estimate ``c_K = log(mean_i w_i^2) / 2`` of CUBO_2 is
biased low (Jensen), by ``-(I(-3) / I(-1)^2 - 1) / (4K) + O(1/K^2)`` with
``I(a) = int q^a p^(1-a)`` (exact: ``I(-1) = 1 + chi^2``, ``I(-3) = exp(3 D_4(p || q))``),
so at small K it is often below ``log Z``: not itself an upper bound.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import divergences
from divjax.families import Gaussian, default_q0
from divjax.gallery import _common as C
from divjax.targets import GaussianMixture

NAME = "cubo"
TITLE = "CUBO is an upper bound; chi-square fits cover the mass"
SOURCE = (
    "Dieng, Tran, Ranganath, Paisley & Blei (2017), Variational inference via chi upper bound "
    "minimization, NeurIPS"
)
STATEMENT = (
    "CUBO_2 = log Z + log(1 + chi^2(p || q)) / 2 is an upper bound on log Z (with the ELBO, a "
    "sandwich); minimizing it (CHIVI) gives mass-covering, over-dispersed approximations, wider "
    "than KL(q || p) fits. chi^2(p || q) is infinite when q's tails are lighter than p's."
)
SIZES = {
    "quick": dict(
        num_draws=10000,
        ks=(1, 4, 16, 64, 256),
        variances=tuple(np.geomspace(0.3, 40, 24)),
        optima=False,
        fit_ks=(),
        fit_seeds=0,
        fit_steps=0,
    ),
    "full": dict(
        num_draws=100000,
        ks=(1, 2, 4, 16, 64, 256, 1024),
        variances=tuple(np.geomspace(0.3, 40, 120)),
        optima=True,
        fit_ks=(16, 64),
        fit_seeds=128,
        fit_steps=4000,
    ),
}
MEAN = 1.5  # the sandwich path q = N(1.5, sigma^2)
Q_MC = (1.5, 6.025)  # where the Monte Carlo CUBO estimate is drawn (the forward-KL optimum)


def target() -> GaussianMixture:
    """The default target with mass Z = 2: ``p~ = 0.6 N(-2, 0.5^2) + 1.4 N(3, 1)``."""
    return GaussianMixture([0.6, 1.4], [-2.0, 3.0], [0.5, 1.0])


def sandwich(p, q):
    """``(ELBO, log Z, CUBO_2)`` at a batch of ``q`` (exact)."""
    log_z = p.log_normalizer
    one = lambda q_: (  # noqa: E731
        log_z - divergences.divergence("kl_reverse", p, q_),
        log_z + 0.5 * divergences.log1p_divergence("chi2_forward", p, q_),
    )
    elbo, cubo = jax.vmap(one)(q)
    return elbo, jnp.broadcast_to(log_z, elbo.shape), cubo


def mc_limits(p, q):
    """``(CUBO_2, limit of K (E c_K - CUBO_2))`` at one ``q``."""
    log_i1 = divergences.log1p_divergence("chi2_forward", p, q)
    log_i3 = 3.0 * divergences.divergence("renyi_forward", p, q, alpha=4.0)
    return p.log_normalizer + 0.5 * log_i1, -0.25 * jnp.expm1(log_i3 - 2.0 * log_i1)


def mc_cubo(ks, num_draws):
    """``(p, q, key) -> tuple of (num_draws,) CUBO_2 estimates``, one per K."""

    def draws(p, q, key):
        out = []
        for i, k in enumerate(ks):
            x = q.sample(jax.random.fold_in(key, i), (num_draws, k))
            lw = p.unnormalized_log_prob(x) - q.log_prob(x)
            out.append(0.5 * (logsumexp(2.0 * lw, -1) - jnp.log(k)))
        return tuple(out)

    return draws


def measure(size: str = "quick", key=None, **overrides) -> C.Result:
    cfg = dict(SIZES[size], **overrides)
    key = jax.random.key(0) if key is None else key
    p = target()
    var = np.asarray(cfg["variances"], np.float32)
    path = Gaussian._make((jnp.full(var.shape, MEAN, jnp.float32), jnp.asarray(0.5 * np.log(var))))
    q_mc = Gaussian.from_loc_variance(*Q_MC)
    ks = tuple(cfg["ks"])
    edge = np.array([0.5 * (1 - 1e-3), 0.5 * (1 + 1e-3)], np.float32)
    locs = np.array([-3.0, 0.0, 1.5, 7.0], np.float32)
    edge_q = Gaussian._make(
        (jnp.asarray(np.repeat(locs, 2)), jnp.asarray(np.tile(0.5 * np.log(edge), 4)))
    )
    with C.fast_compile():
        elbo, log_z, cubo = C.exact(sandwich, p, path, key=("cubo_sandwich",))
        infinite = C.exact(
            jax.vmap(lambda q_: divergences.is_infinite("chi2_forward", p, q_)),
            edge_q,
            key=("chi2_edge",),
        )
        cubo_mc, limit = C.exact(mc_limits, p, q_mc, key=("cubo_mc_limits",))
        est = C.compiled(
            ("cubo_mc", ks, cfg["num_draws"]), lambda: mc_cubo(ks, cfg["num_draws"]), p, q_mc, key
        )
        optima = _optima(p) if cfg["optima"] else None
        fits = _fits(p, cfg, key) if cfg["fit_seeds"] else None
    est = [np.asarray(e, np.float64) for e in est]
    log_z = float(log_z[0])
    mc = dict(
        ks=np.asarray(ks),
        mean=np.array([e.mean() for e in est]) - float(cubo_mc),
        se=np.array([e.std(ddof=1) / np.sqrt(len(e)) for e in est]),
        below=np.array([np.mean(e < log_z) for e in est]),
        n=len(est[0]),
    )
    data = dict(
        variances=var,
        elbo=elbo,
        log_z=log_z,
        cubo=cubo,
        infinite=infinite.reshape(4, 2),
        edge=edge,
        locs=locs,
        cubo_mc=float(cubo_mc),
        limit=float(limit),
        mc=mc,
        optima=optima,
        fits=fits,
        cfg=cfg,
    )
    return C.result(sys.modules[__name__], data, "holds")


def _optima(p):
    import divjax as dj

    out = {}
    for name in ("chi2_forward", "kl_forward", "kl_reverse"):
        o = dj.optimal_q(name, p)
        out[name] = np.stack(
            [np.asarray(o.q.loc, np.float64), np.exp(2 * np.asarray(o.q.log_scale, np.float64))], -1
        )
    return out


def _fits(p, cfg, key):
    import divjax as dj

    res = dj.sweep(
        p,
        default_q0(),
        [("chi2_forward", "snis2"), ("kl_reverse", "reparam")],
        num_samples=cfg["fit_ks"],
        num_seeds=cfg["fit_seeds"],
        num_steps=cfg["fit_steps"],
        key=jax.random.fold_in(key, 1),
        optimizers={"sgd": dj.default_optimizer(0.02)},
        optima={},
        progress=False,
    )
    out = {}
    for run in res.runs:
        var = np.exp(2 * np.asarray(run.q.log_scale, np.float64))
        ok = np.isfinite(var) & ~np.asarray(run.status.diverged)
        out[(run.config.name, run.config.num_samples)] = var[ok]
    return out


def _table(data):
    cols = ("what", "value")
    mc = data["mc"]
    rows = [
        ("log Z", f"{data['log_z']:.4f}"),
        (f"CUBO_2 at q = N{Q_MC} (exact)", f"{data['cubo_mc']:.4f}"),
        (
            "chi²(p‖q) = ∞ at σ² = 0.5 (1 ∓ 0.001), μ in " + str(data["locs"].tolist()),
            " / ".join("yes" if x else "no" for x in data["infinite"][0]),
        ),
    ]
    for i, k in enumerate(mc["ks"]):
        rows.append(
            (
                f"MC estimate c_K - CUBO_2, K = {k}",
                f"{C.fmt(mc['mean'][i], mc['se'][i])}   "
                f"(below log Z in {100 * mc['below'][i]:.1f}% of draws)",
            )
        )
    rows.append(("exact first-order bias K (E c_K - CUBO_2)", f"{data['limit']:.4f}"))
    if data["optima"]:
        for name, o in data["optima"].items():
            rows.append(
                (
                    f"optimal_q {name}: (mean, variance)",
                    "; ".join(f"({m:.3f}, {v:.3f})" for m, v in o),
                )
            )
    if data["fits"]:
        for (name, k), v in sorted(data["fits"].items()):
            rows.append(
                (
                    f"fits {name}, K = {k}: variance median [10%, 90%]",
                    f"{np.median(v):.3g} [{np.quantile(v, 0.1):.3g}, {np.quantile(v, 0.9):.3g}]",
                )
            )
    return cols, rows


def checks(data, z: float = C.Z) -> list[C.Check]:
    finite = np.isfinite(data["cubo"])
    var = data["variances"]
    mc = data["mc"]
    use = mc["ks"] >= 16
    a, a_se = C.inverse_k_fit(
        mc["ks"][use], mc["ks"][use] * mc["mean"][use], mc["ks"][use] * mc["se"][use]
    )
    below = mc["below"][0]
    out = [
        C.Check(
            "ELBO <= log Z <= CUBO_2 at every q on the path (exact)",
            bool(
                np.all(data["elbo"] <= data["log_z"] + 1e-6)
                and np.all(data["cubo"] >= data["log_z"] - 1e-6)
            ),
            f"min CUBO_2 - log Z = {np.min(data['cubo'][finite] - data['log_z']):.4f}, "
            f"max ELBO - log Z = {np.max(data['elbo'] - data['log_z']):.4f}",
        ),
        C.Check(
            "CUBO_2 = ∞ exactly where σ² <= max s²/2 = 0.5 (path and boundary, any mean)",
            bool(
                np.array_equal(~finite, var <= 0.5)
                and data["infinite"][:, 0].all()
                and not data["infinite"][:, 1].any()
            ),
            f"{int((~finite).sum())} of {len(var)} path points infinite; boundary ∓0.1%: infinite "
            "/ finite",
        ),
        C.Check(
            "the MC estimate's bias x K tends to the exact -(I(-3)/I(-1)² - 1)/4 (fit a + b/K, K "
            ">= 16)",
            C.within(a, data["limit"], a_se, z),
            f"a = {C.fmt(a, a_se)} vs exact {data['limit']:.4f}",
        ),
        C.Check(
            f"... so the K = {mc['ks'][0]} estimate is not an upper bound: below log Z in a "
            "fraction > 0",
            below - z * np.sqrt(below * (1 - below) / mc["n"]) > 0,
            f"{100 * below:.1f}% of {mc['n']} draws below log Z",
        ),
    ]
    if data["optima"]:
        o = data["optima"]
        out.append(
            C.Check(
                "the chi2_forward optimum is wider than the forward-KL one, wider than every "
                "KL(q‖p) minimum",
                bool(o["chi2_forward"][0, 1] > o["kl_forward"][0, 1] > o["kl_reverse"][:, 1].max()),
                f"variances {o['chi2_forward'][0, 1]:.3f} > {o['kl_forward'][0, 1]:.3f} > "
                f"{o['kl_reverse'][:, 1].max():.3f}",
            )
        )
    if data["fits"]:
        chi = np.concatenate([v for (n, _), v in data["fits"].items() if n == "chi2_forward"])
        rev = np.concatenate([v for (n, _), v in data["fits"].items() if n == "kl_reverse"])
        out.append(
            C.Check(
                "snis2 (chi2_forward) fits are wider than reparam (KL(q‖p)) fits: 10% quantile > "
                "90% quantile",
                bool(np.quantile(chi, 0.1) > np.quantile(rev, 0.9)),
                f"{np.quantile(chi, 0.1):.3g} vs {np.quantile(rev, 0.9):.3g}",
            )
        )
    return out


def _measured(data) -> str:
    mc = data["mc"]
    text = (
        f"CUBO_2 ≥ log Z on the whole path, ∞ for σ² ≤ 0.5 exactly; MC estimate below log Z in "
        f"{100 * mc['below'][0]:.0f}% of draws at K = {mc['ks'][0]}, bias × K -> "
        f"{data['limit']:.3f} (exact)"
    )
    if data["optima"]:
        o = data["optima"]
        text += (
            f"; optimal variances: χ² {o['chi2_forward'][0, 1]:.2f}, KL(p‖q) "
            f"{o['kl_forward'][0, 1]:.2f}, "
            f"KL(q‖p) {', '.join(f'{v:.2f}' for v in o['kl_reverse'][:, 1])}"
        )
    return text


def _notes(data):
    notes = [
        "p~ = 0.6 N(-2, 0.5²) + 1.4 N(3, 1) (the default target with mass Z = 2); the path is q = "
        f"N({MEAN}, σ²); the MC estimate c_K = log(mean w²)/2 is drawn at q = N{Q_MC}, "
        f"{data['mc']['n']} draws per K.",
        "The bound holds exactly; its K-sample estimate does not (E log ≤ log E). CHIVI therefore "
        "descends exp(2 CUBO_2) = Z² (1 + χ²), whose estimate is unbiased, or the snis2 gradient "
        "of log(1 + χ²). At K = 1, c_1 = log w: its mean is the ELBO, not an upper bound at all.",
    ]
    if data["fits"] is None:
        notes.append("optimal_q and Monte Carlo fits run at the full size (divjax reproduce cubo).")
    return notes


def figure(result):
    d = result.data
    fig, (ax1, ax2) = C.new_figure(2)
    v = d["variances"]
    ax1.plot(v, d["cubo"], "C3-", label="CUBO_2 (exact)")
    ax1.plot(v, d["elbo"], "C0-", label="ELBO (exact)")
    ax1.axhline(d["log_z"], color="k", ls="--", lw=1, label="log Z")
    ax1.axvspan(v.min(), 0.5, color="C3", alpha=0.12, label="χ²(p‖q) = ∞")
    if d["optima"]:
        for name, color in (("chi2_forward", "C3"), ("kl_forward", "C2"), ("kl_reverse", "C0")):
            for _, var in d["optima"][name]:
                ax1.axvline(var, color=color, ls=":", lw=1)
    ax1.set(
        xscale="log",
        xlabel=f"σ²  (q = N({MEAN}, σ²))",
        ylabel="nats",
        title="the sandwich ELBO ≤ log Z ≤ CUBO",
        ylim=(d["log_z"] - 3, d["log_z"] + 3),
    )
    ax1.legend(fontsize=8)
    mc = d["mc"]
    ax2.errorbar(
        mc["ks"], mc["mean"], yerr=C.Z * mc["se"], fmt="o-", label="E c_K - CUBO_2 (measured)"
    )
    ks = np.geomspace(mc["ks"].min(), mc["ks"].max(), 50)
    ax2.plot(ks, d["limit"] / ks, "k--", lw=1, label="exact first order")
    ax2.axhline(d["log_z"] - d["cubo_mc"], color="gray", ls=":", label="log Z - CUBO_2")
    ax2.set(xscale="log", xlabel="K", ylabel="nats", title="the K-sample estimate is biased low")
    ax2.legend(fontsize=8)
    return fig
