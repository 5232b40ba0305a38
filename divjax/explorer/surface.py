r"""The divergence landscape over ``q``'s two coordinates, and its value at a point.

`landscape` evaluates ``log(1 + D)`` (finite wherever ``D`` is, even beyond
the float range) and `divjax.is_infinite` on a mesh of any of the five
coordinate systems, in one compiled call with the target traced (a dragged
mode recomputes without recompiling). `value_at` interpolates the mesh (the
hover readout; no compilation).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax.coordinates import get_parameterization
from divjax.divergences import divergence, is_infinite, log1p_divergence
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


def value_at(data: Landscape, theta) -> float:
    """``D`` at ``theta`` interpolated from the mesh (bilinear in ``log(1 + D)``).

    ``inf`` where a neighbouring mesh point is infinite, NaN outside the mesh or
    the coordinates' domain.
    """
    t1, t2, v = data.theta1, data.theta2, data.values
    x, y = float(theta[0]), float(theta[1])
    if not (t1[0] <= x <= t1[-1] and t2[0] <= y <= t2[-1]):
        return math.nan
    i = min(int(np.searchsorted(t1, x, side="right")) - 1, len(t1) - 2)
    j = min(int(np.searchsorted(t2, y, side="right")) - 1, len(t2) - 2)
    cell = v[j : j + 2, i : i + 2]
    if np.isnan(cell).any():
        return math.nan
    if np.isinf(cell).any():
        return math.inf
    a = (x - t1[i]) / (t1[i + 1] - t1[i])
    b = (y - t2[j]) / (t2[j + 1] - t2[j])
    log1p = (1 - b) * ((1 - a) * cell[0, 0] + a * cell[0, 1]) + b * (
        (1 - a) * cell[1, 0] + a * cell[1, 1]
    )
    return math.expm1(log1p)


__all__ = ["Landscape", "landscape", "landscape_data", "theta_window", "value_at"]
