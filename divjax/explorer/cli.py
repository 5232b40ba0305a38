r"""``divjax explore``: the explorer in a window (`run_cli`), and its flags (`add_arguments`).

`run_cli` reads the parsed arguments by attribute. The historical ones are
``weights``, ``locs``, ``scales``, ``q0`` (mean, variance), ``divergence``,
``estimator``, ``num_samples``, ``learning_rate``, ``momentum``, ``seed`` and
``steps_per_frame``; the newer ones (`NEW_FLAGS`) are optional attributes
whose default None means "not given". With ``--preset``, an argument that is
None or equal to its historical default (`LEGACY_DEFAULTS`) keeps the
preset's value; anything else overrides it.
"""

from __future__ import annotations

import argparse
import os
import sys

from divjax.families import Gaussian

LEGACY_DEFAULTS = {
    "weights": (0.3, 0.7),
    "locs": (-2.0, 3.0),
    "scales": (0.5, 1.0),
    "q0": (0.0, 5.0),
    "divergence": "kl_forward",
    "estimator": "exact",
    "num_samples": 16,
    "learning_rate": 0.05,
    "momentum": 0.9,
    "seed": 0,
    "steps_per_frame": 10,
}
NEW_FLAGS = {  # attribute: (type, help); every default is None ("not given")
    "preset": (str, "page: the seed page's settings (target, K = 64, decaying step size, ...)"),
    "speed": (float, "steps per second while running (default: 30 x --steps-per-frame)"),
    "optimizer": (str, "sgd (with momentum) or adam (default: sgd)"),
    "decay": (float, "step-size decay: step t has size lr / (1 + decay t) (default: 0)"),
    "clip_norm": (float, "clip the update's norm (default: no clipping)"),
    "parameterization": (str, "mu_log_sigma, mu_sigma, mu_tau, natural or expectation"),
}
NEW_SWITCHES = {
    "natural_gradient": "precondition by the inverse Fisher information",
    "fixed_scale": "fit the mean only (sigma fixed)",
    "random_start": "start from a random q (finite in both directions)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of `NEW_FLAGS` and `NEW_SWITCHES` (defaults None) to ``parser``."""
    for name, (kind, text) in NEW_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    for name, text in NEW_SWITCHES.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), action="store_true", default=None, help=text
        )


def _given(args, name: str, preset) -> object:
    """The argument's value, or None where it is absent (or, with a preset, a legacy default)."""
    value = getattr(args, name, None)
    if value is None or (
        preset and name in LEGACY_DEFAULTS and _same(value, LEGACY_DEFAULTS[name])
    ):
        return None
    return value


def _same(a, b) -> bool:
    if isinstance(b, tuple):
        return (
            isinstance(a, (tuple, list)) and len(a) == len(b) and all(x == y for x, y in zip(a, b))
        )
    return a == b


def options_from_args(args) -> dict:
    """`divjax.explore`'s keyword arguments from ``divjax explore``'s parsed arguments."""
    preset = getattr(args, "preset", None)
    out: dict = {"preset": preset} if preset else {}
    target = [_given(args, f, preset) for f in ("weights", "locs", "scales")]
    if any(t is not None for t in target):
        defaults = [LEGACY_DEFAULTS[f] for f in ("weights", "locs", "scales")]
        out["target"] = tuple(t if t is not None else d for t, d in zip(target, defaults))
    q0 = _given(args, "q0", preset)
    if getattr(args, "random_start", None):
        out["q0"] = None
    elif q0 is not None:
        if len(q0) != 2:
            raise ValueError("--q0 takes two numbers: mean,variance")
        out["q0"] = Gaussian.from_loc_variance(*q0)
    names = ("divergence", "estimator", "num_samples", "learning_rate", "momentum", "seed")
    for name in (
        names + tuple(n for n in NEW_FLAGS if n != "preset") + ("natural_gradient", "fixed_scale")
    ):
        value = _given(args, name, preset)
        if value is not None:
            out[name] = value
    steps = _given(args, "steps_per_frame", preset)
    if "speed" not in out and steps is not None:
        out["speed"] = 30.0 * steps  # steps per frame at about 30 frames per second
    return out


def run_cli(args) -> int:
    """``divjax explore``: opens the explorer in a window (TkAgg unless ``MPLBACKEND`` is set).

    Returns the exit code; errors are one line on stderr.
    """
    import matplotlib.pyplot as plt

    from divjax.explorer.app import explore

    if not os.environ.get("MPLBACKEND"):
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            return _fail("divjax explore opens a window: no display (DISPLAY is not set)")
        try:
            plt.switch_backend("TkAgg")
        except ImportError as err:
            return _fail(f"divjax explore needs Tk (python3-tk): {err}")
    try:
        ex = explore(**options_from_args(args))
    except ValueError as err:
        return _fail(str(err))
    plt.show()
    ex.close()
    return 0


def _fail(msg: str) -> int:
    print(f"divjax: error: {msg}", file=sys.stderr)
    return 2


__all__ = [
    "LEGACY_DEFAULTS",
    "NEW_FLAGS",
    "NEW_SWITCHES",
    "add_arguments",
    "options_from_args",
    "run_cli",
]
