r"""What the gallery's entries share: gradient draws, standard errors, checks and the result record.

Gradient draws: `gradient_draws` runs every (estimator, K) of one divergence,
at one ``q`` or a batch of them, in ONE compiled program (compiled with
XLA's cheap optimization level: these programs run for milliseconds and
compile for seconds), and returns the raw draws, so that any statistic
(variance, SNR, bias times K) gets a standard error from the draws themselves.

Standard errors: `jackknife` (delete-a-group over ``G`` contiguous groups of
draws) for any smooth statistic, which stays honest for the heavy-tailed
draws of importance-weighted estimators; `loglog_slope` fits a power law with
the standard errors of the points, inflated by the scatter about the line
when the points disagree with it more than their errors allow.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax.estimators import REGISTRY, min_samples, stateful_surrogate

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
Z = 3.0  # the z-score every check allows (and requires, to reject a wrong claim)
SLOPE_TOL = 0.05  # allowance for pre-asymptotic curvature when checking an asymptotic exponent

_PROGRAMS: dict[tuple, Any] = {}
_DRAWS: dict[tuple, Any] = {}  # the last few draws, so entries sharing a configuration share them


class Check(NamedTuple):
    """One statistical check of a claim: what was checked, whether it holds, the numbers."""

    what: str
    holds: bool
    detail: str


class Result(NamedTuple):
    """What one gallery entry measured.

    Attributes:
      name, title, source, statement: the claim (`Claim`'s fields).
      columns, rows: the measured table (numbers already formatted, with SEs).
      checks: the claim's checks on divjax's exact ground truth.
      measured: one line for the summary table.
      verdict: ``"holds"``, ``"narrower"`` or ``"wrong"`` (for a claim divjax
        finds wrong or narrower than stated, the checks confirm the finding).
      notes: lines printed after the table.
      data: the raw numbers (for the figure and the tests).
    """

    name: str
    title: str
    source: str
    statement: str
    columns: tuple[str, ...]
    rows: list[tuple]
    checks: list[Check]
    measured: str
    verdict: str
    notes: list[str]
    data: dict

    @property
    def confirmed(self) -> bool:
        """Every check passed (the claim holds, or divjax's finding against it is confirmed)."""
        return all(c.holds for c in self.checks)


def result(entry, data, verdict: str) -> Result:
    """The `Result` of a gallery module ``entry`` (its ``NAME``, ``TITLE``, ``SOURCE``,
    ``STATEMENT``, ``_table``, ``checks``, ``_measured`` and ``_notes``) for ``data``."""
    return Result(
        entry.NAME, entry.TITLE, entry.SOURCE, entry.STATEMENT, *entry._table(data),
        checks=entry.checks(data), measured=entry._measured(data), verdict=verdict,
        notes=entry._notes(data), data=data,
    )  # fmt: skip


@contextlib.contextmanager
def fast_compile():
    """XLA's cheap optimization level for every program compiled inside (restored after).

    The gallery's programs run for milliseconds and compile for seconds; the
    core's (`divjax.optimal_q`, `divjax.sweep`) included.
    """
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


def compiled(key: tuple, build: Callable[[], Callable], *args):
    """``build()`` jitted and compiled with `FAST_COMPILE` once per ``key`` and argument shapes."""
    shapes = jax.tree_util.tree_map(lambda a: (jnp.shape(a), jnp.result_type(a)), args)
    full = (key, jax.tree_util.tree_structure(args), tuple(jax.tree_util.tree_leaves(shapes)))
    if full not in _PROGRAMS:
        lowered = jax.jit(build()).lower(*args)
        _PROGRAMS[full] = lowered.compile(compiler_options=FAST_COMPILE)
    return _PROGRAMS[full](*args)


def _one_draw(name, estimator, alpha, target, q, k, burn_in):
    """``key -> estimate``: one draw (a stateful estimator first runs ``burn_in`` kernel steps)."""
    est = stateful_surrogate(name, estimator, target, k, alpha=alpha, contributions=False)
    grad = jax.grad(lambda q_, key, state: est.loss_fn(q_, key, state)[0])

    def draw(key):
        if not REGISTRY[(name, estimator)].stateful:
            return grad(q, key, ())
        key_init, key_chain, key_grad = jax.random.split(key, 3)

        def kernel(state, key_step):
            return est.loss_fn(q, key_step, state)[1][1], None

        keys = jax.random.split(key_chain, burn_in)
        state, _ = jax.lax.scan(kernel, est.init(q, key_init), keys)
        return grad(q, key_grad, state)

    return draw


def gradient_draws(
    name: str,
    plan,
    target,
    q,
    num_draws: int,
    key: jax.Array,
    *,
    alpha=None,
    burn_in: int = 0,
) -> dict[tuple[str, int], Any]:
    r"""Independent draws of each estimator at each of its ``K``, in one compiled program.

    ``plan`` is ``{estimator: Ks}`` (or pairs). ``q`` may be batched (leaves
    with a leading axis). Returns ``{(estimator, K): draws}``, ``draws`` a
    numpy pytree like ``q`` with a leading ``(num_draws,)`` axis (after the
    batch axis, if any). ``(estimator, K)`` number ``i`` uses ``fold_in(key,
    i)``; a K below an estimator's minimum is skipped. Stateful estimators
    (``msc``): each draw is an independent chain run ``burn_in`` kernel steps
    at the fixed ``q``.
    """
    plan = dict(plan)
    combos = tuple((e, int(k)) for e, ks in plan.items() for k in ks if k >= min_samples(e, name))
    batched = jnp.ndim(q.loc) > 0 if q.event_shape == () else jnp.ndim(q.loc) > 1

    def build():
        def per_q(target, q_, key):
            out = []
            for i, (e, k) in enumerate(combos):
                draw = _one_draw(name, e, alpha, target, q_, k, burn_in)
                keys = jax.random.split(jax.random.fold_in(key, i), num_draws)
                out.append(jax.vmap(draw)(keys))
            return tuple(out)

        if batched:
            return jax.vmap(per_q, in_axes=(None, 0, None))
        return per_q

    sig = ("draws", name, combos, num_draws, alpha, burn_in, batched)
    memo = (sig, _fingerprint((target, q, jax.random.key_data(key))))
    if memo not in _DRAWS:
        out = compiled(sig, build, target, q, key)
        if len(_DRAWS) >= 4:
            _DRAWS.pop(next(iter(_DRAWS)))
        _DRAWS[memo] = {
            c: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), o)
            for c, o in zip(combos, out)
        }
    return _DRAWS[memo]


