"""Programs and scenarios shared by several test modules (one compile per session).

`exact_1d` evaluates every exact quantity of every divergence case at a padded
batch of 1-D q's, one jitted program per group of cases (`GROUPS`); test
modules call it with their own q's (same batch size, same target shape: no
recompile) instead of compiling their own copies of the quadratures, and ask
only for the groups they read.

The test modules that call it run in one pytest-xdist worker (``conftest.py``),
so each program compiles once per run.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import divjax as dj

MAIN = dj.DIVERGENCES
ALPHA = (
    ("renyi_reverse", 0.5),
    ("renyi_reverse", 1.5),
    ("renyi_reverse", 3.0),
    ("renyi_forward", 0.5),
    ("renyi_forward", 2.5),
    ("amari", -0.5),
    ("amari", 0.3),
    ("amari", 1.7),
    ("hellinger", None),
    ("jensen_shannon", None),
)
CASES = tuple((n, None) for n in MAIN) + ALPHA
# `exact_1d`'s programs: each group of cases compiles on its own, in a few seconds.
GROUPS = {
    "main": tuple((n, None) for n in MAIN),
    "renyi": tuple(c for c in ALPHA if c[0].startswith("renyi")),
    "others": tuple(c for c in ALPHA if not c[0].startswith("renyi")),
}
# The order of each alpha-divergence used where one order stands for its kind.
DEFAULT_ALPHA = {"renyi_forward": 0.5, "renyi_reverse": 0.5, "amari": 0.5}
BATCH = 48  # the padded batch of `exact_1d`
P1 = ([0.3, 0.7], [-2.0, 3.0], [0.5, 1.0])  # the default target


def key_of(case) -> str:
    return f"{case[0]}:{case[1]}"


def gaussians(pairs) -> dj.Gaussian:
    """A batch of 1-D Gaussians from (loc, scale) pairs."""
    locs, scales = zip(*pairs)
    return dj.Gaussian(jnp.asarray(locs, float), jnp.log(jnp.asarray(scales, float)))


def other_target() -> dj.GaussianMixture:
    """A second two-component mixture (same shapes as the default), with Z = 7."""
    return dj.GaussianMixture(weights=[2.0, 5.0], locs=[-1.0, 1.5], scales=[1.2, 0.6])


@functools.partial(jax.jit, static_argnames="group")
def _exact_1d(p, qs, group):
    def one(q):
        out = {}
        for name, alpha in GROUPS[group]:
            r = out[key_of((name, alpha))] = dict(
                value=dj.divergence(name, p, q, alpha=alpha),
                exact=jnp.stack(dj.exact_grad(name, p, q, alpha=alpha)),
                infinite=dj.is_infinite(name, p, q, alpha=alpha),
            )
            if name in MAIN:  # elsewhere exact_grad is autodiff_grad (one code path)
                r["auto"] = jnp.stack(dj.autodiff_grad(name, p, q))
                r["log1p"] = dj.log1p_divergence(name, p, q)
        return out

    return jax.vmap(one)(qs)


def exact_1d(p, pairs, groups=tuple(GROUPS)):
    """Each case's value, exact gradient (``(n, 2)``) and flags at the (loc, scale) pairs.

    Float64, one compile per group for every two-component target; ``p`` is a
    `GaussianMixture` built in float64 or a zero-argument function building
    one; ``groups``: the `GROUPS` whose cases are returned.
    """
    pairs = [tuple(map(float, q)) for q in pairs]
    out = {}
    with jax.enable_x64(True):
        p = p() if callable(p) else p
        for start in range(0, len(pairs), BATCH):
            chunk = pairs[start : start + BATCH]
            n = len(chunk)
            qs = gaussians(chunk + [chunk[0]] * (BATCH - n))
            res = {k: v for g in groups for k, v in _exact_1d(p, qs, group=g).items()}
            res = jax.tree_util.tree_map(lambda a, n=n: np.asarray(a)[:n], res)
            out = (
                res
                if not out
                else jax.tree_util.tree_map(lambda a, b: np.concatenate([a, b]), out, res)
            )
    return out


@functools.cache
def exact_default(pairs: tuple, groups=tuple(GROUPS)) -> dict:
    """`exact_1d` on the default target, cached for the session."""
    return exact_1d(dj.default_target, pairs, groups)
