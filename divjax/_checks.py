"""Input validation shared by the public constructors and functions.

Every check here runs on concrete values only: under `jax.jit` or `jax.vmap`
the leaves are tracers and the checks are skipped, so validation happens at
construction or call time, outside traced code.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    """True when every argument is a concrete number or array (no tracers)."""
    for x in xs:
        if isinstance(x, jax.core.Tracer):
            return False
        if not isinstance(x, (int, float, np.ndarray, np.generic, jax.Array, list, tuple)):
            return False
    return True


def as_float_array(x, name: str) -> jax.Array:
    """Converts to a jax array of the default float dtype, naming `name` on failure."""
    try:
        return jnp.asarray(x, dtype=jnp.result_type(float))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {x!r}") from err


def check_finite(x, name: str) -> None:
    arr = np.asarray(x)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")


def check_positive(x, name: str) -> None:
    arr = np.asarray(x)
    check_finite(arr, name)
    if not np.all(arr > 0):
        raise ValueError(f"{name} must be positive, got {arr}")


def check_choice(value: str, valid: Iterable[str], name: str) -> None:
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(valid)}")