def _fingerprint(tree) -> tuple:
    return tuple(np.asarray(a).tobytes() for a in jax.tree_util.tree_leaves(tree))


def stack(tree, params=("loc", "log_scale")) -> np.ndarray:
    """A 1-D Gaussian pytree's leaves stacked on a last axis (loc, log sigma)."""
    return np.stack([np.asarray(getattr(tree, k), np.float64) for k in params], -1)


def snr_curve(draws: dict, estimator: str, ks) -> tuple[np.ndarray, np.ndarray]:
    """``(log SNR, SE)`` per ``K`` and parameter, ``(len(ks), 2)`` each (jackknife SEs)."""
    out = [jackknife(log_snr, stack(draws[(estimator, k)])) for k in ks]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def inverse_k_fit(ks, y, se, order: int = 1):
    r"""``y ~ a + b / K (+ c / K^2)``: ``(a, SE of a)``, weighted least squares (Birge-inflated)."""
    ks, y, se = (np.asarray(v, np.float64) for v in (ks, y, se))
    a = np.stack([ks ** (-float(j)) for j in range(order + 1)], 1)
    w = 1.0 / se**2
    cov = np.linalg.inv(a.T @ (w[:, None] * a))
    coef = cov @ a.T @ (w * y)
    dof = len(ks) - order - 1
    birge = math.sqrt(float(np.sum(w * (y - a @ coef) ** 2)) / dof) if dof > 0 else 1.0
    return float(coef[0]), math.sqrt(cov[0, 0]) * max(1.0, birge)


def exact(fn: Callable, *args, key: tuple = ()):
    """``fn(*args)`` compiled once per ``key`` (exact values and gradients), as numpy float64."""
    out = compiled(("exact",) + key, lambda: fn, *args)
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out)


# --- statistics -----------------------------------------------------------------


