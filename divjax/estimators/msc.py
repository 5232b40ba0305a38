r"""Markovian score climbing: the conditional importance sampling (CIS) kernel and its state.

Forward-KL fits by self-normalized importance sampling (``snis``) follow a
gradient biased by ``O(1/K)``. Markovian score climbing keeps one sample ``z``
between optimizer steps and moves it with a kernel that leaves ``p``
invariant for the current ``q``; the score at the new sample is then, at
stationarity, unbiased for ``grad KL(p || q) = -E_p[s]``, and stochastic
approximation with Markovian noise converges to the true forward-KL optimum,
whatever ``K``.

The kernel: given ``z``, draw ``K - 1`` fresh ``x_i ~ q``, put ``x_0 = z``,
weight all ``K`` by ``w_i = p~(x_i) / q(x_i)`` and resample one index ``J``;
the new state is ``x_J``. It is ``p``-invariant for every ``q`` and ``K >= 2``.

References:
  Naesseth, Lindsten & Blei (2020), Markovian score climbing: variational
  inference with KL(p || q), NeurIPS.
  Andrieu, Lee & Vihola (2018), Uniform ergodicity of the iterated
  conditional SMC and geometric ergodicity of particle Gibbs samplers,
  Bernoulli 24(2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from divjax.estimators._core import Draw, Spec, kl_forward_value, score_terms, stop, zero


class MSCState(NamedTuple):
    """The Markov chain's state between optimizer steps: the retained sample (event-shaped)."""

    sample: jax.Array


def init(q, key: jax.Array) -> MSCState:
    """Starts the chain at one draw from ``q`` (Naesseth et al. allow any start)."""
    return MSCState(stop(q.sample(key)))


def cis_kernel(
    key: jax.Array, q, state: MSCState, log_p: Callable[[jax.Array], jax.Array], num_samples: int
) -> Draw:
    r"""One CIS step, ``K = num_samples >= 2``; ``MSCState(draw.samples[draw.index])`` is next."""
    key_fresh, key_index = jax.random.split(key)
    qs = stop(q)
    fresh = qs.sample(key_fresh, num_samples - 1)
    x = stop(jnp.concatenate([state.sample[None].astype(fresh.dtype), fresh]))
    log_w = stop(log_p(x) - qs.log_prob(x))
    index = jax.random.categorical(key_index, log_w)
    return Draw(q, key_fresh, x, log_w, log_p, index)


def msc(draw: Draw, alpha=None) -> Spec:
    r"""Markovian score climbing for ``kl_forward``: ``-s(x_J)`` at the resampled particle.

    At a fixed ``q`` with the chain at stationarity, unbiased for
    ``grad KL(p || q)`` at every ``K >= 2``; its variance there is ``Var_p(s)``
    whatever ``K`` (``K`` only speeds mixing). Invariant to the scale of ``p~``.

    References:
      Naesseth, Lindsten & Blei (2020), Markovian score climbing, NeurIPS.
    """
    log_w = draw.log_weights
    pick = jax.nn.one_hot(draw.index, draw.num_samples, dtype=log_w.dtype)
    return Spec(kl_forward_value(log_w), score_terms(-pick, draw), zero(log_w))


def msc_rb(draw: Draw, alpha=None) -> Spec:
    r"""Rao-Blackwellized Markovian score climbing: ``snis`` on the CIS particles.

    ``E[s(x_J) | x] = sum_i wbar_i s(x_i)``; the chain still moves to
    ``x_J``. Unbiased at stationarity, with a variance that shrinks with ``K``.

    References:
      Naesseth, Lindsten & Blei (2020), Markovian score climbing, NeurIPS.
    """
    log_w = draw.log_weights
    return Spec(kl_forward_value(log_w), score_terms(-jax.nn.softmax(log_w), draw), zero(log_w))
