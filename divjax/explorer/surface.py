r"""The divergence landscape over ``q``'s two coordinates, and its value at a point.

`landscape` evaluates ``log(1 + D)`` (finite wherever ``D`` is, even beyond
the float range) and `divjax.is_infinite` on a mesh of any of the five
coordinate systems, in one compiled call with the target traced (a dragged
mode recomputes without recompiling). `values_at` gives both directions'
values at one point (the hover readout).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax.coordinates import get_parameterization
from divjax.divergences import divergence, is_infinite, log1p_divergence
from divjax.explorer.compute import DIRECTIONS
from divjax.families import Gaussian


@functools.partial(jax.jit, static_argnames=("name", "parameterization", "log"))
def landscape(target, theta1, theta2, *, name, parameterization, log=True):
    r"""The divergence on a ``theta1 x theta2`` mesh of ``parameterization``'s coordinates.

    Returns ``(values, infinite)``, each ``(len(theta2), len(theta1))``:
    ``log(1 + D)`` (or ``D``), ``+inf`` where infinite and NaN outside the domain;
    ``infinite`` is `divjax.is_infinite` (False outside the domain).
    """
    param = get_parameterization(parameterization)
    value_fn = log1p_divergence if log else divergence
    t1, t2 = jnp.meshgrid(theta1, theta2)
    theta = jnp.stack([t1.ravel(), t2.ravel()], -1)

    def one(t):
        ok = param.in_domain(t)
        q = param.to_gaussian(jnp.where(ok, t, param.from_gaussian(Gaussian._make((0.0, 0.0)))))
        value = jnp.where(ok, value_fn(name, target, q), jnp.nan)
        return value, ok & is_infinite(name, target, q)

    values, infinite = jax.vmap(one)(theta)
    return values.reshape(t1.shape), infinite.reshape(t1.shape)


class Landscape(NamedTuple):
    """The divergence ``name`` over a window of ``parameterization``'s coordinates (numpy).

    ``theta1`` ``(n,)``, ``theta2`` ``(n,)``; ``values`` ``(n, n)`` ``log(1 + D)``
    (rows follow ``theta2``; ``inf`` where infinite, NaN outside the domain);
    ``infinite`` ``(n, n)`` bool.
    """

    name: str
    parameterization: str
    theta1: np.ndarray
    theta2: np.ndarray
    values: np.ndarray
    infinite: np.ndarray


def theta_window(parameterization: str, loc_range, log_scale_range) -> tuple[tuple, tuple]:
    """The bounding box, in ``parameterization``'s coordinates, of a ``(loc, log_scale)`` window."""
    param = get_parameterization(parameterization)
    g1, g2 = np.meshgrid(np.linspace(*loc_range, 24), np.linspace(*log_scale_range, 24))
    theta = np.asarray(
        param.from_gaussian(Gaussian._make((jnp.asarray(g1), jnp.asarray(g2)))), np.float64
    )
    lo, hi = theta.reshape(-1, 2).min(0), theta.reshape(-1, 2).max(0)
    pad = 0.03 * (hi - lo)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def landscape_data(name, target, parameterization, loc_range, log_scale_range, num=40) -> Landscape:
    """`landscape` over the image of a ``(loc, log_scale)`` window, on the host."""
    r1, r2 = theta_window(parameterization, loc_range, log_scale_range)
    dtype = target.locs.dtype
    t1, t2 = np.linspace(*r1, num), np.linspace(*r2, num)
    values, infinite = landscape(
        target,
        jnp.asarray(t1, dtype),
        jnp.asarray(t2, dtype),
        name=name,
        parameterization=parameterization,
    )
    return Landscape(
        name, parameterization, t1, t2, np.asarray(values, np.float64), np.asarray(infinite, bool)
    )


@functools.partial(jax.jit, static_argnames=("kind", "parameterization"))
def values_at(target, theta, *, kind, parameterization):
    """``(in_domain, (forward, reverse) values)`` of the divergence ``kind`` at ``theta``."""
    param = get_parameterization(parameterization)
    ok = param.in_domain(theta)
    q = param.to_gaussian(jnp.where(ok, theta, param.from_gaussian(Gaussian._make((0.0, 0.0)))))
    return ok, jnp.stack([divergence(f"{kind}_{d}", target, q) for d in DIRECTIONS])


__all__ = ["Landscape", "landscape", "landscape_data", "theta_window", "values_at"]
