r"""How a fit ended: one rule for every fit, sweep, plot and the explorer.

A fit is judged on its *averaged* iterate (an exponential moving average over
about the last tenth of the steps), so Monte Carlo noise in the last step
does not decide it, in this order:

1. **diverged**: a step went non-finite (or left the coordinates' domain, or
   the scale left the float range) and was not taken; ``diverged_at`` says when.
2. **ran away**: ``q`` left every region where ``p`` has mass (its mean more
   than `RUN_AWAY_SDS` of p's standard deviations from p's mean, or its
   standard deviation above `RUN_AWAY_SCALE` times p's); mixture targets only.
3. **still moving**: the iterate's block means (batch means over the last
   fifth of the run) have a linear trend that is both significant (more than
   4 standard errors) and large (more than ``move_tol`` of q's standard
   deviation, or of log standard deviation, per averaging window): the fit has
   not settled, whatever it is near. Monte Carlo noise alone does not count.
4. **converged** to optimum ``k`` of `divjax.optimal_q` (``0`` = global):
   settled within ``tol`` of it (`divjax.optima.classify`).
5. **stuck**: settled, but near no local minimum of the divergence.
6. **settled**: settled, with no optima to compare with (a log-density target).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax.families import mean_and_log_sd

STUCK = -1  # settled near no known local minimum
UNKNOWN = -2  # no optima to compare with

OK, NONFINITE_GRAD, NONFINITE_PARAMS, SCALE_OUT_OF_RANGE, OUT_OF_DOMAIN = 0, 1, 2, 3, 4
REASONS = {
    OK: "ok",
    NONFINITE_GRAD: "non-finite gradient",
    NONFINITE_PARAMS: "non-finite parameters",
    SCALE_OUT_OF_RANGE: "scale collapsed to 0 or exploded",
    OUT_OF_DOMAIN: "step left the parameterization's domain",
}
RUN_AWAY_SDS = 30.0
RUN_AWAY_SCALE = 1e3
MOVE_TOL = 0.002
OUTCOMES = ("global", "local", "stuck", "settled", "moving", "ran_away", "diverged")


class FitStatus(NamedTuple):
    """How a fit ended (arrays; batched under `divjax.sweep`).

    Attributes:
      diverged_at: the step whose update went non-finite, or ``-1``.
      reason: a code of `REASONS` (``0`` when the fit did not diverge).
      optimum: the row of `divjax.Optima` the averaged iterate is near
        (``0`` = global), `STUCK` (``-1``) when near none, `UNKNOWN` (``-2``)
        when there were no optima to compare with or the fit diverged.
      moving: the iterate still drifts: a significant trend larger than
        ``move_tol`` per window (see the module docstring).
      ran_away: ``q`` left the region where ``p`` has mass.
      final_value: the exact divergence at the final ``q`` (``nan`` where no
        exact value exists; ``inf`` where it is infinite or beyond the float range).
      drift: the trend's movement per window (in q's standard deviations or
        log standard deviations).
    """

    diverged_at: jax.Array
    reason: jax.Array
    optimum: jax.Array
    moving: jax.Array
    ran_away: jax.Array
    final_value: jax.Array
    drift: jax.Array

    @property
    def diverged(self) -> jax.Array:
        return jnp.asarray(self.diverged_at) >= 0

    def outcome(self) -> np.ndarray:
        """One of `OUTCOMES` per fit (an array of strings, the status's batch shape)."""
        return outcome_names(self)

    def describe(self) -> str:
        """A one-line summary of an unbatched status."""
        if int(self.diverged_at) >= 0:
            return f"diverged at step {int(self.diverged_at)} ({REASONS[int(self.reason)]})"
        if bool(self.ran_away):
            return "ran away (q left the region where p has mass)"
        opt = int(self.optimum)
        where = "the global optimum" if opt == 0 else f"local optimum #{opt}"
        if bool(self.moving):
            near = f", near {where}" if opt >= 0 else ""
            return f"still moving (the average moved {float(self.drift):.3g} in the last window{near})"
        if opt >= 0:
            return f"converged to {where}"
        if opt == STUCK:
            return "stuck (settled near no local minimum)"
        return "settled (no optima to compare with)"


def outcome_masks(status: FitStatus) -> dict[str, np.ndarray]:
    """``{outcome: bool array}`` over `OUTCOMES`: exactly one is true for every fit."""
    diverged = np.asarray(status.diverged_at) >= 0
    ran = ~diverged & np.asarray(status.ran_away)
    moving = ~diverged & ~ran & np.asarray(status.moving)
    settled = ~diverged & ~ran & ~moving
    opt = np.asarray(status.optimum)
    return {
        "global": settled & (opt == 0),
        "local": settled & (opt > 0),
        "stuck": settled & (opt == STUCK),
        "settled": settled & (opt == UNKNOWN),
        "moving": moving,
        "ran_away": ran,
        "diverged": diverged,
    }


def outcome_names(status: FitStatus) -> np.ndarray:
    masks = outcome_masks(status)
    out = np.full(np.shape(status.diverged_at), "", dtype=object)
    for name, mask in masks.items():
        out[mask] = name
    return out


NUM_BLOCKS = 10  # block means kept: the trend test spans the last NUM_BLOCKS blocks
BLOCKS_PER_WINDOW = 5


def summary(q) -> jax.Array:
    """``concat(means, log marginal sds)``, shape ``(..., 2 d)``: what the trend test watches."""
    m, s = mean_and_log_sd(q)
    return jnp.concatenate([m, s], axis=-1)


def trend(blocks: jax.Array, num_blocks: jax.Array, average) -> tuple[jax.Array, jax.Array]:
    r"""``(drift, significant)`` of the block means' linear trend (batch means).

    ``blocks`` is a ring ``(..., NUM_BLOCKS, 2 d)`` of block means of `summary`
    (the most recent ``min(num_blocks, NUM_BLOCKS)`` are valid). Per
    coordinate, the least-squares slope over the valid blocks times
    `BLOCKS_PER_WINDOW` is the movement over one averaging window, in units of
    ``average``'s standard deviations (means) or in log standard deviation.
    ``drift`` is the largest; ``significant`` whether that coordinate's slope
    is more than 4 standard errors from zero (always, for a noiseless fit).
    """
    n_valid = jnp.minimum(num_blocks, NUM_BLOCKS)
    order = (jnp.arange(NUM_BLOCKS) + num_blocks[..., None]) % NUM_BLOCKS  # oldest first
    y = jnp.take_along_axis(blocks, order[..., None], axis=-2)
    idx = jnp.arange(NUM_BLOCKS) - (NUM_BLOCKS - n_valid[..., None])  # valid ones >= 0
    valid = (idx >= 0)[..., None]
    n = jnp.maximum(n_valid, 1)[..., None].astype(y.dtype)
    x = jnp.where(valid, idx[..., None].astype(y.dtype), 0.0)
    x_mean = jnp.sum(x, -2) / n
    y_mean = jnp.sum(jnp.where(valid, y, 0.0), -2) / n
    dx = jnp.where(valid, x - x_mean[..., None, :], 0.0)
    dy = jnp.where(valid, y - y_mean[..., None, :], 0.0)
    sxx = jnp.sum(dx**2, -2)
    slope = jnp.sum(dx * dy, -2) / jnp.where(sxx > 0, sxx, 1.0)
    resid = jnp.where(valid, dy - slope[..., None, :] * dx, 0.0)
    dof = jnp.maximum(n - 2.0, 1.0)
    se = jnp.sqrt(jnp.sum(resid**2, -2) / dof / jnp.where(sxx > 0, sxx, 1.0))
    m, log_sd = mean_and_log_sd(average)
    units = jnp.concatenate([jnp.exp(log_sd), jnp.ones_like(log_sd)], -1)
    moved = jnp.abs(slope) * BLOCKS_PER_WINDOW / units
    moved = jnp.where((n_valid >= 3)[..., None], moved, 0.0)
    signif = jnp.abs(slope) > 4.0 * se
    j = jnp.argmax(moved, axis=-1)
    drift = jnp.take_along_axis(moved, j[..., None], -1)[..., 0]
    return drift, jnp.take_along_axis(signif, j[..., None], -1)[..., 0]


def ran_away(q, target) -> jax.Array:
    """Whether ``q`` left the region where a mixture ``target`` has mass (False otherwise)."""
    if not hasattr(target, "mvn"):
        return jnp.zeros(jnp.shape(mean_and_log_sd(q)[0])[:-1], bool)
    m, s = mean_and_log_sd(q)
    mean = jnp.reshape(target.mean(), (-1,))
    sd = jnp.sqrt(jnp.reshape(target.variance(), (-1,)))
    far = jnp.any(jnp.abs(m - mean) > RUN_AWAY_SDS * sd, -1)
    wide = jnp.any(s > jnp.log(RUN_AWAY_SCALE * sd), -1)
    return far | wide


__all__ = [
    "OUTCOMES",
    "REASONS",
    "STUCK",
    "UNKNOWN",
    "FitStatus",
    "summary",
    "trend",
    "outcome_masks",
    "outcome_names",
    "ran_away",
]
