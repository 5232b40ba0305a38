r"""Coordinate systems for the Gaussian family: where gradient descent happens.

A `Parameterization` maps unconstrained-or-not coordinates ``theta`` (an
array of shape ``(2,)``) to a `Gaussian` and back. `divjax.fit` runs its
optimizer on ``theta``; the gradient comes from ``jax.grad`` through
``to_gaussian``, never from a hand-written chain rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from divjax import _checks
from divjax.families import Gaussian


class Parameterization(NamedTuple):
    """Maps between coordinates ``theta`` (shape ``(2,)``) and a `Gaussian`.

    Attributes:
      name: the coordinate system's name.
      to_gaussian: ``theta -> Gaussian``; outside the domain it returns
        non-finite parameters, which `divjax.fit` reports as a divergence.
      from_gaussian: ``Gaussian -> theta``.
    """

    name: str
    to_gaussian: Callable[[jax.Array], Gaussian]
    from_gaussian: Callable[[Gaussian], jax.Array]


mu_log_sigma = Parameterization(
    "mu_log_sigma",
    lambda t: Gaussian._make((t[0], t[1])),
    lambda q: jnp.stack([q.loc, q.log_scale]),
)

PARAMETERIZATIONS: dict[str, Parameterization] = {p.name: p for p in (mu_log_sigma,)}


def get_parameterization(parameterization: str | Parameterization) -> Parameterization:
    """Looks a parameterization up by name (ValueError naming the valid ones)."""
    if isinstance(parameterization, Parameterization):
        return parameterization
    _checks.check_choice(parameterization, PARAMETERIZATIONS, "parameterization")
    return PARAMETERIZATIONS[parameterization]
