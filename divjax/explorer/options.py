r"""The explorer's options: presets, input checks and the random start (pure functions).

``preset="page"`` is the seed page's setting: the target ``0.5 N(-3, 0.9^2) +
0.5 N(2, 0.7^2)``, ``K = 64``, plain SGD with step size ``0.08`` decaying as
``lr0 / (1 + 0.001 t)``, the ``(mu, sigma)`` coordinates, the natural
gradient, clipping at norm 5, exact gradients and a random start, with
forward and reverse KL fitted side by side.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from divjax import _checks
from divjax.divergences import is_infinite
from divjax.estimators import ESTIMATORS, min_samples
from divjax.explorer.compute import DIRECTIONS, KINDS, OPTIMIZERS
from divjax.families import Gaussian
from divjax.targets import GaussianMixture

MAX_SAMPLES = 512
PRESETS: dict[str, dict] = {
    "default": {},
    "page": {
        "target": ((0.5, 0.5), (-3.0, 2.0), (0.9, 0.7)),
        "q0": None,  # a random start
        "divergence": "kl",
        "estimator": "exact",
        "num_samples": 64,
        "optimizer": "sgd",
        "learning_rate": 0.08,
        "momentum": 0.0,
        "decay": 0.001,
        "parameterization": "mu_sigma",
        "natural_gradient": True,
        "clip_norm": 5.0,
        "fixed_scale": False,
    },
}
DIVERGENCE_CHOICES = KINDS + tuple(f"{k}_{d}" for k in KINDS for d in DIRECTIONS)


def preset(name: str) -> dict:
    """The options of preset ``name`` (a copy; `ValueError` naming the valid presets)."""
    _checks.check_choice(name, PRESETS, "preset")
    return dict(PRESETS[name])


def merged(name: str | None, options: dict, target, q0, q0_default: bool) -> dict:
    """Preset ``name``'s options overridden by ``options``, ``target`` and ``q0``.

    ``q0_default``: ``q0`` is the caller's default, used only where the preset has none.
    """
    out = preset(name or "default")
    out.update(options)
    if target is not None:
        out["target"] = target
    if not q0_default or "q0" not in out:
        out["q0"] = q0
    return out


def parse_divergence(divergence: str) -> tuple[str, tuple[str, ...]]:
    """``"kl"`` / ``"chi2"`` (both directions) or one divergence -> ``(kind, directions)``."""
    _checks.check_choice(divergence, DIVERGENCE_CHOICES, "divergence")
    if divergence in KINDS:
        return divergence, DIRECTIONS
    kind, direction = divergence.split("_")
    return kind, (direction,)


def default_estimators(kind: str) -> tuple[str, str]:
    """The first Monte Carlo estimator of each direction (`divjax.ESTIMATORS` order)."""
    return tuple(ESTIMATORS[f"{kind}_{d}"][1] for d in DIRECTIONS)


def monte_carlo_choices(kind: str, direction: str) -> tuple[str, ...]:
    """The Monte Carlo estimators of ``{kind}_{direction}``."""
    return ESTIMATORS[f"{kind}_{direction}"][1:]


def parse_estimators(kind, directions, estimator="exact", estimators=None) -> tuple[bool, tuple]:
    """``(exact, (forward, reverse) Monte Carlo estimators)`` from the user's choice.

    ``estimator`` is ``"exact"`` or a Monte Carlo estimator of at least one
    fitted direction (it is used for each direction that has it);
    ``estimators`` maps a direction to its estimator and wins.
    """
    chosen = list(default_estimators(kind))
    exact = estimator == "exact"
    if not exact:
        fits = [i for i, d in enumerate(DIRECTIONS) if estimator in monte_carlo_choices(kind, d)]
        if not any(DIRECTIONS[i] in directions for i in fits):
            valid = sorted({e for d in directions for e in monte_carlo_choices(kind, d)})
            raise ValueError(
                f"unknown estimator {estimator!r} for {kind} ({', '.join(directions)}); "
                f"valid choices: exact, {', '.join(valid)}"
            )
        for i in fits:
            chosen[i] = estimator
    for direction, name in (estimators or {}).items():
        _checks.check_choice(direction, DIRECTIONS, "direction")
        _checks.check_choice(
            name, monte_carlo_choices(kind, direction), f"estimator of {kind}_{direction}"
        )
        chosen[DIRECTIONS.index(direction)] = name
    return exact, tuple(chosen)


def check_num_samples(k, estimators=()) -> int:
    """``K`` as an int in ``[1, MAX_SAMPLES]``, raised to the estimators' `divjax.min_samples`."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_SAMPLES:
        raise ValueError(f"num_samples (K) must be an int from 1 to {MAX_SAMPLES}, got {k!r}")
    return max([int(k)] + [min_samples(e) for e in estimators])


def check_optimizer(optimizer: str) -> str:
    _checks.check_choice(optimizer, OPTIMIZERS, "optimizer")
    return optimizer


