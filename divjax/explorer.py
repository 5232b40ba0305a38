r"""The interactive explorer: drag the target and ``q``, watch gradient descent fit it live.

The seed page as a matplotlib figure (`explore`, ``divjax explore``): the
`divjax.plot` panels (fit, importance weights, gradient rug) with widgets for
the divergence and its direction, exact or Monte Carlo gradients, the
estimator, ``K``, the step size (negative ascends: "running away"), the
momentum, run/pause, step once, reset and the seed.

Speed. Every frame is one call of the jitted `advance`, which runs
``num_steps`` optimizer steps (`divjax.fit.make_step` in a ``fori_loop``) and
returns everything the panels draw. The target, ``q``, the step size and the
momentum are traced *arguments* (SGD with momentum is
``optax.inject_hyperparams(optax.sgd)``, its hyperparameters overwritten from
``hyper`` inside the call), as is the number of steps, so dragging or moving a
slider never recompiles. Static are only the divergence, the two estimators
and ``K``: each combination compiles once, as does each number of modes.

Mouse, on the fit panel: drag a mode's handle (black) left-right to move it,
up-down to change its weight; shift-drag (or right-drag) to change its scale.
Drag ``q``'s peak (purple) to move it and its shoulder handle to change its
width. Double-click empty space to add a mode, a mode's handle to remove it.
Space runs or pauses.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox, TransformedBbox
from matplotlib.widgets import Button, RadioButtons, Slider, TextBox

from divjax import _checks, plot
from divjax.divergences import divergence, infinite_reason
from divjax.estimators import ESTIMATORS, min_samples, stateful_surrogate, surrogate
from divjax.families import Gaussian, default_q0
from divjax.fit import REASONS, StepInfo, init_state, make_step
from divjax.optima import Optima, optimal_q
from divjax.parameterizations import mu_log_sigma
from divjax.targets import GaussianMixture, default_target

KINDS = {"KL": "kl", "χ²": "chi2"}
DIRECTIONS = ("forward", "reverse")
K_CHOICES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
AVERAGE_RATE = 0.05  # iterate average over ~20 steps: what the status is judged on
SLOW = 2e-3  # per-step drift of the average (in q's scales) below which q has settled
SETTLE_FRAMES = 15  # frames q must stay near an optimum ("converged") or settled ("stuck")
NEAR = 0.2  # `divjax.fit.classify`'s tolerance
NUM_X = 400
TEXT_INTERVAL_S = 0.2
_HANDLE_PX = 12.0


class Frame(NamedTuple):
    """What `advance` returns for the panels (grid arrays have shape ``(NUM_X,)``).

    Attributes:
      state: the `divjax.fit.FitState` after the steps.
      q: the current ``q``; ``average`` its iterate average.
      values: ``(2,)`` the exact forward and reverse divergence of the kind
        being minimized (``inf`` where a chi-square is infinite).
      aux: the `divjax.SurrogateAux` of one fresh draw at ``q`` under the
        panels' (Monte Carlo) estimator.
      grad_norm: the last step's gradient norm.
      dens_p, dens_q: normalized densities of ``p`` and ``q`` on the grid.
      log_w: ``log w`` (``2 log w`` for ``chi2_forward``) on the grid.
    """

    state: tuple
    q: Gaussian
    average: Gaussian
    values: jax.Array
    aux: tuple
    grad_norm: jax.Array
    dens_p: jax.Array
    dens_q: jax.Array
    log_w: jax.Array


def make_optimizer(learning_rate=0.05, momentum=0.9) -> optax.GradientTransformation:
    """SGD with heavy-ball momentum whose two hyperparameters live in its state (traced)."""
    return optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate, momentum=momentum)


def _pair(name: str) -> tuple[str, str]:
    kind = name.split("_")[0]
    return f"{kind}_forward", f"{kind}_reverse"


@functools.partial(jax.jit, static_argnames=("name", "estimator", "panel_estimator", "num_samples"))
def advance(target, state, hyper, num_steps, x, *, name, estimator, panel_estimator, num_samples):
    r"""Runs ``num_steps`` optimizer steps and returns the next `Frame`.

    Args:
      target: the `GaussianMixture` (traced: dragging it does not recompile).
      state: a `divjax.fit.FitState` built with `make_optimizer`.
      hyper: ``(2,)`` step size and momentum, written into the optimizer state.
      num_steps: steps to take (traced; ``0`` only redraws).
      x: ``(NUM_X,)`` the grid the densities are drawn on.
      name: the divergence minimized; ``estimator`` the gradient (``"exact"``
        or a Monte Carlo one); ``panel_estimator`` the Monte Carlo estimator
        whose draw the weights panel and rug show; ``num_samples`` ``K``.
    """
    optimizer = make_optimizer()
    hyperparams = {"learning_rate": hyper[0], "momentum": hyper[1]}
    state = state._replace(opt_state=state.opt_state._replace(hyperparams=hyperparams))
    est = stateful_surrogate(name, estimator, target, num_samples)
    q_now = mu_log_sigma.to_gaussian(state.params)
    init_key = jax.random.fold_in(state.key, 1)
    wanted = jax.eval_shape(est.init, q_now, init_key)
    if jax.tree_util.tree_structure(state.est_state) != jax.tree_util.tree_structure(wanted):
        # a stateful estimator (msc) was just picked, or left: start its state here
        state = state._replace(est_state=est.init(q_now, init_key))
    step = make_step(est, optimizer, mu_log_sigma, AVERAGE_RATE)
    zero = jnp.zeros((), x.dtype)
    state, info = jax.lax.fori_loop(
        0, num_steps, lambda _, c: step(c[0]), (state, StepInfo(zero, zero, zero))
    )
    q = mu_log_sigma.to_gaussian(state.params)
    panel_key = jax.random.fold_in(state.key, 7)  # a draw the steps never use
    _, aux = surrogate(name, panel_estimator, target, num_samples)(q, panel_key)
    values = jnp.stack([divergence(n, target, q) for n in _pair(name)])
    power = 2.0 if name == "chi2_forward" else 1.0
    return Frame(
        state=state,
        q=q,
        average=state.average,
        values=values,
        aux=aux,
        grad_norm=info.grad_norm,
        dens_p=jnp.exp(target.normalized_log_prob(x)),
        dens_q=jnp.exp(q.log_prob(x)),
        log_w=power * (target.log_prob(x) - q.log_prob(x)),
    )


def _optima(name: str, p: GaussianMixture) -> Optima:
    """`optimal_q`, with forward KL's single minimum (moment matching) in closed form."""
    if name == "kl_forward":
        q = Gaussian.from_loc_variance(p.mean(), p.variance())
        value = divergence(name, p, q)
        return Optima(jax.tree_util.tree_map(jnp.atleast_1d, q), jnp.atleast_1d(value))
    return optimal_q(name, p)