def jackknife(stat: Callable[[np.ndarray], np.ndarray], x: np.ndarray, groups: int = 20):
    r"""``(stat(x), standard error)`` by the delete-a-group jackknife along axis 0.

    ``stat`` maps draws ``(n, ...)`` to an array (vectorized over trailing
    axes); ``n`` is cut to a multiple of ``groups``.
    """
    x = np.asarray(x)
    n = (x.shape[0] // groups) * groups
    x = x[:n]
    full = stat(x)
    parts = x.reshape((groups, n // groups) + x.shape[1:])
    loo = np.stack(
        [
            stat(np.concatenate([parts[:g], parts[g + 1 :]]).reshape((-1,) + x.shape[1:]))
            for g in range(groups)
        ]
    )
    se = np.sqrt((groups - 1) / groups * np.sum((loo - loo.mean(0)) ** 2, axis=0))
    return full, se


def mean_se(x: np.ndarray):
    x = np.asarray(x)
    return x.mean(0), x.std(0, ddof=1) / math.sqrt(x.shape[0])


def variance(x):
    return np.var(x, axis=0, ddof=1)


def snr(x):
    return np.abs(np.mean(x, axis=0)) / np.std(x, axis=0, ddof=1)


def log_snr(x):
    return np.log(snr(x))


class Slope(NamedTuple):
    """A power law ``y ~ c x^slope`` fitted on log-log axes (weighted by the points' SEs)."""

    slope: float
    se: float
    intercept: float
    birge: float  # sqrt(chi^2 / dof) of the points about the line (the SE is inflated by it if > 1)

    def z(self, claimed: float) -> float:
        return abs(self.slope - claimed) / self.se


def loglog_slope(x, log_y, se_log_y) -> Slope:
    """Weighted least squares of ``log_y`` on ``log x``; ``se_log_y`` the SEs of ``log_y``."""
    lx, ly, s = (np.asarray(v, np.float64) for v in (np.log(x), log_y, se_log_y))
    w = 1.0 / s**2
    a = np.stack([np.ones_like(lx), lx], 1)
    cov = np.linalg.inv(a.T @ (w[:, None] * a))
    coef = cov @ a.T @ (w * ly)
    resid = ly - a @ coef
    dof = max(len(lx) - 2, 1)
    birge = math.sqrt(float(np.sum(w * resid**2)) / dof) if len(lx) > 2 else 1.0
    se = math.sqrt(cov[1, 1]) * max(1.0, birge)
    return Slope(float(coef[1]), se, float(coef[0]), birge)


def within(value, claimed, se, z: float = Z) -> bool:
    """``|value - claimed| <= z se`` everywhere (NaN never passes)."""
    value, claimed, se = (np.asarray(v, np.float64) for v in (value, claimed, se))
    return bool(np.all(np.abs(value - claimed) <= z * se))


def slope_ok(fit: Slope, claimed: float, z: float = Z, tol: float = SLOPE_TOL) -> bool:
    """``|slope - claimed| <= z SE + tol`` (``tol``: pre-asymptotic curvature)."""
    return abs(fit.slope - claimed) <= z * fit.se + tol


def slope_check(
    what: str, fit: Slope, claimed: float, z: float = Z, tol: float = SLOPE_TOL
) -> Check:
    """Checks an exponent (within ``z`` SE + ``tol``)."""
    detail = f"slope {fit.slope:+.3f} ± {fit.se:.3f} vs {claimed:+.2f} (allowed {z:g} SE + {tol:g})"
    return Check(what, slope_ok(fit, claimed, z, tol), detail)


def rejects(
    what: str, fit: Slope, wrong: Sequence[float], z: float = Z, tol: float = SLOPE_TOL
) -> Check:
    """Checks that every exponent in ``wrong`` is rejected (so the slope check could fail)."""
    ok = all(not slope_ok(fit, w, z, tol) for w in wrong)
    detail = ", ".join(f"{w:+g}: {fit.z(w):.0f} SE away" for w in wrong)
    return Check(what, ok, detail)


# --- formatting -----------------------------------------------------------------


def fmt(value, se=None, digits: int = 3) -> str:
    """``value +- se`` with ``digits`` significant digits (SE to 2)."""
    value = float(value)
    if not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    text = f"{value:.{digits}g}"
    if se is None:
        return text
    return f"{text} ± {float(se):.2g}"


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [list(columns)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    return "\n".join([head] + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def new_figure(ncols: int = 2, width: float = 10.0, height: float = 3.8):
    """A matplotlib `Figure` with ``ncols`` axes (no pyplot: no backend is touched)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, np.atleast_1d(fig.subplots(1, ncols))


# --- shared settings --------------------------------------------------------------


def iwae_pair():
    """``(p, q)``: ``p = N(1, 0.7^2)``, ``q = N(1.3, 0.8^2)``, the IWAE and DReG entries' pair."""
    from divjax.families import Gaussian
    from divjax.targets import GaussianMixture

    return GaussianMixture([1.0], [1.0], [0.7]), Gaussian.from_loc_scale(1.3, 0.8)


def moment_match(p):
    """The exact forward-KL optimum of a 1-D mixture: ``N(E_p x, Var_p x)`` (a `Gaussian`)."""
    from divjax.families import Gaussian

    w = np.asarray(p.probs, np.float64)
    m, s = (np.asarray(a, np.float64) for a in (p.locs, p.scale_trils))
    mean = float(w @ m)
    var = float(w @ (s**2 + m**2)) - mean**2
    return Gaussian.from_loc_variance(mean, var)


def half_chi2_grad(p, q):
    """``grad chi^2(p || q) / 2``: the limit of ``K`` times the IWAE bound's gradient."""
    from divjax import divergences

    return jax.tree_util.tree_map(lambda g: 0.5 * g, divergences.exact_grad("chi2_forward", p, q))
