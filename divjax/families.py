r"""The Gaussian variational family ``q_phi = N(loc, exp(log_scale)^2)``.

``phi = (loc, log_scale)`` is unconstrained; every gradient in divjax is taken
with respect to it and comes back as a `Gaussian`-shaped pytree.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from divjax import _checks

_LOG_2PI = 1.8378770664093453


class _GaussianParams(NamedTuple):
    loc: jax.Array
    log_scale: jax.Array


class Gaussian(_GaussianParams):
    r"""Parameters of ``q = N(loc, scale^2)`` with ``scale = exp(log_scale)``.

    A NamedTuple pytree. ``loc`` and ``log_scale`` are scalars for a single
    ``q``, or arrays of equal shape ``(n,)`` for a batch of ``n`` (as in
    `divjax.Optima`).

    Gradients with respect to ``(loc, log_scale)`` come back in this same
    container (built with ``Gaussian._make``, which skips validation: a
    gradient may legitimately be ``inf``).

    Raises:
      ValueError: non-finite ``loc`` or ``log_scale`` (concrete inputs only).
    """

    __slots__ = ()

    def __new__(cls, loc, log_scale):
        if _checks.is_concrete(loc, log_scale):
            loc = _checks.as_float_array(loc, "loc")
            log_scale = _checks.as_float_array(log_scale, "log_scale")
            _checks.check_finite(loc, "loc")
            _checks.check_finite(log_scale, "log_scale")
        return super().__new__(cls, loc, log_scale)

    @classmethod
    def from_loc_scale(cls, loc, scale) -> Gaussian:
        """Builds ``q`` from its mean and (positive) standard deviation."""
        if _checks.is_concrete(scale):
            _checks.check_positive(scale, "scale")
        return cls(loc, jnp.log(jnp.asarray(scale, dtype=jnp.result_type(float))))

    @classmethod
    def from_loc_variance(cls, loc, variance) -> Gaussian:
        """Builds ``q`` from its mean and (positive) variance."""
        if _checks.is_concrete(variance):
            _checks.check_positive(variance, "variance")
        return cls(loc, 0.5 * jnp.log(jnp.asarray(variance, dtype=jnp.result_type(float))))

    @property
    def dim(self) -> int:
        """Always 1 (the d-dimensional families are in `divjax.mv_families`)."""
        return 1

    @property
    def scale(self) -> jax.Array:
        return jnp.exp(self.log_scale)

    @property
    def variance(self) -> jax.Array:
        return jnp.exp(2.0 * self.log_scale)

    def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        """``log q(x)``; broadcasts ``x`` against the parameters."""
        z = (jnp.asarray(x) - self.loc) / self.scale
        return -0.5 * z**2 - self.log_scale - 0.5 * _LOG_2PI

    def score(self, x: jax.typing.ArrayLike) -> Gaussian:
        r"""``grad_phi log q(x)``: ``((x - mu) / sigma^2, ((x - mu) / sigma)^2 - 1)``."""
        z = (jnp.asarray(x) - self.loc) / self.scale
        return Gaussian._make((z / self.scale, z**2 - 1.0))

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        """Reparameterized draws ``loc + scale * eps``, shape ``(num_samples,)``."""
        eps = jax.random.normal(key, (num_samples,), dtype=jnp.result_type(self.loc))
        return self.loc + self.scale * eps

    def entropy(self) -> jax.Array:
        return self.log_scale + 0.5 * (_LOG_2PI + 1.0)


# Rebuilding a pytree (jit outputs, tree_map, gradients, which may be inf or
# negative) must not re-run the validation meant for user input.
jax.tree_util.register_pytree_node(
    Gaussian, lambda g: (tuple(g), None), lambda _, c: Gaussian._make(c)
)


def default_q0() -> Gaussian:
    """The default start ``q0 = N(0, 5)`` (mean 0, variance 5)."""
    return Gaussian.from_loc_variance(0.0, 5.0)