def _mixture(weights, locs, scales) -> GaussianMixture:
    return GaussianMixture(*(np.asarray(a, np.float32) for a in (weights, locs, scales)))


class Explorer:
    r"""The live figure and the fit behind it; see the module docstring.

    Args:
      target: the `GaussianMixture` (default `divjax.default_target`).
      q0: the start and reset point (default `divjax.default_q0`).
      divergence: one of `divjax.DIVERGENCES`.
      estimator: ``"exact"`` or a Monte Carlo estimator of ``divergence``.
      num_samples: ``K``; one of `K_CHOICES`.
      learning_rate, momentum: SGD with momentum (a negative rate ascends).
      seed: the PRNG seed of the Monte Carlo draws.
      steps_per_frame: optimizer steps per frame while running.
      interval_ms: the timer's pause between frames on interactive backends.
      optima: ``"background"`` (compute `optimal_q` in a thread after every
        change), ``"sync"`` (compute it before returning), or ``None``
        (never; the status then cannot tell converged from stuck).
      running: start running (the timer only fires on interactive backends;
        elsewhere call `frame` and `draw` yourself).
      blit: redraw only the changing artists of the panels each frame
        (default: where the canvas supports it); the axes, ticks, legends and
        widgets are redrawn only when they change.
    """

    def __init__(
        self,
        target: GaussianMixture | None = None,
        q0: Gaussian | None = None,
        *,
        divergence: str = "kl_forward",
        estimator: str = "exact",
        num_samples: int = 16,
        learning_rate: float = 0.05,
        momentum: float = 0.9,
        seed: int = 0,
        steps_per_frame: int = 10,
        interval_ms: int = 5,
        optima: str | None = "background",
        running: bool = True,
        blit: bool | None = None,
    ):
        _checks.check_choice(divergence, ESTIMATORS, "divergence")
        _checks.check_choice(estimator, ESTIMATORS[divergence], "estimator")
        _checks.check_choice(optima, ("background", "sync", None), "optima mode")
        if num_samples not in K_CHOICES:
            raise ValueError(f"num_samples must be one of {K_CHOICES}, got {num_samples!r}")
        self.target = _mixture(*(target if target is not None else default_target()))
        q0 = q0 if q0 is not None else default_q0()
        self.q0 = (float(q0.loc), float(q0.log_scale))
        self.name = divergence
        self.exact = estimator == "exact"
        self.mc_estimator = ESTIMATORS[divergence][1] if self.exact else estimator
        self.num_samples = int(num_samples)
        self.learning_rate, self.momentum = float(learning_rate), float(momentum)
        self.seed = int(seed)
        self.steps_per_frame = int(steps_per_frame)
        self.running = running
        self.optima_mode = optima
        self.optima: Optima | None = None
        self._optima_key = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1) if optima == "background" else None
        self._future = None
        self._drag = None
        self._settled = 0
        self._near = (None, 0)
        self._last_tick = None
        self._bg = self._bg_text = None
        self._needs_full = self._texts_dirty = True
        self._text_time = -math.inf
        self._ymax = None
        self.frames_per_s = 0.0
        self.steps_per_s = 0.0
        self.status = "running"
        self.state = self._fresh_state(self.q0)
        self.x = plot.x_grid(self.target, Gaussian(*self.q0), num=NUM_X).astype(np.float32)
        self._build_figure(self._advance(0).aux)
        canvas = self.fig.canvas
        self.blit = canvas.supports_blit if blit is None else bool(blit)
        for a in self._curves + self._texts:
            a.set_animated(self.blit)
        self._blit_box = TransformedBbox(Bbox([[0.0, 0.0], [0.675, 1.0]]), self.fig.transFigure)
        canvas.mpl_connect("draw_event", self._on_draw)
        self._request_optima(wait=optima == "sync")
        self.frame(num_steps=0)
        self._timer = None
        if _interactive():
            self._timer = canvas.new_timer(interval=interval_ms)
            self._timer.add_callback(self._on_timer)
            self._timer.start()

    # ------------------------------------------------------------------
    # The fit

    @property
    def estimator(self) -> str:
        """The estimator the steps use: ``"exact"`` or `mc_estimator`."""
        return "exact" if self.exact else self.mc_estimator

    @property
    def q(self) -> Gaussian:
        """The current ``q`` (float64 scalars on the host)."""
        return Gaussian._make(tuple(np.asarray(self.state.params, np.float64)))

    def _fresh_state(self, loc_log_scale):
        q = Gaussian._make(tuple(np.float32(v) for v in loc_log_scale))
        return init_state(q, make_optimizer(), jax.random.key(self.seed), mu_log_sigma)

    def frame(self, num_steps: int | None = None) -> Frame:
        """Advances the fit (``steps_per_frame`` steps while running) and updates the artists.

        Does not put them on screen: `draw` does.
        """
        if num_steps is None:
            num_steps = self.steps_per_frame if self.running and self._drag_kind() != "q" else 0
        now = time.perf_counter()
        if self._last_tick is not None and num_steps:
            dt = max(now - self._last_tick, 1e-6)
            self.frames_per_s += 0.1 * (1.0 / dt - self.frames_per_s)
            self.steps_per_s += 0.1 * (num_steps / dt - self.steps_per_s)
        self._last_tick = now if num_steps else None
        self._poll_optima()
        old_avg = self.state.average
        out = self.last = self._advance(num_steps)
        self._update_status(out, old_avg, num_steps)
        self._draw_frame(out)
        return out

    def _advance(self, num_steps: int) -> Frame:
        """One call of `advance`; keeps the new state, returns the frame on the host."""
        hyper = np.array([self.learning_rate, self.momentum], np.float32)
        out = advance(
            self.target,
            self.state,
            hyper,
            np.int32(num_steps),
            self.x,
            name=self.name,
            estimator=self.estimator,
            panel_estimator=self.mc_estimator,
            num_samples=self.num_samples,
        )
        self.state = out.state
        return jax.device_get(out._replace(state=out.state._replace(key=None, opt_state=None)))

    def _unsettle(self) -> None:
        self._settled, self._near = 0, (None, 0)

    def _update_status(self, out, old_avg, num_steps) -> None:
        if int(out.state.diverged_at) >= 0:
            reason = REASONS[int(out.state.reason)]
            self.status = f"diverged at step {int(out.state.diverged_at)} ({reason})"
            return
        known = self.optima is not None and self._optima_key == self._key_now()
        if num_steps:
            avg = out.average
            drift = abs(float(avg.loc) - float(old_avg.loc)) / math.exp(float(avg.log_scale))
            drift += abs(float(avg.log_scale) - float(old_avg.log_scale))
            self._settled = self._settled + 1 if drift / num_steps < SLOW else 0
            near = self._nearest(avg) if known else None
            self._near = (near, self._near[1] + 1 if near == self._near[0] else 1)
        near, frames = self._near
        if known and near is not None and near >= 0 and frames >= SETTLE_FRAMES:
            self.status = f"converged to local q* #{near}" if near else "converged to the global q*"
        elif self._settled >= SETTLE_FRAMES:
            self.status = "stuck (settled near no minimum)" if known else "settled"
        else:
            self.status = "running" if self.running else "paused"

    def _nearest(self, q) -> int:
        """The optimum the iterate average is near (`divjax.fit.classify`'s rule), or -1."""
        loc, log_scale = (np.asarray(a, np.float64) for a in self.optima.q)
        near = (np.abs(float(q.loc) - loc) < NEAR * np.exp(log_scale)) & (
            np.abs(float(q.log_scale) - log_scale) < NEAR
        )
        return int(np.argmax(near)) if near.any() else -1

    @property
    def status_text(self) -> str:
        """The status as shown: running, paused, settled, converged, stuck or diverged (and why)."""
        return self.status

    @property
    def values(self) -> dict[str, float]:
        """The exact divergence of the current kind in both directions (``inf`` where infinite)."""
        return dict(zip(_pair(self.name), map(float, self.last.values)))

    def value_text(self) -> tuple[str, list[str]]:
        """The values line (``inf`` where a chi-square is infinite) and the reasons."""
        parts, reasons = [], []
        for n, v in self.values.items():
            parts.append(f"{_PLAIN[n]} = " + ("inf" if math.isinf(v) else f"{v:.4g}"))
            if math.isinf(v):
                q = Gaussian._make(tuple(np.float32(a) for a in self.last.q))
                reasons.append(infinite_reason(n, self.target, q) or f"{_PLAIN[n]} overflows")
        return "    ".join(parts), reasons

    # ------------------------------------------------------------------
    # Controls (each also a widget callback)

    def set_divergence(self, kind: str | None = None, direction: str | None = None) -> None:
        """Switches to ``kind`` (``"kl"`` / ``"chi2"``) and/or ``direction``."""
        old_kind, old_dir = self.name.split("_")
        name = f"{kind or old_kind}_{direction or old_dir}"
        _checks.check_choice(name, ESTIMATORS, "divergence")
        if name == self.name:
            return
        self.name = name
        if self.mc_estimator not in ESTIMATORS[name]:
            self.mc_estimator = ESTIMATORS[name][1]
        self._set_radio(self.radio_kind, list(KINDS.values()).index(name.split("_")[0]))
        self._set_radio(self.radio_dir, DIRECTIONS.index(name.split("_")[1]))
        self._build_estimator_radio()
        self._label_panels()
        self._changed()
        self._request_optima()

    def set_exact(self, exact: bool) -> None:
        """Exact gradients (``True``) or the Monte Carlo `mc_estimator`."""
        self.exact = bool(exact)
        self._set_radio(self.radio_grad, 0 if self.exact else 1)
        self._changed()

    def set_estimator(self, estimator: str) -> None:
        """Picks the Monte Carlo estimator (one of ``ESTIMATORS[name]``) and switches to it."""
        valid = ESTIMATORS[self.name][1:]
        _checks.check_choice(estimator, valid, f"Monte Carlo estimator of {self.name}")
        self.mc_estimator = estimator
        self._set_radio(self.radio_est, valid.index(estimator))
        if self.num_samples < min_samples(estimator):
            self.num_samples = min_samples(estimator)
            self._set_slider(self.slider_k, self.num_samples)
        self.set_exact(False)

    def set_num_samples(self, k) -> None:
        """``K``, one of `K_CHOICES` (at least `min_samples` of the estimator)."""
        k = int(k)
        if k not in K_CHOICES:
            raise ValueError(f"K must be one of {K_CHOICES}, got {k}")
        k = max(k, min_samples(self.mc_estimator))
        self.num_samples = k
        self._set_slider(self.slider_k, k)
        self._changed()

    def set_learning_rate(self, learning_rate: float) -> None:
        """The step size (negative: gradient ascent, "running away")."""
        self.learning_rate = float(learning_rate)
        self._set_slider(self.slider_lr, self.learning_rate)
        self._forgive()

    def set_momentum(self, momentum: float) -> None:
        self.momentum = float(momentum)
        self._set_slider(self.slider_mom, self.momentum)
        self._forgive()

    def set_seed(self, seed) -> None:
        """Re-seeds the Monte Carlo draws (also what `reset` starts from)."""
        self.seed = int(seed)
        self.state = self.state._replace(key=jax.random.key(self.seed))
        if self.box_seed.text != str(self.seed):
            with self.box_seed._observers.blocked():
                self.box_seed.set_val(str(self.seed))

    def toggle_run(self, *_) -> None:
        """Run / pause."""
        self.running = not self.running
        self.btn_run.label.set_text("pause" if self.running else "run")
        self._last_tick = None
        self._needs_full = True
        self.draw()

    def step_once(self, *_) -> Frame:
        """One optimizer step, drawn."""
        out = self.frame(num_steps=1)
        self.draw()
        return out

    def reset(self, *_) -> None:
        """``q`` back to ``q0``, momentum and step count zeroed, the key re-seeded."""
        self.state = self._fresh_state(self.q0)
        self._refresh_view()
        self._changed()

    def set_q(self, loc: float, scale: float) -> None:
        """Moves ``q`` (what dragging it does): momentum zeroed, a divergence forgiven."""
        state = self._fresh_state((loc, math.log(max(scale, 1e-3))))
        self.state = state._replace(key=self.state.key, step=self.state.step)
        self._unsettle()

    def set_target(self, target: GaussianMixture) -> None:
        """Replaces the target (the same number of modes does not recompile)."""
        self.target = _mixture(*target)
        self._forgive()
        self._unsettle()

    def add_mode(self, loc: float, scale: float | None = None, weight: float | None = None) -> None:
        """Adds a component (default: the median scale, the mean weight)."""
        w, m, s = (np.asarray(a, np.float64) for a in self.target)
        scale = float(np.median(s)) if scale is None else scale
        weight = float(np.mean(w)) if weight is None else weight
        self.set_target(_mixture(np.append(w, weight), np.append(m, loc), np.append(s, scale)))
        self._target_changed()

    def remove_mode(self, index: int) -> None:
        """Removes component ``index`` (never the last one)."""
        if self.target.num_components > 1:
            self.set_target(_mixture(*(np.delete(np.asarray(a), index) for a in self.target)))
            self._target_changed()

    def _target_changed(self) -> None:
        self._refresh_view()
        self._request_optima()
        self._changed()

    def _forgive(self) -> None:
        """Clears a divergence (after a change of settings the fit may go on from its last q)."""
        if int(self.state.diverged_at) >= 0:
            minus_one, zero = np.full((), -1, np.int32), np.zeros((), np.int32)
            self.state = self.state._replace(diverged_at=minus_one, reason=zero)

    def _changed(self) -> None:
        """After a change of settings: forgive a divergence, redraw now without stepping."""
        self._forgive()
        self._unsettle()
        self._texts_dirty = True
        self.frame(num_steps=0)
        self.draw()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        plt.close(self.fig)

    # ------------------------------------------------------------------
    # Optima (host-side and slow: computed after a change, in a thread)

    def _key_now(self):
        return (self.name, tuple(np.asarray(self.target, np.float32).ravel().tolist()))

    def _request_optima(self, wait: bool = False) -> None:
        if self.optima_mode is None or self._key_now() == self._optima_key:
            return
        key, name, target = self._key_now(), self.name, self.target
        if self._pool is None or wait:
            self._set_optima(key, _optima(name, target))
        else:
            self._future = (key, self._pool.submit(_optima, name, target))

    def wait_for_optima(self, timeout: float | None = None) -> Optima | None:
        """Blocks until the pending `optimal_q` is done (for tests and scripts)."""
        if self._future is not None:
            concurrent.futures.wait([self._future[1]], timeout)
        self._poll_optima()
        return self.optima

    def _poll_optima(self) -> None:
        if self._future is None or not self._future[1].done():
            return
        key, fut = self._future
        self._future = None
        try:
            self._set_optima(key, fut.result())
        except RuntimeError:  # no start converged to a verified minimum: draw none
            self._set_optima(key, None)

    def _set_optima(self, key, optima) -> None:
        self.optima, self._optima_key = optima, key
        n = 0 if optima is None else min(int(optima.value.shape[0]), len(self._opt_lines))
        for i, line in enumerate(self._opt_lines):
            if i < n:
                loc, scale = float(optima.q.loc[i]), float(optima.q.scale[i])
                z = (self.x - loc) / scale
                line.set_data(self.x, np.exp(-0.5 * z**2) / (scale * math.sqrt(2 * math.pi)))
            line.set_visible(i < n)

    # ------------------------------------------------------------------
    # Figure

    def _build_figure(self, aux) -> None:
        fig = self.fig = plt.figure(figsize=(12.5, 7.6))
        fig._divjax_explorer = self  # the figure keeps its explorer (and timer) alive
        self.ax_fit = fig.add_axes((0.055, 0.47, 0.60, 0.38))
        self.ax_w = fig.add_axes((0.055, 0.20, 0.60, 0.21), sharex=self.ax_fit)
        self.ax_rug = fig.add_axes((0.055, 0.06, 0.60, 0.09), sharex=self.ax_fit)
        q = Gaussian(*self.q0)
        none = Optima(Gaussian(np.zeros(0, np.float32), np.zeros(0, np.float32)), np.zeros(0))
        plot.fit_panel(self.target, q, self.name, optima=none, x=self.x, ax=self.ax_fit)
        plot.weights_panel(self.target, q, aux, self.name, x=self.x, ax=self.ax_w)
        plot.rug(aux, x=self.x, ax=self.ax_rug)
        self._take_over_artists()
        self._build_controls()
        self._label_panels()
        self._refresh_view()
        fig.canvas.mpl_connect("button_press_event", self._on_press)
        fig.canvas.mpl_connect("motion_notify_event", self._on_motion)
        fig.canvas.mpl_connect("button_release_event", self._on_release)
        fig.canvas.mpl_connect("key_press_event", self._on_key)

    def _take_over_artists(self) -> None:
        """Keeps what `divjax.plot` drew, swapping in artists that are updated in place."""
        ax, w, r = self.ax_fit, self.ax_w, self.ax_rug
        lines = {ln.get_label(): ln for ln in ax.lines}
        self.line_p = lines[r"target $p(z)$"]
        self.line_q = lines[r"fitted $q_\phi$"]
        for c in ax.collections[:] + w.collections[:] + r.collections[:]:
            c.remove()
        self.fill_p = ax.fill_between(self.x, 0 * self.x, color=plot.TARGET, alpha=0.12, lw=0)
        self._opt_lines = [
            ax.plot([], [], ls="--" if i == 0 else ":", color=plot.OPTIMUM, lw=1.6)[0]
            for i in range(6)
        ]
        self.handles_p = ax.plot([], [], "o", ms=8, color=plot.TARGET, mec="w", zorder=6)[0]
        self.handles_q = ax.plot([], [], "o", ms=8, color=plot.PURPLE, mec="w", zorder=7)[0]
        self.handle_w = ax.plot([], [], "D", ms=6, color=plot.PURPLE, mec="w", zorder=7)[0]
        proxies = [Line2D([], [], ls=ls, color=plot.OPTIMUM, lw=1.6) for ls in ("--", ":")]
        ax.legend(
            handles=[self.line_p, self.line_q, *proxies],
            labels=[r"target $p(z)$", r"fitted $q_\phi$", "$q^*$ global", "$q^*$ local"],
            fontsize=8,
            loc="upper left",
            frameon=False,
        )
        self.text_values = ax.text(
            0.99,
            0.97,
            "",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=9,
            family="monospace",
        )
        self.line_w = w.lines[0]
        self.stems = w.add_collection(LineCollection([], color=plot.TARGET, lw=0.8, alpha=0.6))
        self.dots = w.scatter([], [], s=14, color=plot.TARGET, zorder=3)
        self.text_ess = w.text(
            1.0, 1.03, "", transform=w.transAxes, ha="right", va="bottom", fontsize=9.5
        )
        self.rug_lines = r.add_collection(LineCollection([], lw=1.5))
        r.set_title(
            "rug: blue = positive gradient contribution, red = negative (rows: d/dμ, d/dlog σ)",
            fontsize=9,
        )
        r.legend(
            handles=[Line2D([], [], color=plot.POSITIVE), Line2D([], [], color=plot.NEGATIVE)],
            labels=["positive", "negative"],
            fontsize=7,
            loc="upper right",
            frameon=False,
            ncols=2,
            borderaxespad=0.1,
        )
        for a in (ax, w):
            a.tick_params(labelbottom=False)
            a.set_xlabel("")

    def _label_panels(self) -> None:
        """Titles and labels that depend on the divergence."""
        direction = self.name.split("_")[1]
        self.ax_fit.set_title(
            f"minimize {plot.LABELS[self.name]} ({plot._SEEKING[direction]})", fontsize=10
        )
        w2 = self.name == "chi2_forward"
        symbol = r"$w^2 = (\tilde p/q_\phi)^2$" if w2 else r"$w = \tilde p/q_\phi$"
        self.ax_w.set_ylabel(symbol)
        self.ax_w.set_title("")  # `plot.weights_panel`'s title; the ESS is live in `text_ess`
        self.ax_w.set_title("importance weights of one Monte Carlo draw", fontsize=9.5, loc="left")
        self.ax_w.legend(
            handles=[self.line_w], labels=[symbol], fontsize=8, loc="upper left", frameon=False
        )
        self._needs_full = True

    @property
    def _curves(self) -> list:
        """The artists that change every frame (blitted over a cached background)."""
        return [
            self.fill_p,
            self.line_p,
            self.line_q,
            *self._opt_lines,
            self.handles_p,
            self.handles_q,
            self.handle_w,
            self.line_w,
            self.stems,
            self.dots,
            self.rug_lines,
        ]

    @property
    def _texts(self) -> list:
        """The texts that change (redrawn every `TEXT_INTERVAL_S`, or at once on a change)."""
        return [
            self.text_values,
            self.text_ess,
            self.text_status,
            self.text_speed,
            self.text_phi,
            self.text_reason,
        ]

    def _build_controls(self) -> None:
        fig = self.fig
        self.text_status = fig.text(0.055, 0.955, "", fontsize=11, weight="bold")
        self.text_speed = fig.text(0.655, 0.955, "", fontsize=10, ha="right", family="monospace")
        self.text_phi = fig.text(0.055, 0.925, "", fontsize=9.5, color=plot.PURPLE)
        self.text_reason = fig.text(0.055, 0.9, "", fontsize=8.5, color=plot.NEGATIVE)

        def radio(rect, title, labels, active, fn):
            ax = fig.add_axes(rect)
            ax.set_title(title, fontsize=9, loc="left")
            widget = RadioButtons(ax, labels, active=active)
            widget.on_clicked(fn)
            return widget

        kind, direction = self.name.split("_")
        self.radio_kind = radio(
            (0.70, 0.80, 0.12, 0.10),
            "divergence",
            list(KINDS),
            list(KINDS.values()).index(kind),
            lambda lab: self.set_divergence(kind=KINDS[lab]),
        )
        self.radio_dir = radio(
            (0.85, 0.80, 0.12, 0.10),
            "direction",
            list(DIRECTIONS),
            DIRECTIONS.index(direction),
            lambda lab: self.set_divergence(direction=lab),
        )
        self.radio_grad = radio(
            (0.70, 0.64, 0.12, 0.10),
            "gradient",
            ["exact", "Monte Carlo"],
            0 if self.exact else 1,
            lambda lab: self.set_exact(lab == "exact"),
        )
        self.ax_est = fig.add_axes((0.85, 0.60, 0.12, 0.14))
        self.radio_est = None
        self._build_estimator_radio()

        def slider(y, label, lo, hi, init, fn, **kw):
            widget = Slider(fig.add_axes((0.76, y, 0.18, 0.03)), label, lo, hi, valinit=init, **kw)
            widget.on_changed(fn)
            return widget

        self.slider_k = slider(
            0.53,
            "K",
            1,
            256,
            self.num_samples,
            self.set_num_samples,
            valstep=list(K_CHOICES),
            valfmt="%d",
        )
        self.slider_lr = slider(
            0.48, "step size", -0.1, 0.5, self.learning_rate, self.set_learning_rate, valfmt="%.3f"
        )
        self.slider_mom = slider(
            0.43, "momentum", 0.0, 0.99, self.momentum, self.set_momentum, valfmt="%.2f"
        )
        self.box_seed = TextBox(fig.add_axes((0.76, 0.37, 0.08, 0.035)), "seed ", str(self.seed))
        self.box_seed.on_submit(self._on_seed)

        def button(x, label, fn):
            widget = Button(fig.add_axes((x, 0.29, 0.085, 0.05)), label)
            widget.on_clicked(fn)
            return widget

        self.btn_run = button(0.70, "pause" if self.running else "run", self.toggle_run)
        self.btn_step = button(0.79, "step", self.step_once)
        self.btn_reset = button(0.88, "reset", self.reset)
        fig.text(0.70, 0.06, _HELP, fontsize=8, va="bottom", color="0.3", linespacing=1.4)

    def _build_estimator_radio(self) -> None:
        """The estimator choices valid for the current divergence (rebuilt when it changes)."""
        if self.radio_est is not None:
            self.radio_est.disconnect_events()
        self.ax_est.clear()
        self.ax_est.set_title("Monte Carlo estimator", fontsize=9, loc="left")
        labels = list(ESTIMATORS[self.name][1:])
        self.radio_est = RadioButtons(self.ax_est, labels, active=labels.index(self.mc_estimator))
        self.radio_est.on_clicked(self.set_estimator)
        self._needs_full = True

    @staticmethod
    def _set_radio(radio, index: int) -> None:
        if radio.index_selected != index:
            with radio._observers.blocked():
                radio.set_active(index)

    @staticmethod
    def _set_slider(slider, value) -> None:
        if slider.val != value:
            with slider._observers.blocked():
                slider.set_val(value)

    def _on_seed(self, text) -> None:
        try:
            self.set_seed(int(text))
        except ValueError:
            self.set_seed(self.seed)

    def _refresh_view(self) -> None:
        """Fits the window to the target and ``q`` (the grid keeps its length: no recompile)."""
        self.x = plot.x_grid(self.target, self.q, num=NUM_X).astype(np.float32)
        self.ax_fit.set_xlim(self.x[0], self.x[-1])
        if self.optima is not None:
            self._set_optima(self._optima_key, self.optima)
        self._ymax = None
        self._needs_full = True

    # ------------------------------------------------------------------
    # Drawing

    def draw(self) -> None:
        """Puts the current frame on screen.

        With blitting: the cached background is restored and only the curves,
        samples and handles are drawn on it; the texts (slow to render) are
        baked into that background at most every `TEXT_INTERVAL_S`. A full
        draw (``canvas.draw_idle``; ``canvas.draw`` on non-interactive
        backends) happens when axes limits, labels or widgets changed.
        """
        canvas = self.fig.canvas
        if not (self.blit and self._bg is not None and not self._needs_full):
            canvas.draw_idle() if _interactive() else canvas.draw()
            return
        now = time.perf_counter()
        if now - self._text_time > TEXT_INTERVAL_S or self._texts_dirty:
            canvas.restore_region(self._bg)
            self._bake_texts(canvas.get_renderer(), now)
        canvas.restore_region(self._bg_text)
        for artist in self._curves:
            self.fig.draw_artist(artist)
        canvas.blit(self._blit_box)

    def _bake_texts(self, renderer, now) -> None:
        for artist in self._texts:
            artist.draw(renderer)
        self._bg_text = self.fig.canvas.copy_from_bbox(self._blit_box)
        self._text_time, self._texts_dirty = now, False

    def _on_draw(self, event) -> None:
        """After a full draw: keep the static background, then draw the animated artists on it."""
        if not self.blit:
            return
        if self.fig.canvas.is_saving():  # matplotlib draws animated artists of axes itself
            for artist in self._texts:
                if artist.axes is None:
                    artist.draw(event.renderer)
            return
        self._bg = self.fig.canvas.copy_from_bbox(self._blit_box)
        self._needs_full = False
        self._bake_texts(event.renderer, time.perf_counter())
        for artist in self._curves:
            artist.draw(event.renderer)

    def _draw_frame(self, out) -> None:
        x, dens_p = self.x, out.dens_p
        self.line_p.set_data(x, dens_p)
        self.fill_p.set_verts([np.column_stack([np.r_[x[0], x, x[-1]], np.r_[0, dens_p, 0]])])
        self.line_q.set_data(x, out.dens_q)
        m = np.asarray(self.target.locs, np.float64)
        self.handles_p.set_data(m, np.exp(_np_log_prob(self.target, m)))
        loc, scale = float(out.q.loc), math.exp(float(out.q.log_scale))
        peak = 1.0 / (scale * math.sqrt(2 * math.pi))
        self.handles_q.set_data([loc], [peak])
        self.handle_w.set_data([loc + scale], [peak * math.exp(-0.5)])
        pmax = float(np.max(dens_p))
        top = 1.1 * max(pmax, min(peak, 3.0 * pmax))
        # Grow with headroom, shrink only far below: few full redraws under Monte Carlo noise.
        if self._ymax is None or not 0.35 * self._ymax < top <= self._ymax:
            self._ymax = max(top, min(1.3 * top, 3.3 * pmax))
            self.ax_fit.set_ylim(0, self._ymax)
            self._needs_full = True
        stale = self._optima_key != self._key_now()
        for line in self._opt_lines:
            line.set_alpha(0.3 if stale else 1.0)
        values, reasons = self.value_text()
        self.text_values.set_text(values)
        self.text_reason.set_text("   ".join(reasons))
        self._draw_weights(out)
        self._draw_rug(out.aux)
        if self.text_status.get_text() != self.status:
            self._texts_dirty = True
        self.text_status.set_text(self.status)
        self.text_status.set_color(_STATUS_COLORS.get(self.status.split()[0], "k"))
        self.text_speed.set_text(
            f"{self.steps_per_s:8,.0f} steps/s  {self.frames_per_s:5.1f} "
            f"frames/s  step {int(out.state.step)}"
        )
        est = "exact gradient" if self.exact else f"{self.mc_estimator}, K = {self.num_samples}"
        self.text_phi.set_text(
            f"q: mean {loc:.3f}, variance {scale**2:.3f}   |   {est}   |   "
            f"step size {self.learning_rate:.3g}, momentum {self.momentum:.2f}"
        )

    def _draw_weights(self, out) -> None:
        aux, w2 = out.aux, self.name == "chi2_forward"
        cap = 80.0  # inside float32's range in log space
        log_w_curve = np.clip(out.log_w.astype(np.float64), -cap, cap)
        log_w = np.clip((2.0 if w2 else 1.0) * aux.log_weights.astype(np.float64), -cap, cap)
        in_q = out.dens_q > np.max(out.dens_q) * math.exp(-8.0)
        shown = np.concatenate([log_w[np.isfinite(log_w)], log_w_curve[in_q]])
        hi = float(np.max(shown)) + 1.0 if shown.size else 1.0
        lo = float(np.min(shown)) - 1.0 if shown.size else -1.0
        # Limits change (a full redraw) only when the weights leave them by a margin.
        cur_lo, cur_hi = np.log(self.ax_w.get_ylim())
        if hi > cur_hi or hi < cur_hi - 10.0 or (lo < cur_lo and cur_hi - cur_lo < 34.0):
            self.ax_w.set_ylim(math.exp(max(lo, hi - 32.0) - 3.0), math.exp(hi + 3.0))
            self._needs_full = True
        y0, y1 = self.ax_w.get_ylim()
        self.line_w.set_data(self.x, np.exp(log_w_curve))
        xs = aux.samples.astype(np.float64)
        ws = np.clip(np.exp(log_w), y0, y1)
        self.stems.set_segments(
            np.stack(
                [np.column_stack([xs, np.full_like(xs, y0)]), np.column_stack([xs, ws])], axis=1
            )
        )
        self.dots.set_offsets(np.column_stack([xs, ws]))
        ess = float(aux.ess_sq if w2 else aux.ess)
        self.text_ess.set_text(
            f"{self.mc_estimator}, K = {self.num_samples}: "
            f"ESS{' of w²' if w2 else ''} = {ess:.2f} / {self.num_samples}"
        )

    def _draw_rug(self, aux) -> None:
        xs = aux.samples.astype(np.float64)
        segs, colors = [], []
        for y, c in ((1.0, aux.contributions.loc), (0.0, aux.contributions.log_scale)):
            c = np.asarray(c, np.float64)
            mag = np.where(np.isfinite(c), np.abs(c), np.inf)
            fin = mag[np.isfinite(mag)]
            top = np.max(fin) if fin.size and np.max(fin) > 0 else 1.0
            h = (0.2 + 0.6 * np.minimum(mag / top, 1.0)) / 2
            segs.append(np.stack([np.column_stack([xs, y - h]), np.column_stack([xs, y + h])], 1))
            colors += [plot.POSITIVE if v > 0 else plot.NEGATIVE if v < 0 else "0.6" for v in c]
        self.rug_lines.set_segments(np.concatenate(segs))
        self.rug_lines.set_color(colors)

    # ------------------------------------------------------------------
    # Mouse, keys and timer

    def _drag_kind(self):
        return None if self._drag is None else ("q" if self._drag[0].startswith("q") else "p")

    def _pick(self, event):
        """The handle under the mouse: ``("q_loc",)``, ``("q_width",)``, ``("mode", k)`` or None."""
        best, best_d = None, _HANDLE_PX
        for tag, artist in (
            ("q_loc", self.handles_q),
            ("q_width", self.handle_w),
            ("mode", self.handles_p),
        ):
            xy = np.column_stack(artist.get_data())
            if not len(xy):
                continue
            d = np.hypot(*(self.ax_fit.transData.transform(xy) - (event.x, event.y)).T)
            i = int(np.argmin(d))
            if d[i] < best_d:
                best, best_d = (tag, i), d[i]
        return best

    def _on_press(self, event) -> None:
        if event.inaxes is not self.ax_fit or event.button not in (1, 3):
            return
        hit = self._pick(event)
        x, y = self.ax_fit.transData.inverted().transform((event.x, event.y))
        if event.dblclick:
            if hit is not None and hit[0] == "mode":
                self.remove_mode(hit[1])
            elif hit is None:
                self.add_mode(float(x))
            return
        if hit is None:
            return
        alt = event.button == 3 or "shift" in (event.key or "")
        kind = {
            "q_loc": "q_width" if alt else "q_loc",
            "q_width": "q_width",
            "mode": "mode_scale" if alt else "mode",
        }[hit[0]]
        w, m, s = (np.asarray(a, np.float64) for a in self.target)
        q = self.q
        self._drag = (kind, hit[1], (x, y, w, m, s, float(q.loc), float(q.scale)))

    def _on_motion(self, event) -> None:
        if self._drag is None:
            return
        kind, k, (x0, y0, w0, m0, s0, loc0, scale0) = self._drag
        x, y = self.ax_fit.transData.inverted().transform((event.x, event.y))
        if kind == "q_loc":
            self.set_q(loc0 + (x - x0), scale0)
        elif kind == "q_width":
            self.set_q(loc0, max(abs(x - loc0), 0.02))
        else:
            w, m, s = w0.copy(), m0.copy(), s0.copy()
            if kind == "mode":
                m[k] = m0[k] + (x - x0)
                w[k] = w0[k] * min(max(y / max(y0, 1e-9), 0.02), 50.0)
            else:
                s[k] = max(s0[k] + (x - x0), 0.05)
            self.set_target(_mixture(w, m, s))
        if not self.running or kind.startswith("q"):
            self.frame(num_steps=0)
            self.draw()

    def _on_release(self, event) -> None:
        if self._drag is None:
            return
        kind, self._drag = self._drag[0], None
        if not kind.startswith("q"):
            self._request_optima()
        self._changed()

    def _on_key(self, event) -> None:
        if event.key == " ":
            self.toggle_run()

    def _on_timer(self) -> None:
        if self.running or self._future is not None:
            self.frame()
            self.draw()