def check_float(value, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (`ValueError` naming ``name`` otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
    return value


def check_clip_norm(clip_norm) -> float | None:
    """None (no clipping) or a positive finite norm."""
    if clip_norm is None:
        return None
    value = check_float(clip_norm, "clip_norm")
    if value <= 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
    return value


def as_mixture(target) -> GaussianMixture:
    """A 1-D `GaussianMixture` (default float type) from one or ``(weights, locs, scales)``."""
    if not isinstance(target, GaussianMixture):
        if not (isinstance(target, (tuple, list)) and len(target) == 3):
            raise ValueError(
                "target must be a 1-D divjax.GaussianMixture or (weights, locs, scales), "
                f"got {type(target).__name__}"
            )
        target = GaussianMixture(*target)
    if target.event_shape != ():
        raise ValueError(f"the explorer fits 1-D targets; got event_shape {target.event_shape}")
    log_w, locs, scales = (np.asarray(a, np.float64) for a in target)
    return GaussianMixture.from_log_weights(log_w, locs, scales)


def mixture_arrays(target: GaussianMixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(normalized weights, locs, scales)`` as float64 numpy arrays."""
    log_w = np.asarray(target.log_weights, np.float64)
    w = np.exp(log_w - log_w.max())
    return w / w.sum(), np.asarray(target.locs, np.float64), np.asarray(target.scales, np.float64)


def target_key(target: GaussianMixture) -> tuple:
    """The target's parameters as bytes, rounded (what its optima and landscape depend on)."""
    return tuple(np.round(np.asarray(a, np.float64), 6).tobytes() for a in target)


def with_mode(target, loc: float, scale: float | None = None, weight: float | None = None):
    """``(weights, locs, scales)`` plus a component (default: the median scale, the mean weight)."""
    w, m, s = mixture_arrays(target)
    scale = float(np.median(s)) if scale is None else check_float(scale, "scale", 1e-6)
    weight = float(np.mean(w)) if weight is None else check_float(weight, "weight", 1e-12)
    return np.append(w, weight), np.append(m, check_float(loc, "loc")), np.append(s, scale)


def without_mode(target, index: int):
    """``(weights, locs, scales)`` of ``target`` without component ``index``."""
    return tuple(np.delete(a, index) for a in mixture_arrays(target))


def density_grid(target: GaussianMixture, qs, num: int, dtype) -> np.ndarray:
    """``num`` points covering the target and each ``q`` in ``qs`` (within reason)."""
    _, m, s = mixture_arrays(target)
    lo, hi = float(np.min(m - 4 * s)), float(np.max(m + 4 * s))
    span = hi - lo
    for q in qs:
        loc, scale = float(q.loc), math.exp(float(q.log_scale))
        lo = max(min(lo, loc - 3.5 * scale), lo - span)
        hi = min(max(hi, loc + 3.5 * scale), hi + span)
    return np.linspace(lo, hi, num).astype(dtype)


@functools.partial(jax.jit, static_argnames=("kind",))
def _finite_both(target, locs, log_scales, *, kind):
    """Whether both directions of ``kind`` are finite at each ``(loc, log_scale)``."""

    def one(loc, log_scale):
        q = Gaussian._make((loc, log_scale))
        return ~(
            is_infinite(f"{kind}_forward", target, q) | is_infinite(f"{kind}_reverse", target, q)
        )

    return jax.vmap(one)(locs, log_scales)


def random_start(
    target: GaussianMixture, kind: str, rng: np.random.Generator
) -> tuple[float, float]:
    r"""A random ``(loc, log_scale)`` where both directions of ``kind`` are finite.

    The location is uniform over the modes' span (two scales beyond the
    outermost), the log scale uniform between the smallest component's scale
    halved and twice the target's standard deviation; for the chi-squares the
    first of 64 draws where both directions are finite (`divjax.is_infinite`).
    """
    _, m, s = mixture_arrays(target)
    sd = math.sqrt(float(target.variance()))
    locs = rng.uniform(float(np.min(m - 2 * s)), float(np.max(m + 2 * s)), 64)
    log_scales = rng.uniform(math.log(s.min() / 2), math.log(2 * sd), 64)
    if kind == "kl":
        return float(locs[0]), float(log_scales[0])
    dtype = target.locs.dtype
    ok = np.asarray(_finite_both(target, locs.astype(dtype), log_scales.astype(dtype), kind=kind))
    i = int(np.argmax(ok)) if ok.any() else None
    if i is None:  # no draw was finite: the target's mean, the widest component's scale
        return float(np.dot(*mixture_arrays(target)[:2])), math.log(float(s.max()))
    return float(locs[i]), float(log_scales[i])


__all__ = [
    "DIVERGENCE_CHOICES",
    "MAX_SAMPLES",
    "PRESETS",
    "as_mixture",
    "check_clip_norm",
    "check_float",
    "check_num_samples",
    "check_optimizer",
    "default_estimators",
    "density_grid",
    "target_key",
    "with_mode",
    "without_mode",
    "merged",
    "mixture_arrays",
    "monte_carlo_choices",
    "parse_divergence",
    "parse_estimators",
    "preset",
    "random_start",
]
