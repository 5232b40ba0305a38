"""The ``divjax`` command line: ``demo`` (the main job), ``compare``, ``explore`` and ``reproduce``.

``demo`` and ``compare`` run `divjax.demo.run_demo` (one compiled sweep per
divergence, `divjax.grad_stats` at ``q0``, a table as CSV and JSON, figures);
``explore`` opens the interactive explorer. This module only parses and
dispatches.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence

DEMO = dict(
    weights=(0.3, 0.7),
    locs=(-2.0, 3.0),
    scales=(0.5, 1.0),
    num_samples=(1, 4, 16, 64, 256),
    seeds=256,
    steps=2000,
)
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump or traceback
        self.exit(2, f"divjax: error: {message}\n")


def cache_dir() -> pathlib.Path:
    """Where the persistent compilation cache lives: ``$XDG_CACHE_HOME/divjax/jax`` (or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "divjax" / "jax"


def enable_cache(path: pathlib.Path) -> None:
    """Turns on jax's persistent compilation cache at ``path`` (every program, however quick)."""
    import jax

    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _target_args(parser, *, required: bool) -> None:
    """The target and start flags shared by ``compare`` and ``explore`` (space-separated lists)."""
    for key, what in (
        ("weights", "mixture weights, e.g. --weights 0.3 0.7 (need not sum to 1)"),
        ("locs", "component means, e.g. --locs -2 3"),
        ("scales", "component standard deviations, e.g. --scales 0.5 1"),
    ):
        default = None if required else DEMO[key]
        help_ = what if required else f"{what} (default: {' '.join(f'{v:g}' for v in DEMO[key])})"
        parser.add_argument(
            f"--{key}", type=float, nargs="+", default=default, required=required, help=help_
        )
    parser.add_argument(
        "--q0", type=float, nargs=2, default=(0.0, 5.0), metavar=("MEAN", "VAR"),
        help="start mean and variance (default: 0 5)",
    )  # fmt: skip


def _step_args(parser) -> None:
    parser.add_argument(
        "--learning-rate", type=float, default=0.05, help="step size (default: 0.05; negative ascends)"
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="momentum (default: 0.9)")


def _run_args(p, *, demo: bool) -> None:
    p.add_argument("--out", default="divjax_out", help="output folder (default: divjax_out)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    p.add_argument("--float64", action="store_true", help="compute in float64 (default: float32)")
    p.add_argument("--no-figures", action="store_true", help="write tables only")
    p.add_argument(
        "--no-cache", action="store_true",
        help=f"do not use the persistent compilation cache (default location: {cache_dir()})",
    )  # fmt: skip
    p.add_argument(
        "--panel-samples", type=int, default=32,
        help="K of the one draw the weights and rug figures show (default: 32)",
    )  # fmt: skip
    p.add_argument(
        "--quick", action="store_true",
        help="tiny sizes (K 1 4 16; 16 seeds; 200 steps) for a smoke run"
        if demo else "same as --seeds 16 --steps 200",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from divjax import __version__

    parser = _Parser(prog="divjax", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"divjax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="the default scenario: every divergence x estimator x K, 256 seeds, 2000 steps",
        description="p = 0.3 N(-2, 0.5^2) + 0.7 N(3, 1), q0 = N(0, 5); every divergence x every "
        "estimator (exact included) x K in {1,4,16,64,256} x 256 seeds x 2000 steps, SGD with "
        "momentum; one compiled sweep per divergence.",
    )
    _run_args(demo, demo=True)
    cmp = sub.add_parser("compare", help="the same table for your own target and choices")
    _target_args(cmp, required=True)
    cmp.add_argument("--divergences", nargs="+", default=None, help="default: the four KL/chi2")
    cmp.add_argument("--estimators", nargs="+", default=None, help="default: all valid ones")
    cmp.add_argument(
        "--num-samples", type=int, nargs="+", default=list(DEMO["num_samples"]),
        help="K values (default: 1 4 16 64 256)",
    )  # fmt: skip
    cmp.add_argument("--seeds", type=int, default=64, help="fits per configuration (default: 64)")
    cmp.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: 1000)")
    _step_args(cmp)
    cmp.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="default: sgd")
    cmp.add_argument("--grad-draws", type=int, default=2000, help="draws for the SNR at q0")
    _run_args(cmp, demo=False)
    exp = sub.add_parser(
        "explore",
        help="the interactive explorer: drag p and q, watch the fit live (opens a window)",
        description="Opens the interactive explorer in a window (TkAgg; set MPLBACKEND for "
        "another backend).",
    )
    _target_args(exp, required=False)
    exp.add_argument("--divergence", default="kl_forward", help="default: kl_forward")
    exp.add_argument("--estimator", default="exact", help="exact or a Monte Carlo estimator")
    exp.add_argument("--num-samples", type=int, default=16, help="K, 1 to 512 (default: 16)")
    _step_args(exp)
    exp.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    exp.add_argument("--steps-per-frame", type=int, default=10, help="steps per frame (default: 10)")
    exp.add_argument("--preset", choices=("page",), default=None, help="page: the seed page's defaults")
    rep = sub.add_parser(
        "reproduce", help="published results, reproduced: one entry per claim (see --list)",
        description="Measures a published claim with divjax, checks it on exact values and "
        "gradients, prints the table and verdict, and saves a figure.",
    )  # fmt: skip
    rep.add_argument("names", nargs="*", metavar="NAME", help="the entries to run (see --list)")
    rep.add_argument("--list", action="store_true", help="list the entries")
    rep.add_argument("--all", action="store_true", help="run every entry")
    rep.add_argument("--quick", action="store_true", help="small sizes (those the tests use)")
    rep.add_argument("--out", default="divjax_gallery", help="figures and records folder")
    rep.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    rep.add_argument("--no-figures", action="store_true", help="print only")
    rep.add_argument("--table", metavar="FILE", help="write the summary table (markdown)")
    rep.add_argument("--docs", metavar="FILE", help="write the gallery page (figures in img/)")
    rep.add_argument("--no-cache", action="store_true", help="no persistent compilation cache")
    return parser


def _optimizer(name: str, learning_rate: float, momentum: float):
    import optax

    if name == "sgd":
        return optax.sgd(learning_rate, momentum=momentum or None)
    return getattr(optax, name)(learning_rate)


def _check_names(values, valid, what):
    from divjax._checks import check_choice

    for v in values or ():
        check_choice(v, valid, what)


def _header(p, q0) -> str:
    import divjax as dj

    lines = [f"divergences of q0 = N({float(q0.loc):.3g}, {float(q0.variance):.3g}):"]
    for name in dj.DIVERGENCES:
        reason = dj.infinite_reason(name, p, q0)
        value = float(dj.divergence(name, p, q0))
        lines.append(f"  {name:<13} {value:.6g}" + (f"   ({reason})" if reason else ""))
    return "\n".join(lines)


def run(args) -> int:
    import jax

    if not args.no_cache:
        enable_cache(cache_dir())
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    import divjax as dj
    from divjax import demo

    names = list(dj.DIVERGENCES)
    if args.command == "demo":
        p, q0 = dj.default_target(), dj.default_q0()
        ks, seeds, steps = DEMO["num_samples"], DEMO["seeds"], DEMO["steps"]
        fits, optimizer, grad_draws = demo.fits_for(names), dj.default_optimizer(), 2000
        if args.quick:
            ks, seeds, steps = (1, 4, 16), 16, 200
    else:
        valid = dj.DIVERGENCES + dj.ALPHA_DIVERGENCES
        _check_names(args.divergences, valid, "divergence")
        names = args.divergences or names
        _check_names(args.estimators, sorted({e for n in names for e in dj.ESTIMATORS[n]}), "estimator")
        p = dj.GaussianMixture(args.weights, args.locs, args.scales)
        q0 = dj.Gaussian.from_loc_variance(*args.q0)
        ks, seeds, steps = tuple(args.num_samples), args.seeds, args.steps
        fits = demo.fits_for(names, args.estimators)
        optimizer = _optimizer(args.optimizer, args.learning_rate, args.momentum)
        grad_draws = args.grad_draws
        if args.quick:
            seeds, steps = 16, 200
    print(_header(p, q0), flush=True)
    print(
        f"\nfits: {seeds} seeds x {steps} steps per (divergence, estimator, K); "
        "SNR = |exact| / std of one estimate at q0; 'in stat' = fits the median and IQR cover\n",
        flush=True,
    )
    result = demo.run_demo(
        p, q0, fits, num_samples=ks, num_seeds=seeds, num_steps=steps, optimizer=optimizer,
        grad_draws=grad_draws, key=jax.random.key(args.seed), out=pathlib.Path(args.out),
        figures=not args.no_figures, panel_samples=args.panel_samples,
        echo=lambda s: print(s, flush=True),
    )  # fmt: skip
    print(demo.timing_report(result.timing))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "explore":
        from divjax.explorer import run_cli

        return run_cli(args)
    if args.command == "reproduce":
        from divjax.gallery.runner import run_cli as reproduce

        if not args.no_cache:
            enable_cache(cache_dir())
        return reproduce(args)
    try:
        return run(args)
    except ValueError as err:
        print(f"divjax: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