_PLAIN = {
    "kl_forward": "KL(p||q)",
    "kl_reverse": "KL(q||p)",
    "chi2_forward": "chi2(p||q)",
    "chi2_reverse": "chi2(q||p)",
}

_STATUS_COLORS = {
    "running": "#1B9E77",
    "converged": "#1B9E77",
    "diverged": "#D95F02",
    "stuck": "#B8860B",
    "settled": "#555555",
    "paused": "#555555",
}

_HELP = (
    "mouse, on the top panel:\n"
    "  drag a black handle: move a mode (up/down: its weight)\n"
    "  shift- or right-drag it: its scale\n"
    "  drag the purple dot: move q; the diamond: q's width\n"
    "  double-click: add a mode; on a handle: remove it\n"
    "  space: run / pause"
)


def _np_log_prob(p: GaussianMixture, x) -> np.ndarray:
    """``log p(x)`` of the normalized mixture in numpy (the handles' heights; no dispatch)."""
    w, m, s = (np.asarray(a, np.float64) for a in p)
    z = (np.asarray(x, np.float64)[:, None] - m) / s
    comp = np.log(w / w.sum()) - 0.5 * z**2 - np.log(s) - 0.5 * math.log(2 * math.pi)
    top = comp.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(comp - top).sum(axis=1, keepdims=True)))[:, 0]


