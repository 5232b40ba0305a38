"""The exactness contract's grid: extreme q's, their references, and one program per divergence.

Used by `tests/test_exactness.py` and `benchmarks/bench_exactness_grid.py`.

- Targets: three two-component mixtures (the default; far-apart modes of very
  different widths; weights beyond float32's range).
- q's: every ``loc`` in `LOCS` with every ``sigma`` in `SIGMAS` (1e-30 to 1e3,
  ``|loc|`` up to 1e5), as the dtype represents them: the reference is taken
  at ``loc`` and ``exp(log_scale)`` rounded to that dtype.
- References: `tests.reference_hp` (numpy/scipy, independent of divjax),
  cached in ``exactness_reference.json`` because they take ~0.1 s each;
  ``python -m tests.exactness_grid`` rewrites the cache and a slow test
  checks it against a fresh computation.
- divjax: one compiled program per (divergence, order, dtype), vmapped over a
  fixed-shape batch of targets and q's, evaluating the value, ``log(1 + D)``,
  ``is_infinite``, the exact gradient and (for the hand-derived gradients)
  the autodiff gradient.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import divjax as dj
from divjax.divergence_table import lookup
from tests import reference_hp as ref

TARGETS = {
    "default": ([0.3, 0.7], [-2.0, 3.0], [0.5, 1.0]),
    "far_apart": ([0.5, 0.5], [-1e3, 1e3], [1.0, 1e-2]),
    "huge_weights": ([1e300, 3e300], [0.0, 1.0], [1.0, 0.1]),
}
LOCS = (-1e5, -30.0, 0.5, 3.0, 12.0, 1e5)
SIGMAS = (1e-30, 1e-12, 1e-3, 0.3, 1.3, 30.0, 1e3)
# One order per divergence (distinct exponents a = 1 - alpha or alpha: -1.5, 3, 0.7) ...
ORDERS = (
    ("kl_forward", None),
    ("kl_reverse", None),
    ("chi2_forward", None),
    ("chi2_reverse", None),
    ("renyi_forward", 2.5),
    ("renyi_reverse", 3.0),
    ("amari", 0.3),
    ("hellinger", None),
    ("jensen_shannon", None),
)
# ... and more orders, behind the slow marker.
MORE_ORDERS = (("renyi_reverse", 0.5), ("renyi_forward", 0.5), ("amari", -1.5), ("amari", 2.0))
DTYPES = ("float32", "float64")
TOL = {"float32": 1e-3, "float64": 1e-6}
BATCH = len(LOCS) * len(SIGMAS)
CACHE = pathlib.Path(__file__).with_name("exactness_reference.json")
HAND = ("kl_forward", "kl_reverse", "chi2_forward", "chi2_reverse")


def grid_qs() -> list[tuple[float, float]]:
    return [(mu, s) for mu in LOCS for s in SIGMAS]


def represented(mu: float, sigma: float, dtype: str) -> tuple[float, float, float]:
    """``(loc, log_scale, sigma)`` as ``dtype`` holds them."""
    loc = float(np.asarray(mu, dtype))
    log_scale = float(np.asarray(math.log(sigma), dtype))
    return loc, log_scale, math.exp(log_scale)


def key(name: str, alpha) -> str:
    return f"{name}:{alpha}"


# --- references -------------------------------------------------------------------


class Expected(NamedTuple):
    value: float  # inf where infinite or beyond float64
    log1p: float  # what log1p_divergence should give (finite beyond the range)
    infinite: bool  # mathematically


def expected(name: str, alpha, weights, locs, scales, mu: float, sigma: float) -> Expected:
    """The reference's value and ``log(1 + D)`` (also where ``D`` is beyond float64)."""
    r = ref.reference(name, weights, locs, scales, mu, sigma, alpha)
    if r.infinite:
        return Expected(math.inf, math.inf, True)
    if math.isfinite(r.value):
        return Expected(r.value, math.log1p(r.value), False)
    # Beyond float64: log(1 + D) from log I (the reference's log1p_value is log I for the
    # power divergences; chi-squares: log(1 + D) = log I; Amari: D ~ I / (alpha (alpha - 1))).
    if name == "amari":
        return Expected(math.inf, r.log_integral - math.log(alpha * (alpha - 1.0)), False)
    if name.startswith("chi2"):
        return Expected(math.inf, r.log_integral, False)
    return Expected(math.inf, r.log1p_value, False)


def reference_rows(name: str, alpha, dtype: str, qs=None) -> list[list]:
    """``[value, log1p, infinite]`` for every target and q (target-major)."""
    qs = grid_qs() if qs is None else qs
    rows = []
    for w, m, s in TARGETS.values():
        for mu, sigma in qs:
            loc, _, scale = represented(mu, sigma, dtype)
            rows.append(list(expected(name, alpha, w, m, s, loc, scale)))
    return rows


@functools.cache
def _cache() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def cached_reference(name: str, alpha, dtype: str) -> np.ndarray:
    """The grid's references, ``(targets, q's, 3)``, from the cache (computed if missing)."""
    rows = _cache().get(dtype, {}).get(key(name, alpha))
    if rows is None:
        rows = reference_rows(name, alpha, dtype)
    return np.asarray(rows, float).reshape(len(TARGETS), BATCH, 3)


def write_cache(orders=ORDERS + MORE_ORDERS) -> None:
    data = {dt: {key(n, a): reference_rows(n, a, dt) for n, a in orders} for dt in DTYPES}
    CACHE.write_text(json.dumps(data, separators=(",", ":")) + "\n")


