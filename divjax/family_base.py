r"""What every variational family shares: the protocol base, pytree registration,
sample shapes and keys, and the one Gaussian log-density formula (`normal_log_prob`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from divjax import _checks

LOG_2PI = math.log(2.0 * math.pi)


def normal_log_prob(sq_norm: jax.Array, log_det: jax.Array, dim: int) -> jax.Array:
    r"""``log N`` at a point whose standardized squared norm is ``sq_norm``.

    ``log N(x; m, T T^T) = -|T^{-1}(x - m)|^2 / 2 - log|det T| - d log(2 pi) / 2``.
    """
    return -0.5 * sq_norm - log_det - 0.5 * dim * LOG_2PI


def register(cls):
    """Registers a NamedTuple class as a pytree whose rebuild skips input validation.

    Rebuilding (jit outputs, ``tree_map``, gradients, which may be ``inf`` or
    negative) and unpickling must not re-run the checks meant for user input.
    """
    jax.tree_util.register_pytree_node(cls, lambda t: (tuple(t), None), lambda _, c: cls._make(c))
    cls.__reduce__ = lambda self: (cls._make, (tuple(self),))  # unpickling skips validation too
    return cls


def sample_shape_of(sample_shape) -> tuple[int, ...]:
    """``sample_shape`` as a tuple (an int ``n`` means ``(n,)``)."""
    if isinstance(sample_shape, (int, np.integer)):
        return (int(sample_shape),)
    return tuple(int(n) for n in sample_shape)


def resolve_key(key, seed) -> jax.Array:
    """The PRNG key given positionally (numpyro) or as ``seed=`` (TFP, distrax)."""
    if (key is None) == (seed is None):
        raise ValueError("give exactly one PRNG key: sample(key, ...) or sample(seed=key, ...)")
    key = seed if key is None else key
    if isinstance(key, (int, np.integer)):
        raise ValueError("pass a jax.random.key(...), not an int, as the PRNG key")
    return key


class _Family:
    """Methods shared by every family (a mixin; the fields come from the NamedTuple)."""

    __slots__ = ()
    family: str
    reparameterized: bool = True

    def sample(self, key=None, sample_shape=(), *, seed=None) -> jax.Array:
        """Draws of shape ``sample_shape + event_shape``, reparameterized in ``phi``."""
        key = resolve_key(key, seed)
        shape = sample_shape_of(sample_shape)
        flat = self._sample_n(key, math.prod(shape))
        return flat.reshape(shape + self.event_shape)

    @property
    def dtype(self):
        return jnp.result_type(jax.tree_util.tree_leaves(self)[0])


def _finite_float(x, name: str) -> jax.Array:
    # Checked as numpy before the conversion: under jit, jnp.asarray of a constant is a tracer.
    arr = _checks.numeric(x, name)
    _checks.check_finite(arr, name)
    return jnp.asarray(arr, dtype=jnp.result_type(float))


__all__ = ["LOG_2PI", "normal_log_prob", "register", "resolve_key", "sample_shape_of"]
