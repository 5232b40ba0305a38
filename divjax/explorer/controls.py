r"""The explorer's widgets (`Widgets`); the mouse and keys are `divjax.explorer.pointer`'s.

Every widget callback and every mouse or key handler calls one action of
`divjax.explorer.app.Explorer` (the same methods a script or a test calls);
`Widgets.sync` then shows the session's state in the widgets, with their
callbacks blocked, so an action from anywhere keeps them in step.
"""

from __future__ import annotations

import math

from matplotlib.widgets import Button, CheckButtons, RadioButtons, Slider, TextBox

from divjax.explorer.compute import DIRECTIONS, KINDS, OPTIMIZERS
from divjax.explorer.figure import interactive
from divjax.explorer.options import MAX_SAMPLES, monte_carlo_choices

KIND_LABELS = ("KL", "χ²")
GRADIENTS = ("exact", "Monte Carlo")
COORDINATES = ("mu_log_sigma", "mu_sigma", "mu_tau", "natural", "expectation")
COORD_LABELS = ("(μ, log σ)", "(μ, σ)", "(μ, τ=1/σ²)", "natural (η₁, η₂)", "expectation (m₁, m₂)")
OPTIONS = ("natural gradient", "clip", "fixed σ")
MAX_SPEED_LOG10 = 4.0
HELP = (
    "mouse\n"
    "  fit panel: drag a black dot: a mode\n"
    "    (up/down: its weight; shift- or\n"
    "    right-drag: its width); double-click:\n"
    "    add a mode, on a dot: remove it;\n"
    "    drag a q's dot / diamond: its mean / sd\n"
    "  landscape: drag anywhere: both q's\n"
    "    start there; drag a q's marker: that q;\n"
    "    hover: the values there\n"
    "keys\n"
    "  space run/pause   → or n: one step\n"
    "  r random restart   z reset to q0\n"
    "  + / − K   ↑ / ↓ speed ×2 / ÷2"
)


class SeedBox(TextBox):
    """A ``TextBox`` that leaves the figure alone on clicks elsewhere.

    matplotlib's redraws the whole canvas (``canvas.draw()``) on every click
    outside it, typing or not: a full render per click anywhere in the window.
    """

    def stop_typing(self):
        if self.capturekeystrokes:
            super().stop_typing()


def _titled(fig, rect, title):
    ax = fig.add_axes(rect)
    ax.set_title(title, fontsize=8.5, loc="left", pad=2)
    return ax


def _radio(fig, rect, title, labels, active, fn):
    widget = RadioButtons(_titled(fig, rect, title), labels, active=active)
    for text in widget.labels:
        text.set_fontsize(8.5)
    widget.on_clicked(fn)
    return widget