# --- divjax, one program per (divergence, order, dtype) -----------------------------


def _stacked_targets():
    ps = [dj.GaussianMixture(w, m, s) for w, m, s in TARGETS.values()]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *ps)


@functools.cache
def program(name: str, alpha, dtype: str):
    """A jitted ``(targets, loc (B,), log_scale (B,)) -> dict of (T, B) arrays`` (x64 as dtype)."""

    def one(p, loc, log_scale):
        q = dj.Gaussian(loc, log_scale)
        out = {
            "value": dj.divergence(name, p, q, alpha=alpha),
            "log1p": dj.log1p_divergence(name, p, q, alpha=alpha),
            "infinite": dj.is_infinite(name, p, q, alpha=alpha),
            "grad": jnp.stack(dj.exact_grad(name, p, q, alpha=alpha)),
        }
        if name in HAND:
            out["autodiff"] = jnp.stack(dj.autodiff_grad(name, p, q, alpha=alpha))
        return out

    return jax.jit(jax.vmap(jax.vmap(one, (None, 0, 0)), (0, None, None)))


def evaluate(name: str, alpha, dtype: str, qs=None) -> dict:
    """divjax on every target and q (padded to `BATCH` q's: the same program for any ``qs``)."""
    qs = grid_qs() if qs is None else list(qs)
    assert len(qs) <= BATCH
    padded = qs + [qs[-1]] * (BATCH - len(qs))
    with jax.enable_x64(dtype == "float64"):
        p = _stacked_targets()
        lookup(name, jax.tree_util.tree_map(lambda x: x[0], p), dj.Gaussian(0.0, 0.0), alpha)
        loc = jnp.asarray([represented(mu, s, dtype)[0] for mu, s in padded], dtype)
        log_scale = jnp.asarray([represented(mu, s, dtype)[1] for mu, s in padded], dtype)
        out = jax.tree_util.tree_map(np.asarray, program(name, alpha, dtype)(p, loc, log_scale))
    return {k: v[:, : len(qs)] for k, v in out.items()}


# --- the contract ----------------------------------------------------------------


def relative_error(got_value, got_log1p, want: Expected, dtype: str) -> float:
    """The error the contract bounds: of the value, or of ``log(1 + D)`` beyond the range."""
    big = float(np.finfo(dtype).max)
    if want.value > big:
        return abs(got_log1p - want.log1p) / abs(want.log1p)
    if want.value == 0.0:
        return abs(got_value)
    err = abs(got_value - want.value) / want.value
    tiny = float(np.finfo(dtype).tiny)
    if want.value < 1e3 * tiny:  # subnormal range: an absolute error on the dtype's scale
        err = min(err, abs(got_value - want.value) / tiny)
    return err


def violations(name: str, alpha, dtype: str, out: dict, refs: np.ndarray, qs=None, targets=None):
    """``(messages, worst relative error)`` of every breach of the contract.

    ``out`` and ``refs`` have one row per name in ``targets`` (default: all).
    """
    qs = grid_qs() if qs is None else list(qs)
    targets = list(TARGETS) if targets is None else targets
    big = float(np.finfo(dtype).max)
    bad, worst = [], 0.0
    for t, tname in enumerate(targets):
        for i, (mu, sigma) in enumerate(qs):
            want = Expected(refs[t, i, 0], refs[t, i, 1], bool(refs[t, i, 2]))
            v, l1, inf = (float(out[k][t, i]) for k in ("value", "log1p", "infinite"))
            g = out["grad"][t, i]
            tag = f"{key(name, alpha)} {dtype} {tname} loc={mu:g} sigma={sigma:g}"
            if math.isnan(v) or v < 0 or math.isnan(l1):
                bad.append(f"{tag}: value {v}, log1p {l1}")
                continue
            if bool(inf) != want.infinite:
                bad.append(f"{tag}: is_infinite {bool(inf)}, reference says {want.infinite}")
                continue
            if np.any(np.isnan(g)):
                bad.append(f"{tag}: NaN in exact_grad {g}")
            if want.infinite:
                if v != math.inf or l1 != math.inf:
                    bad.append(f"{tag}: infinite, got {v} (log1p {l1})")
                continue
            if v == math.inf and want.value <= big:
                bad.append(f"{tag}: inf but the value {want.value:.6g} is within range")
                continue
            if want.value > big and v != math.inf:
                bad.append(f"{tag}: {v} but the value is beyond the range ({want.log1p=:.6g})")
                continue
            err = relative_error(v, l1, want, dtype)
            worst = max(worst, err)
            if not err <= TOL[dtype]:
                bad.append(f"{tag}: {v:.9g} vs {want.value:.9g} (log1p {l1:.9g}), rel {err:.2e}")
            if "autodiff" in out:
                a = out["autodiff"][t, i]
                fin = np.isfinite(g) & np.isfinite(a)
                rtol, atol = (3e-2, 1e-3) if dtype == "float32" else (1e-4, 1e-6)
                same = np.array_equal(np.isfinite(g), np.isfinite(a)) and np.allclose(
                    g[fin], a[fin], rtol=rtol, atol=atol * (1.0 + np.abs(a[fin]))
                )
                if not same:
                    bad.append(f"{tag}: exact_grad {g} vs autodiff_grad {a}")
    return bad, worst


if __name__ == "__main__":
    write_cache()
    print(f"wrote {CACHE}")
