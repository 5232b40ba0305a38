r"""The explorer's state and its advancing, without any drawing (no matplotlib here).

A `Session` holds the target, the two fits (forward and reverse, from one
start), the static `divjax.explorer.compute.Settings` and the traced
hyperparameters and switches. `Session.advance` runs the compiled
`divjax.explorer.compute.advance` (`divjax.fitter`'s step, ``N`` times per
frame in one call) and keeps its result as `Session.frame` (numpy). A change
of settings re-initializes both fits at their current ``q`` (the step count,
hence the step-size decay, goes on); moving ``q`` starts that fit afresh.

Status: `divjax.fit.judge` inside the compiled frame (one rule for every
fit), described by `divjax.status.FitStatus.describe`. The optima it compares
with are `divjax.optimal_q`'s, kept in an `OptimaBook` and computed by whoever
holds the session (`optima_wanted`, `optima_job`, `set_optima`; the window
does it in a background thread, `compute_optima` here and now).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from divjax import status as fit_status
from divjax.coordinates import PARAMETERIZATIONS, get_parameterization
from divjax.divergences import infinite_reason
from divjax.explorer import compute, options
from divjax.explorer.compute import DIRECTIONS, HYPER, Settings
from divjax.families import Gaussian
from divjax.optima import Optima, optimal_q
from divjax.targets import default_target

MAX_PATH = 4000  # trajectory points kept per direction
MIN_BLOCKS = 3  # the trend test needs three block means before it can tell "still moving"
FLAGS = ("natural_gradient", "fixed_scale", "optimizer")
_COMPILED: set = set()  # compile keys (`Session.compile_key`) whose programs exist


class Session:
    r"""The state of the explorer and its advancing.

    Args:
      target: a 1-D `divjax.GaussianMixture` or ``(weights, locs, scales)``
        (default `divjax.default_target`).
      q0: the start of both fits and what `reset` returns to (a `divjax.Gaussian`;
        None: a random start, `divjax.explorer.options.random_start`).
      divergence: ``"kl"`` or ``"chi2"`` (forward and reverse side by side), or one
        divergence, e.g. ``"kl_reverse"``.
      estimator: ``"exact"`` or a Monte Carlo estimator of a fitted direction;
        ``estimators`` maps a direction to its Monte Carlo estimator.
      num_samples: ``K``, an int from 1 to 512.
      optimizer: ``"sgd"`` (with momentum) or ``"adam"`` (``b1`` = ``momentum``).
      learning_rate, momentum, decay: step ``t`` has size ``learning_rate / (1 + decay t)``.
      clip_norm: clip the update's global norm (None: off).
      parameterization, natural_gradient, fixed_scale: as `divjax.fit`.
      speed: steps per second while running (the window's timer reads it).
      seed: the PRNG seed of the Monte Carlo draws and the random starts.
      num_x: points of the density grid.
      optima: compare with `divjax.optimal_q`'s optima (False: never compute them).
    """

    def __init__(
        self, target=None, q0: Gaussian | None = None, *, divergence: str = "kl",
        estimator: str = "exact", estimators: dict | None = None, num_samples: int = 16,
        optimizer: str = "sgd", learning_rate: float = 0.05, momentum: float = 0.9,
        decay: float = 0.0, clip_norm: float | None = None, parameterization: str = "mu_log_sigma",
        natural_gradient: bool = False, fixed_scale: bool = False, speed: float = 200.0,
        seed: int = 0, num_x: int = 400, optima: bool = True,
    ):  # fmt: skip
        kind, directions = options.parse_divergence(divergence)
        exact, ests = options.parse_estimators(kind, directions, estimator, estimators)
        self.settings = Settings(
            kind=kind, directions=directions, exact=exact, estimators=ests,
            num_samples=options.check_num_samples(num_samples, ests),
            parameterization=get_parameterization(parameterization).name,
        )  # fmt: skip
        self.states = self.frame = None
        self.flags = {"natural_gradient": False, "fixed_scale": False, "optimizer": "sgd"}
        self.set_flags(
            natural_gradient=natural_gradient, fixed_scale=fixed_scale, optimizer=optimizer
        )
        self.target = options.as_mixture(default_target() if target is None else target)
        self.target_key = options.target_key(self.target)
        self.dtype = self.target.locs.dtype
        self.reseed(seed)
        self.hyper = {"learning_rate": 0.0, "momentum": 0.0, "decay": 0.0}
        self.set_hyper(learning_rate=learning_rate, momentum=momentum, decay=decay)
        self.clip_value = options.check_clip_norm(clip_norm) or 5.0
        self.clip = clip_norm is not None
        self.speed = options.check_float(speed, "speed", 0.0)
        if q0 is None:
            q0 = Gaussian(*options.random_start(self.target, kind, self.rng))
        self.q0 = (float(q0.loc), float(q0.log_scale))
        self.num_x = int(num_x)
        self.x = options.density_grid(self.target, [q0], self.num_x, self.dtype)
        self.book = OptimaBook(enabled=optima)
        self.restart(self.q0)

    # --- the fit ---------------------------------------------------------------

    @property
    def hyper_array(self) -> np.ndarray:
        """The traced values in `compute.HYPER` order (``clip_norm = inf``: off)."""
        values = dict(self.hyper, clip_norm=self.clip_value if self.clip else math.inf)
        values["natural_gradient"] = float(self.flags["natural_gradient"])
        values["fixed_scale"] = float(self.flags["fixed_scale"])
        values["adam"] = float(self.flags["optimizer"] == "adam")
        return np.array([values[name] for name in HYPER], self.dtype)

    def advance(self, num_steps: int = 0) -> compute.Frame:
        """Takes ``num_steps`` steps of every fitted direction; returns (and keeps) the `Frame`."""
        optima, has = self.book.padded(self)
        out = compute.advance(
            self.settings, self.target, self.states, self.hyper_array, np.int32(num_steps),
            self.x, optima, has, self.key,
        )  # fmt: skip
        self.states = out.states
        _COMPILED.add(self.compile_key(self.settings))
        self.frame = jax.device_get(out._replace(states=None))
        if num_steps:
            rec = np.asarray(self.frame.recorded)
            for i, d in enumerate(DIRECTIONS):
                if d in self.settings.directions:
                    points = np.asarray(self.frame.path[i], np.float64)[rec]
                    self.paths[i] = np.concatenate([self.paths[i], points])[-MAX_PATH:]
        return self.frame

    def restart(self, start, directions=DIRECTIONS) -> None:
        """Starts the fits of ``directions`` afresh at ``start = (loc, log_scale)`` (step 0)."""
        loc, log_scale = (float(v) for v in start)
        if not (math.isfinite(loc) and math.isfinite(log_scale)):
            raise ValueError(f"q's loc and log scale must be finite, got {start!r}")
        fresh = [self.states is None or d in directions for d in DIRECTIONS]
        old = [(0.0, 0.0) if f else tuple(map(float, self.q(d))) for f, d in zip(fresh, DIRECTIONS)]
        starts = [(loc, log_scale) if f else o for f, o in zip(fresh, old)]
        steps = [0 if f else int(s.step) for f, s in zip(fresh, self.states or fresh)]
        self.states = self._init(starts, steps)
        if not hasattr(self, "paths"):
            self.paths = [np.zeros((0, 2)) for _ in DIRECTIONS]
        for i, f in enumerate(fresh):
            if f:
                self.paths[i] = np.array([[loc, log_scale]])
        if all(fresh):
            self.start = (loc, log_scale)
        self.advance(0)

    def _init(self, starts, steps, settings: Settings | None = None) -> tuple:
        locs, log_scales = (np.asarray(v, self.dtype) for v in zip(*starts))
        return compute.init_states(
            settings or self.settings, self.target, locs, log_scales, steps, self.key
        )

    def reset(self) -> None:
        """Both fits back to ``q0`` (step 0, momentum zeroed)."""
        self.restart(self.q0)

    def random_restart(self) -> tuple[float, float]:
        """Both fits from a new random start (`options.random_start`); returns it."""
        start = options.random_start(self.target, self.settings.kind, self.rng)
        self.restart(start)
        self.refresh_grid()
        return start

    def set_q(self, loc: float, scale: float, direction: str | None = None) -> None:
        """Moves ``q`` of ``direction`` (None: both, one start) there and starts its fit afresh."""
        if direction is not None:
            options._checks.check_choice(direction, DIRECTIONS, "direction")
        scale = options.check_float(scale, "scale", 0.0)
        directions = DIRECTIONS if direction is None else (direction,)
        self.restart((loc, math.log(max(scale, 1e-3))), directions)

    def reseed(self, seed: int) -> None:
        """A new seed for the Monte Carlo draws and the random starts (the fits go on)."""
        self.seed = options._checks.check_int(seed, "seed", 0)
        self.key = jax.random.key(self.seed)
        self.rng = np.random.default_rng(self.seed)

    def forgive(self) -> None:
        """Clears a divergence so the fits go on from their last finite ``q`` (after a change)."""
        if self.states is None:
            return
        minus_one, zero = jnp.full((), -1, jnp.int32), jnp.zeros((), jnp.int32)
        self.states = tuple(s._replace(diverged_at=minus_one, reason=zero) for s in self.states)

    # --- what the panels read ----------------------------------------------------

    def q(self, direction: str) -> Gaussian:
        """The current ``q`` of ``direction`` (host float64 scalars)."""
        i = DIRECTIONS.index(direction)
        return Gaussian._make((np.float64(self.frame.loc[i]), np.float64(self.frame.log_scale[i])))

    def step(self, direction: str) -> int:
        """Steps the fit of ``direction`` has taken since its start."""
        return int(self.frame.step[DIRECTIONS.index(direction)])

    def value(self, direction: str) -> float:
        """The exact divergence of ``direction`` at its ``q`` (``inf`` where infinite)."""
        return float(self.frame.value[DIRECTIONS.index(direction)])

    def infinite_reason(self, direction: str) -> str | None:
        """Why ``value(direction)`` is infinite (`divjax.infinite_reason`), or None."""
        if math.isfinite(self.value(direction)):
            return None
        q = Gaussian._make(tuple(np.asarray(a, self.dtype) for a in self.q(direction)))
        return infinite_reason(self.settings.name(direction), self.target, q)

    def fit_status(self, direction: str) -> fit_status.FitStatus:
        """The fit's `divjax.status.FitStatus` (judged in the last frame)."""
        i = DIRECTIONS.index(direction)
        return fit_status.FitStatus(*(np.asarray(a)[i] for a in self.frame.status))

    def describe(self, direction: str) -> str:
        """How the fit of ``direction`` stands (`divjax.status.FitStatus.describe`)."""
        st = self.fit_status(direction)
        blocks = int(self.frame.num_blocks[DIRECTIONS.index(direction)])
        if not st.diverged and blocks < MIN_BLOCKS:
            need = MIN_BLOCKS * max(1, compute.WINDOW // fit_status.BLOCKS_PER_WINDOW)
            return f"started (judged from step {need} on)"
        text = st.describe()
        if self.book.enabled and self.book.get(self, direction) is None and not st.diverged:
            text += " (optima pending)"
        return text

    def path(self, direction: str) -> np.ndarray:
        """``(n, 2)`` ``(loc, log_scale)`` of the fit since its start (one point per recording)."""
        return self.paths[DIRECTIONS.index(direction)]

    # --- optima (see OptimaBook) ---------------------------------------------------

    def optima_wanted(self) -> dict[str, tuple]:
        """``{direction: key}`` of fitted directions whose optima are missing or stale."""
        return self.book.wanted(self)

    def optima_job(self, direction: str):
        """``(fn, args)`` computing the optima of ``direction`` (for a worker thread)."""
        return self.book.job(self, direction)

    def set_optima(self, direction: str, key: tuple, optima: Optima | None) -> None:
        self.book.put(direction, key, optima)

    def compute_optima(self) -> None:
        """Computes every missing optimum now, in this thread."""
        for d, key in self.optima_wanted().items():
            fn, args = self.optima_job(d)
            self.set_optima(d, key, fn(*args))

    def current_optima(self, direction: str) -> tuple[Optima | None, bool]:
        """``(optima, stale)``: the last optima of ``direction``, and whether they are outdated."""
        return self.book.latest(self, direction)

    # --- settings -----------------------------------------------------------------

    def check_settings(self, settings: Settings, fixed_scale: bool | None = None) -> Settings:
        """`check_settings` with this session's fixed-scale switch unless given."""
        fixed = self.flags["fixed_scale"] if fixed_scale is None else fixed_scale
        return check_settings(settings, fixed)

    def update(self, **changes) -> None:
        """Changes `Settings` fields (validated first); the fits go on from their current ``q``."""
        new = self.check_settings(dataclasses.replace(self.settings, **changes))
        if new == self.settings:
            return
        fresh = tuple(d for d in new.directions if d not in self.settings.directions)
        starts = [tuple(map(float, self.q(d))) for d in DIRECTIONS]
        self.states = self._init(starts, [int(s.step) for s in self.states], new)
        self.settings = new
        self.advance(0)
        if fresh:  # a direction switched on starts from the common start
            self.restart(self.start, fresh)

    def set_flags(self, **flags) -> None:
        """``natural_gradient``, ``fixed_scale`` (bools), ``optimizer`` (traced: no recompiling)."""
        for name, value in flags.items():
            options._checks.check_choice(name, FLAGS, "switch")
            if name == "optimizer":
                value = options.check_optimizer(value)
            elif not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if flags.get("fixed_scale"):
            self.check_settings(self.settings, fixed_scale=True)
        self.flags.update({k: v if k == "optimizer" else bool(v) for k, v in flags.items()})
        self.forgive()

    def compile_key(self, settings: Settings) -> tuple:
        """What the compiled programs for ``settings`` depend on besides the settings."""
        return (settings.compiled, self.target.num_components, str(self.dtype))

    def is_compiled(self, **changes) -> bool:
        """Whether `update` with ``changes`` runs without compiling (`warm`ed or used before)."""
        return self.compile_key(dataclasses.replace(self.settings, **changes)) in _COMPILED

    def set_hyper(self, **values) -> None:
        """Sets ``learning_rate``, ``momentum`` or ``decay`` (traced: no recompiling)."""
        bounds = {"learning_rate": (-math.inf, math.inf), "momentum": (0.0, 1.0)}
        for name, value in values.items():
            options._checks.check_choice(name, self.hyper, "hyperparameter")
            self.hyper[name] = options.check_float(value, name, *bounds.get(name, (0.0, math.inf)))
        self.forgive()

    def set_clip(self, enabled: bool | None = None, norm: float | None = None) -> None:
        """Clipping on/off and its norm (both traced)."""
        if norm is not None:
            self.clip_value = options.check_clip_norm(norm)
        if enabled is not None:
            self.clip = bool(enabled)
        self.forgive()

    def set_target(self, target) -> None:
        """Replaces the target (the same number of modes does not recompile)."""
        self.target = options.as_mixture(target)
        self.target_key = options.target_key(self.target)
        self.forgive()

    def refresh_grid(self) -> None:
        """Fits the density grid to the target and the current ``q``'s."""
        starts = [self.q(d) for d in self.settings.directions]
        self.x = options.density_grid(self.target, starts, self.num_x, self.dtype)


class OptimaBook:
    """The optima of each direction with the key they were computed for (stale when it changed)."""

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)
        self.store: dict[str, tuple] = {}
        self._padded = (0, None)  # (keys, what `padded` returned for them)

    @staticmethod
    def key(session: Session, direction: str) -> tuple:
        """What the optima of ``direction`` depend on: divergence, target, fixed scale."""
        q = session.q(direction)
        fixed = round(float(q.log_scale), 6) if session.flags["fixed_scale"] else None
        return (session.settings.name(direction), session.target_key, fixed)

    def put(self, direction: str, key: tuple, optima: Optima | None) -> None:
        self.store[direction] = (key, optima)
        self._padded = (0, None)

    def padded(self, session: Session) -> tuple:
        """``(Optima with (2, MAX_OPTIMA) leaves, (2,) has)`` for `compute.advance` (cached)."""
        if session.frame is None:  # the first frame: nothing to compare with yet
            keys = None
        else:
            keys = tuple(self.key(session, d) for d in DIRECTIONS)
        if self._padded[0] != keys:
            have = [None if keys is None else self.get(session, d) for d in DIRECTIONS]
            rows = [compute.pad_optima(o, session.dtype) for o in have]
            stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *(o for o, _ in rows))
            self._padded = (keys, (stacked, np.array([h for _, h in rows])))
        return self._padded[1]

    def wanted(self, session: Session) -> dict[str, tuple]:
        if not self.enabled:
            return {}
        keys = {d: self.key(session, d) for d in session.settings.directions}
        return {d: k for d, k in keys.items() if self.store.get(d, (None,))[0] != k}

    def job(self, session: Session, direction: str):
        key = self.key(session, direction)
        return find_optima, (key[0], session.target, key[2])

    def get(self, session: Session, direction: str) -> Optima | None:
        """The optima of ``direction`` if up to date, else None."""
        have = self.store.get(direction)
        return have[1] if have is not None and have[0] == self.key(session, direction) else None

    def latest(self, session: Session, direction: str) -> tuple[Optima | None, bool]:
        have = self.store.get(direction)
        if have is None:
            return None, True
        return have[1], have[0] != self.key(session, direction)


