"""Input validation shared by the public constructors and functions.

Every check here runs on concrete values only: under `jax.jit` or `jax.vmap`
the leaves are tracers and the checks are skipped, so validation happens at
construction or call time, before any tracing.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    """True when every argument is a concrete number or array (no tracers)."""
    # Only tracers skip the checks: anything else (None, a dict...) reaches the
    # validators, which reject it with a ValueError naming the argument.
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def numeric(x, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array; `ValueError` naming ``name`` if it is not numbers."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {x!r}") from err
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got {x!r}")
    return arr.astype(np.float64)


def as_float_array(x, name: str) -> jax.Array:
    """Converts to a jax array of the default float dtype, naming ``name`` on failure."""
    return jnp.asarray(numeric(x, name), dtype=jnp.result_type(float))


def check_finite(x, name: str) -> None:
    arr = np.asarray(x)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")


def check_positive(x, name: str) -> None:
    arr = numeric(x, name)
    check_finite(arr, name)
    if not np.all(arr > 0):
        raise ValueError(f"{name} must be positive, got {arr}")


def check_choice(value, valid: Iterable[str], name: str) -> None:
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(valid)}")


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; `ValueError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def spd_matrices(x, name: str) -> np.ndarray:
    """``(..., d, d)`` symmetric positive-definite matrices as float64 (ValueError otherwise)."""
    c = numeric(x, name)
    if c.ndim < 2 or c.shape[-1] != c.shape[-2]:
        raise ValueError(f"{name} must be (..., d, d) square matrices, got shape {c.shape}")
    check_finite(c, name)
    if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-6, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    eig = np.linalg.eigvalsh(c)
    if not np.all(eig > 0):
        raise ValueError(f"{name} must be positive definite; eigenvalues {eig}")
    return c