class Widgets:
    """Builds the widgets on ``ex.figure.fig`` and keeps them in step with ``ex.session``."""

    def __init__(self, ex):
        self.ex = ex
        fig, s = ex.figure.fig, ex.session.settings
        self.kind = _radio(
            fig, (0.845, 0.875, 0.06, 0.06), "divergence", KIND_LABELS, KINDS.index(s.kind),
            lambda lab: ex.set_divergence(kind=KINDS[KIND_LABELS.index(lab)]),
        )  # fmt: skip
        self.directions = CheckButtons(
            _titled(fig, (0.915, 0.875, 0.075, 0.06), "directions"),
            list(DIRECTIONS), [d in s.directions for d in DIRECTIONS],
        )  # fmt: skip
        self.directions.on_clicked(ex.toggle_direction)
        self.gradient = _radio(
            fig, (0.845, 0.785, 0.145, 0.055), "gradient", GRADIENTS, 0 if s.exact else 1,
            lambda lab: ex.set_exact(lab == "exact"),
        )  # fmt: skip
        self.ax_est = {
            "forward": _titled(fig, (0.845, 0.61, 0.07, 0.14), "MC forward"),
            "reverse": _titled(fig, (0.92, 0.545, 0.07, 0.205), "MC reverse"),
        }
        self.estimators = {}
        self.build_estimators()
        self.landscape = _radio(
            fig, (0.845, 0.475, 0.07, 0.055), "landscape of", DIRECTIONS,
            DIRECTIONS.index(ex.shown), ex.show_landscape,
        )  # fmt: skip
        self.optimizer = _radio(
            fig, (0.555, 0.335, 0.055, 0.055), "optimizer", ("SGD", "Adam"),
            OPTIMIZERS.index(ex.session.flags["optimizer"]),
            lambda lab: ex.set_optimizer(lab.lower()),
        )  # fmt: skip
        self.coordinates = _radio(
            fig, (0.62, 0.27, 0.095, 0.12), "coordinates", COORD_LABELS,
            COORDINATES.index(s.parameterization),
            lambda lab: ex.set_parameterization(COORDINATES[COORD_LABELS.index(lab)]),
        )  # fmt: skip
        self.options = CheckButtons(
            _titled(fig, (0.725, 0.30, 0.105, 0.09), "options"), list(OPTIONS), self._options()
        )
        self.options.on_clicked(self._on_option)
        self._build_sliders(fig)
        self._build_buttons(fig)
        fig.text(0.845, 0.025, HELP, fontsize=7.5, va="bottom", color="0.3", linespacing=1.35)
        self.sync()
        if not interactive():  # on Agg a widget's draw_idle is a full render: leave it to draw()
            for widget in self.all():
                widget.drawon = False

    def all(self) -> list:
        """Every widget."""
        out = [self.kind, self.directions, self.gradient, self.landscape, self.optimizer]
        out += [self.coordinates, self.options, self.lr, self.momentum, self.decay]
        out += [self.clip_norm, self.k, self.speed, self.k_minus, self.k_plus, self.run]
        return out + [self.step, self.restart, self.reset, self.seed, *self.estimators.values()]

    def _build_sliders(self, fig) -> None:
        ex, h = self.ex, self.ex.session.hyper

        def slider(y, label, lo, hi, init, fn, fmt="%.3g"):
            widget = Slider(
                fig.add_axes((0.62, y, 0.15, 0.022)), label, lo, hi, valinit=init, valfmt=fmt
            )
            widget.label.set_fontsize(8.5)
            widget.valtext.set_fontsize(8.5)
            widget.on_changed(fn)
            return widget

        self.lr = slider(
            0.225,
            "step size",
            -0.1,
            0.5,
            h["learning_rate"],
            lambda v: ex.set_hyper(learning_rate=v),
        )
        self.momentum = slider(
            0.195, "momentum", 0.0, 0.99, h["momentum"], lambda v: ex.set_hyper(momentum=v), "%.2f"
        )
        self.decay = slider(
            0.165, "lr decay", 0.0, 0.01, h["decay"], lambda v: ex.set_hyper(decay=v), "%.4f"
        )
        self.clip_norm = slider(
            0.135, "clip norm", 0.1, 20.0, ex.session.clip_value, lambda v: ex.set_clip(norm=v)
        )
        self.k = slider(
            0.105, "K", 0.0, math.log2(MAX_SAMPLES), 4.0, lambda v: ex.set_num_samples(round(2**v))
        )
        self.speed = slider(
            0.075, "steps/s", 0.0, MAX_SPEED_LOG10, 2.0, lambda v: ex.set_speed(10**v)
        )
        self.k_minus = Button(fig.add_axes((0.797, 0.103, 0.016, 0.026)), "−")
        self.k_plus = Button(fig.add_axes((0.815, 0.103, 0.016, 0.026)), "+")
        self.k_minus.on_clicked(lambda _: ex.set_num_samples(ex.wanted("num_samples") - 1))
        self.k_plus.on_clicked(lambda _: ex.set_num_samples(ex.wanted("num_samples") + 1))

    def _build_buttons(self, fig) -> None:
        ex = self.ex

        def button(x, y, label, fn):
            widget = Button(fig.add_axes((x, y, 0.068, 0.036)), label)
            widget.label.set_fontsize(9)
            widget.on_clicked(fn)
            return widget

        self.run = button(0.845, 0.405, "pause" if ex.running else "run", lambda _: ex.toggle_run())
        self.step = button(0.92, 0.405, "step", lambda _: ex.step_once())
        self.restart = button(0.845, 0.362, "random start", lambda _: ex.random_restart())
        self.reset = button(0.92, 0.362, "reset", lambda _: ex.reset())
        self.seed = SeedBox(fig.add_axes((0.88, 0.318, 0.05, 0.03)), "seed ", str(ex.session.seed))
        self.seed.on_submit(self._on_seed)

    def build_estimators(self) -> None:
        """The estimator radios of the current divergence kind (rebuilt when it changes)."""
        ex, s = self.ex, self.ex.session.settings
        for i, d in enumerate(DIRECTIONS):
            old = self.estimators.get(d)
            if old is not None:
                old.disconnect_events()
            ax = self.ax_est[d]
            title = ax.get_title(loc="left")
            ax.clear()
            ax.set_title(title, fontsize=8.5, loc="left", pad=2)
            labels = monte_carlo_choices(s.kind, d)
            self.estimators[d] = RadioButtons(ax, labels, active=labels.index(s.estimators[i]))
            for text in self.estimators[d].labels:
                text.set_fontsize(8)
            self.estimators[d].drawon = interactive()
            self.estimators[d].on_clicked(lambda lab, d=d: ex.set_estimator(d, lab))
        self._kind_shown = s.kind

    def _options(self) -> list[bool]:
        s = self.ex.session
        return [s.flags["natural_gradient"], s.clip, s.flags["fixed_scale"]]

    def _on_option(self, label) -> None:
        ex, s = self.ex, self.ex.session
        if label == "natural gradient":
            ex.set_natural_gradient(not ex.wanted("natural_gradient"))
        elif label == "clip":
            ex.set_clip(enabled=not s.clip)
        else:
            ex.set_fixed_scale(not ex.wanted("fixed_scale"))

    def _on_seed(self, text) -> None:
        try:
            self.ex.set_seed(int(text))
        except ValueError:
            self.ex.figure.message(f"the seed must be an integer, got {text!r}")
            self.sync()

    def sync(self) -> None:
        """Shows the session's state (and the pending settings) in every widget."""
        ex, s = self.ex, self.ex.session
        if s.settings.kind != self._kind_shown:
            self.build_estimators()
        _radio_to(self.kind, KINDS.index(ex.wanted("kind")))
        _checks_to(self.directions, [d in ex.wanted("directions") for d in DIRECTIONS])
        _radio_to(self.gradient, 0 if ex.wanted("exact") else 1)
        for i, d in enumerate(DIRECTIONS):
            labels = monte_carlo_choices(s.settings.kind, d)
            est = ex.wanted("estimators")[i]
            if est in labels:
                _radio_to(self.estimators[d], labels.index(est))
        _radio_to(self.landscape, DIRECTIONS.index(ex.shown))
        _radio_to(self.optimizer, OPTIMIZERS.index(ex.wanted("optimizer")))
        _radio_to(self.coordinates, COORDINATES.index(ex.wanted("parameterization")))
        flags = [ex.wanted("natural_gradient"), s.clip, ex.wanted("fixed_scale")]
        _checks_to(self.options, flags)
        h = s.hyper
        _slider_to(self.lr, h["learning_rate"])
        _slider_to(self.momentum, h["momentum"])
        _slider_to(self.decay, h["decay"])
        _slider_to(self.clip_norm, s.clip_value)
        k = ex.wanted("num_samples")
        _slider_to(self.k, math.log2(k), f"{k}")
        _slider_to(self.speed, math.log10(max(s.speed, 1.0)), f"{s.speed:,.0f}")
        self.run.label.set_text("pause" if ex.running else "run")
        if self.seed.text != str(s.seed):
            with self.seed._observers.blocked():
                self.seed.set_val(str(s.seed))


def _radio_to(radio, index: int) -> None:
    if radio.index_selected != index:
        with radio._observers.blocked():
            radio.set_active(index)


def _checks_to(checks, states) -> None:
    for i, (now, want) in enumerate(zip(checks.get_status(), states)):
        if now != want:
            with checks._observers.blocked():
                checks.set_active(i)


def _slider_to(slider, value: float, text: str | None = None) -> None:
    if not math.isclose(slider.val, value, abs_tol=1e-12):
        with slider._observers.blocked():
            slider.set_val(value)
    if text is not None:
        slider.valtext.set_text(text)


__all__ = ["COORDINATES", "SeedBox", "Widgets"]
