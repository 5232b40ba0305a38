r"""Targets: Gaussian mixtures with positive, possibly unnormalized weights.

A target is ``p~(x) = sum_k w_k N(x; m_k, s_k^2)`` with mass ``Z = sum_k w_k``;
the normalized target is ``p = p~ / Z``. Exact divergences always use the
normalized ``p``; Monte Carlo estimators only ever need ``log p~``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import _checks
from divjax.mv_families import MvGaussianMixture

_LOG_2PI = 1.8378770664093453


class _MixtureParams(NamedTuple):
    weights: jax.Array
    locs: jax.Array
    scales: jax.Array


class GaussianMixture(_MixtureParams):
    r"""A Gaussian mixture target; 1-D, or ``d``-dimensional given ``(M, d)`` locs.

    In 1-D it is a pytree of ``(weights, locs, scales)``, each ``(M,)`` for
    ``M`` components. Given ``locs`` of shape ``(M, d)`` (with diagonal
    ``scales`` ``(M, d)`` or full covariances ``covs=(M, d, d)``) the
    constructor returns the d-dimensional target, a
    `divjax.mv_families.MvGaussianMixture` (``d = 1`` included: ``(M, 1)``
    locs give the same numbers as ``(M,)`` ones). One constructor, two pytree
    types: the 1-D code relies on ``(M,)`` leaves, so ``isinstance(p,
    GaussianMixture)`` is true of 1-D targets only.

    Args:
      weights: positive component weights; need not sum to one, the mass is
        ``Z = sum(weights)``.
      locs: component means, ``(M,)`` or ``(M, d)``.
      scales: positive component standard deviations, ``(M,)`` or ``(M, d)``.
      covs: keyword-only, ``(M, d, d)`` symmetric positive-definite
        covariances instead of ``scales``.

    Raises:
      ValueError: non-positive or non-finite weights or scales, non-finite
        locations, mismatched lengths or dimensions, covariances that are not
        symmetric positive definite (checked on concrete inputs).
    """

    __slots__ = ()

    def __new__(cls, weights, locs, scales=None, *, covs=None):
        if covs is not None or np.ndim(locs) == 2:
            return MvGaussianMixture(weights, locs, scales, covs=covs)
        if scales is None:
            raise ValueError("scales is required: (M,) standard deviations for a 1-D target")
        if _checks.is_concrete(weights, locs, scales):
            weights = _checks.as_float_array(weights, "weights")
            locs = _checks.as_float_array(locs, "locs")
            scales = _checks.as_float_array(scales, "scales")
            weights, locs, scales = (jnp.atleast_1d(a) for a in (weights, locs, scales))
            if not (weights.shape == locs.shape == scales.shape) or weights.ndim != 1:
                raise ValueError(
                    "weights, locs and scales must be 1-D of the same length, got shapes "
                    f"{weights.shape}, {locs.shape}, {scales.shape}"
                )
            _checks.check_positive(weights, "weights")
            _checks.check_finite(locs, "locs")
            _checks.check_positive(scales, "scales")
        return super().__new__(cls, weights, locs, scales)

    @property
    def num_components(self) -> int:
        return self.weights.shape[-1]

    @property
    def dim(self) -> int:
        """Always 1 (a d-dimensional target is a `MvGaussianMixture`)."""
        return 1

    @property
    def log_normalizer(self) -> jax.Array:
        """``log Z = log sum_k w_k``."""
        return logsumexp(jnp.log(self.weights), axis=-1)

    @property
    def probs(self) -> jax.Array:
        """Normalized mixture weights ``w_k / Z``."""
        return self.weights / jnp.sum(self.weights, axis=-1, keepdims=True)

    def component_log_probs(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""``log w_k + log N(x; m_k, s_k^2)``, shape ``x.shape + (M,)``."""
        x = jnp.asarray(x)[..., None]
        z = (x - self.locs) / self.scales
        return jnp.log(self.weights) - 0.5 * z**2 - jnp.log(self.scales) - 0.5 * _LOG_2PI

    def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""Unnormalized log density ``log p~(x)``; shape of ``x``."""
        return logsumexp(self.component_log_probs(x), axis=-1)

    def normalized_log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""Normalized log density ``log p(x) = log p~(x) - log Z``."""
        return self.log_prob(x) - self.log_normalizer

    def grad_log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""``d/dx log p~(x) = sum_k r_k(x) (m_k - x) / s_k^2`` (responsibilities ``r_k``)."""
        x = jnp.asarray(x)
        resp = jax.nn.softmax(self.component_log_probs(x), axis=-1)
        return jnp.sum(resp * (self.locs - x[..., None]) / self.scales**2, axis=-1)

    def mean(self) -> jax.Array:
        return jnp.sum(self.probs * self.locs, axis=-1)

    def variance(self) -> jax.Array:
        m = self.mean()
        return jnp.sum(self.probs * (self.scales**2 + (self.locs - m[..., None]) ** 2), axis=-1)

    def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """Draws from the normalized mixture; returns an array of ``shape``."""
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        key_c, key_n = jax.random.split(key)
        comp = jax.random.categorical(key_c, jnp.log(self.weights), shape=shape)
        eps = jax.random.normal(key_n, shape, dtype=self.locs.dtype)
        return self.locs[comp] + self.scales[comp] * eps


# Rebuilding a pytree (jit outputs, tree_map, gradients with respect to the
# target's parameters) must not re-run the validation meant for user input.
jax.tree_util.register_pytree_node(
    GaussianMixture, lambda p: (tuple(p), None), lambda _, c: GaussianMixture._make(c)
)


def default_target() -> GaussianMixture:
    """The default scenario: ``p = 0.3 N(-2, 0.5^2) + 0.7 N(3, 1^2)``."""
    return GaussianMixture(weights=[0.3, 0.7], locs=[-2.0, 3.0], scales=[0.5, 1.0])