_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "cairo", "pgf", "template"}


def _interactive() -> bool:
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE


def explore(target: GaussianMixture | None = None, q0: Gaussian | None = None, **options):
    """Opens the explorer (see `Explorer` for ``options``) and returns it.

    In Jupyter use the ipympl backend (``%matplotlib widget``). On an
    interactive backend the figure is shown without blocking; scripts then call
    ``plt.show()``. On Agg nothing is shown: drive it with ``frame()``.
    """
    ex = Explorer(target, q0, **options)
    if _interactive():
        plt.show(block=False)
    return ex


def run_cli(args) -> int:
    """``divjax explore``: opens the explorer in a window (TkAgg unless ``MPLBACKEND`` is set).

    ``args`` has ``weights``, ``locs``, ``scales``, ``q0`` (mean, variance),
    ``divergence``, ``estimator``, ``num_samples``, ``learning_rate``,
    ``momentum``, ``seed`` and ``steps_per_frame``. Returns the exit code;
    errors are one line on stderr.
    """
    import os
    import sys

    def fail(msg: str) -> int:
        print(f"divjax: error: {msg}", file=sys.stderr)
        return 2

    if not os.environ.get("MPLBACKEND"):
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            return fail("divjax explore opens a window: no display (DISPLAY is not set)")
        try:
            plt.switch_backend("TkAgg")
        except ImportError as err:
            return fail(f"divjax explore needs Tk (python3-tk): {err}")
    try:
        target = GaussianMixture(args.weights, args.locs, args.scales)
        if len(args.q0) != 2:
            raise ValueError("--q0 takes two numbers: mean,variance")
        ex = explore(
            target,
            Gaussian.from_loc_variance(*args.q0),
            divergence=args.divergence,
            estimator=args.estimator,
            num_samples=args.num_samples,
            learning_rate=args.learning_rate,
            momentum=args.momentum,
            seed=args.seed,
            steps_per_frame=args.steps_per_frame,
        )
    except ValueError as err:
        return fail(str(err))
    plt.show()
    ex.close()
    return 0


__all__ = ["Explorer", "Frame", "advance", "explore", "make_optimizer", "run_cli"]
