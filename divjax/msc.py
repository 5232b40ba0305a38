r"""Markovian score climbing: the conditional importance sampling (CIS) kernel and its state.

Monte Carlo fits of the forward KL by self-normalized importance sampling
(``snis``) follow a gradient whose mean is biased by ``O(1/K)``, so they
converge to a ``K``-dependent point, not to moment matching. Markovian score
climbing (MSC) instead keeps one sample ``z`` between optimizer steps and moves
it with a Markov kernel that leaves the target ``p`` invariant for the current
``q``; the gradient ``-s(z)`` at the new sample is then, at stationarity, an
unbiased estimate of ``grad KL(p || q) = -E_p[s]``, and stochastic
approximation with Markovian noise converges to the true forward-KL optimum
(with Robbins-Monro step sizes), whatever ``K``.

The kernel is conditional importance sampling: given the retained ``z``, draw
``K - 1`` fresh ``x_i ~ q``, put ``x_0 = z``, weight all ``K`` by
``w_i = p~(x_i) / q(x_i)`` and resample one index ``J ~ Cat(w / sum w)``; the
new state is ``x_J``. It is ``p``-invariant for every ``q`` and ``K >= 2``
(``K = 1`` never moves) and uniformly ergodic when ``sup p~/q < inf``.

The state is `MSCState`, a pytree carried by `divjax.fit` and `divjax.sweep`
in `divjax.fit.FitState.est_state`; the estimators themselves (``"msc"`` and
``"msc_rb"``) are in `divjax.estimators`.

References:
  Naesseth, Lindsten & Blei (2020), Markovian score climbing: variational
  inference with KL(p || q), NeurIPS.
  Andrieu, Lee & Vihola (2018), Uniform ergodicity of the iterated
  conditional SMC and geometric ergodicity of particle Gibbs samplers,
  Bernoulli 24(2) (the CIS kernel is conditional SMC with one time step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from divjax.families import Gaussian

stop = jax.lax.stop_gradient


class MSCState(NamedTuple):
    """The Markov chain's state between optimizer steps.

    Attributes:
      sample: the retained sample ``z``: ``()`` in 1-D, ``(d,)`` in ``d`` dimensions.
    """

    sample: jax.Array


class CISDraw(NamedTuple):
    """One application of the CIS kernel (all stopped).

    Attributes:
      samples: ``(K,)`` (``(K, d)``) the particles: ``samples[0]`` is the retained ``z``,
        the rest fresh draws from ``q``.
      log_weights: ``(K,)`` ``log p~(x_i) - log q(x_i)`` under the current ``q``.
      index: ``()`` int, the resampled particle ``J``; the new state is
        ``samples[J]``.
    """

    samples: jax.Array
    log_weights: jax.Array
    index: jax.Array


def init(q: Gaussian, key: jax.Array) -> MSCState:
    """Starts the chain at one draw from ``q`` (Naesseth et al. allow any start)."""
    return MSCState(stop(q.sample(key, 1)[0]))


def cis_kernel(
    key: jax.Array,
    q: Gaussian,
    state: MSCState,
    log_p: Callable[[jax.Array], jax.Array],
    num_samples: int,
) -> CISDraw:
    r"""One step of the conditional importance sampling kernel, ``K = num_samples >= 2``.

    Args:
      key: PRNG key (split into the fresh draws and the resampling).
      q: the current proposal (its gradient is not taken: all outputs are stopped).
      state: the retained sample.
      log_p: unnormalized ``log p~``, ``(K,) -> (K,)`` (``(K, d) -> (K,)``).
      num_samples: ``K``, the number of particles including the retained one.

    Returns:
      A `CISDraw`; ``MSCState(draw.samples[draw.index])`` is the next state.
    """
    key_fresh, key_index = jax.random.split(key)
    q = stop(q)
    fresh = q.sample(key_fresh, num_samples - 1)
    x = stop(jnp.concatenate([state.sample[None].astype(fresh.dtype), fresh]))
    log_w = stop(log_p(x) - q.log_prob(x))
    index = jax.random.categorical(key_index, log_w)
    return CISDraw(x, log_w, index)


__all__ = ["CISDraw", "MSCState", "cis_kernel", "init"]
