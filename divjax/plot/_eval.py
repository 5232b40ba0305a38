"""The only evaluations the pictures make: densities on a grid, the exact divergence at ``q``.

Both are jitted once per divergence, target kind and grid shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from divjax.divergences import exact_available, is_infinite, log1p_divergence
from divjax.plot.style import OTHER_DIRECTION, format_value, label, seeking


@functools.partial(jax.jit, static_argnames="normalized")
def _log_density(dist, x, normalized):
    return dist.log_prob(x) if normalized else dist.unnormalized_log_prob(x)


def log_density(dist, x, *, normalized: bool = False) -> np.ndarray:
    """``log p`` (``normalized``) or ``log p~`` of a bound target, ``log q`` of a family."""
    normalized = normalized or hasattr(dist, "family")
    x = jnp.asarray(x, jnp.result_type(float))
    return np.asarray(_log_density(dist, x, normalized), np.float64)


@functools.partial(jax.jit, static_argnames=("name", "alpha"))
def _exact(p, q, *, name, alpha):
    return log1p_divergence(name, p, q, alpha=alpha), is_infinite(name, p, q, alpha=alpha)


def exact_text(name: str, p, q, alpha=None) -> str | None:
    """``"KL(p || q) = 0.52"`` (``∞``, or ``≈ 10^k`` beyond the float range); None if not exact."""
    if not exact_available(name, p, q, alpha):
        return None
    log1p, inf = (np.asarray(a) for a in _exact(p, q, name=name, alpha=alpha))
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(q)).name
    return f"{label(name, alpha)} = {format_value(log1p, bool(inf), dtype)}"


def values_line(name: str, p, q, alpha=None) -> str:
    """The divergence at ``q`` and, where it has one, the other direction's, on one line."""
    names = [name] + ([OTHER_DIRECTION[name]] if name in OTHER_DIRECTION else [])
    texts = [exact_text(n, p, q, alpha) for n in names]
    texts = [t for t in texts if t is not None]
    return ",  ".join(texts) if texts else "no exact divergence for this target"


def head(name: str, alpha=None) -> str:
    """``"minimize KL(p || q) (mean-seeking)"``."""
    word = seeking(name)
    return f"minimize {label(name, alpha)}" + (f" ({word})" if word else "")