def check_settings(settings: Settings, fixed_scale: bool = False) -> Settings:
    """`ValueError` for combinations the fit cannot run (before anything changes)."""
    if fixed_scale and PARAMETERIZATIONS[settings.parameterization].scale_index is None:
        valid = [n for n, p in PARAMETERIZATIONS.items() if p.scale_index is not None]
        raise ValueError(
            f"a fixed sigma needs coordinates with a scale-only coordinate; "
            f"{settings.parameterization!r} has none (valid choices: {', '.join(valid)})"
        )
    if not settings.directions or not set(settings.directions) <= set(DIRECTIONS):
        raise ValueError(f"directions must be a non-empty subset of {DIRECTIONS}")
    return settings


def warm(session: Session, **changes) -> None:
    """Compiles the programs of the settings ``changes`` would give, changing nothing.

    Safe to call from a worker thread while the session runs (the window
    does, so a change of settings never freezes it).
    """
    new = session.check_settings(dataclasses.replace(session.settings, **changes))
    states = session._init([tuple(map(float, session.q(d))) for d in DIRECTIONS], [0, 0], new)
    optima = jax.tree_util.tree_map(
        lambda a: jnp.stack([a, a]), compute.pad_optima(None, session.dtype)[0]
    )
    out = compute.advance(
        new, session.target, states, session.hyper_array, np.int32(0), session.x, optima,
        np.zeros(2, bool), session.key,
    )  # fmt: skip
    jax.block_until_ready(out.value)
    _COMPILED.add(session.compile_key(new))


def find_optima(name: str, target, fixed_log_scale: float | None) -> Optima | None:
    """`divjax.optimal_q` (cached per target), or None where no minimum was verified."""
    try:
        return optimal_q(name, target, fixed_log_scale=fixed_log_scale)
    except (RuntimeError, ValueError):
        return None


__all__ = ["MAX_PATH", "OptimaBook", "Session", "check_settings", "find_optima", "warm"]
