"""The ``divjax`` command line: ``divjax demo`` (the main job) and ``divjax compare``.

Both run every chosen (divergence, estimator, K) over many seeds with
`divjax.sweep`, measure each estimator's gradient at ``q0`` with
`divjax.grad_stats`, print one table and write it as CSV and JSON (and the
figures) to an output folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

DEMO = dict(
    weights=(0.3, 0.7),
    locs=(-2.0, 3.0),
    scales=(0.5, 1.0),
    num_samples=(1, 4, 16, 64, 256),
    seeds=256,
    steps=2000,
)
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")


class Row(NamedTuple):
    divergence: str
    estimator: str
    num_samples: int
    median: float
    q25: float
    q75: float
    pct_global: float
    pct_local: float
    pct_stuck: float
    pct_diverged: float
    snr_loc: float
    snr_log_scale: float
    infinite_variance: bool
    compile_s: float
    wall_s: float


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump or traceback
        self.exit(2, f"divjax: error: {message}\n")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _target_args(parser, *, required: bool) -> None:
    """The target mixture and start flags shared by ``compare`` and ``explore``."""
    default = "" if required else " (default: {})"

    def text(base, key):
        return base + (
            default.format(",".join(f"{v:g}" for v in DEMO[key])) if not required else ""
        )

    kw = {"required": True} if required else {}
    for key, what in (
        ("weights", "mixture weights, e.g. 0.3,0.7 (need not sum to 1)"),
        ("locs", "component means, e.g. --locs=-2,3 (use = when the first is negative)"),
        ("scales", "component standard deviations, e.g. 0.5,1"),
    ):
        parser.add_argument(
            f"--{key}",
            type=_floats,
            default=None if required else DEMO[key],
            help=text(what, key),
            **kw,
        )
    parser.add_argument(
        "--q0", type=_floats, default=(0.0, 5.0), help="start mean,variance (default: 0,5)"
    )


def _step_args(parser) -> None:
    """Step size and momentum flags shared by ``compare`` and ``explore``."""
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=0.05,
        help="step size (default: 0.05; negative ascends)",
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="momentum (default: 0.9)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="divjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p, *, demo: bool):
        p.add_argument("--out", default="divjax_out", help="output folder (default: divjax_out)")
        p.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
        p.add_argument("--float64", action="store_true", help="compute in float64")
        p.add_argument("--no-figures", action="store_true", help="write tables only")
        p.add_argument(
            "--quick",
            action="store_true",
            help="tiny sizes (K 1,4,16; 16 seeds; 200 steps) for a smoke run"
            if demo
            else "same as --seeds 16 --steps 200",
        )

    demo = sub.add_parser(
        "demo",
        help="the default scenario: every divergence x estimator x K, 256 seeds, 2000 steps",
        description="p = 0.3 N(-2, 0.5^2) + 0.7 N(3, 1), q0 = N(0, 5); every divergence x "
        "every estimator (exact included) x K in {1,4,16,64,256} x 256 seeds x 2000 steps, "
        "SGD with momentum.",
    )
    common(demo, demo=True)

    cmp = sub.add_parser("compare", help="the same table for your own target and choices")
    _target_args(cmp, required=True)
    cmp.add_argument(
        "--divergences", type=_names, default=None, help="comma-separated (default: all four)"
    )
    cmp.add_argument(
        "--estimators",
        type=_names,
        default=None,
        help="comma-separated (default: all valid for each divergence)",
    )
    cmp.add_argument(
        "--num-samples",
        type=_ints,
        default=(1, 4, 16, 64, 256),
        help="K values (default: 1,4,16,64,256)",
    )
    cmp.add_argument("--seeds", type=int, default=64, help="fits per configuration (default: 64)")
    cmp.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: 1000)")
    _step_args(cmp)
    cmp.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="sgd", help="optax optimizer (default: sgd)"
    )
    cmp.add_argument(
        "--grad-draws", type=int, default=2000, help="draws for the SNR at q0 (default: 2000)"
    )
    common(cmp, demo=False)

    exp = sub.add_parser(
        "explore",
        help="the interactive explorer: drag p and q, watch the fit live (opens a window)",
        description="Opens the interactive explorer in a window (TkAgg; set MPLBACKEND for "
        "another backend): drag the target's modes and q, pick the divergence, its direction, "
        "exact or Monte Carlo gradients, the estimator, K, the step size and the momentum.",
    )
    _target_args(exp, required=False)
    exp.add_argument(
        "--divergence",
        default="kl_forward",
        help="kl_forward, kl_reverse, chi2_forward or chi2_reverse (default: kl_forward)",
    )
    exp.add_argument(
        "--estimator",
        default="exact",
        help="exact or a Monte Carlo estimator of the divergence (default: exact)",
    )
    exp.add_argument(
        "--num-samples", type=int, default=16, help="K, a power of two up to 256 (default: 16)"
    )
    _step_args(exp)
    exp.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    exp.add_argument(
        "--steps-per-frame", type=int, default=10, help="optimizer steps per frame (default: 10)"
    )
    return parser


def _optimizer(name: str, learning_rate: float, momentum: float):
    import optax

    if name == "sgd":
        return optax.sgd(learning_rate, momentum=momentum or None)
    return getattr(optax, name)(learning_rate)


def _fits(divergences, estimators):
    from divjax import DIVERGENCES, ESTIMATORS
    from divjax._checks import check_choice

    divergences = divergences or DIVERGENCES
    for d in divergences:
        check_choice(d, DIVERGENCES, "divergence")
    fits = []
    for d in divergences:
        ests = estimators or ESTIMATORS[d]
        if estimators:
            valid = set().union(*(ESTIMATORS[x] for x in divergences))
            for e in estimators:
                check_choice(e, sorted(valid), "estimator")
        fits += [(d, e) for e in ests if e in ESTIMATORS[d]]
    return fits


def _row(run, stats, k_index, compile_s, wall_s) -> Row:
    st = run.status
    value = np.asarray(st.final_value, dtype=np.float64)
    diverged = np.asarray(st.diverged_at) >= 0
    optimum = np.asarray(st.optimum)
    finite = value[np.isfinite(value) & ~diverged]
    q25, med, q75 = np.percentile(finite, [25, 50, 75]) if finite.size else (math.nan,) * 3
    if stats is None:
        snr = (math.inf, math.inf)  # exact gradient: no noise
        inf_var = False
    else:
        snr = tuple(float(np.asarray(s)[k_index]) for s in stats.snr_exact)
        inf_var = bool(np.asarray(stats.infinite_variance)[k_index])
    c = run.config
    return Row(
        c.name,
        c.estimator,
        c.num_samples,
        float(med),
        float(q25),
        float(q75),
        100 * float(np.mean(optimum == 0)),
        100 * float(np.mean(optimum > 0)),
        100 * float(np.mean(optimum == -1)),
        100 * float(np.mean(diverged)),
        snr[0],
        snr[1],
        inf_var,
        compile_s,
        wall_s,
    )


def _fmt(x: float, width: int = 9) -> str:
    if math.isnan(x):
        return "-".rjust(width)
    if math.isinf(x):
        return ("inf" if x > 0 else "-inf").rjust(width)
    return f"{x:{width}.3g}"


def format_table(rows: Sequence[Row]) -> str:
    head = (
        f"{'divergence':<13}{'estimator':<14}{'K':>4} {'median D':>9} {'IQR':>19} "
        f"{'%glob':>6}{'%loc':>6}{'%stuck':>7}{'%div':>6} "
        f"{'SNR mu':>8}{'SNR lsig':>9} {'wall s':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        k = "-" if r.num_samples == 0 else str(r.num_samples)
        snr = (
            ("inf-var".rjust(8), "inf-var".rjust(9))
            if r.infinite_variance
            else (_fmt(r.snr_loc, 8), _fmt(r.snr_log_scale, 9))
        )
        lines.append(
            f"{r.divergence:<13}{r.estimator:<14}{k:>4} {_fmt(r.median)} "
            f"[{_fmt(r.q25, 8)},{_fmt(r.q75, 8)}] "
            f"{r.pct_global:6.1f}{r.pct_local:6.1f}{r.pct_stuck:7.1f}{r.pct_diverged:6.1f} "
            f"{snr[0]}{snr[1]} {r.wall_s:7.2f}"
        )
    return "\n".join(lines)


def _header(p, q0) -> str:
    import divjax as dj

    lines = [f"divergences of q0 = N({float(q0.loc):.3g}, {float(q0.variance):.3g}):"]
    for name in dj.DIVERGENCES:
        value = float(dj.divergence(name, p, q0))
        reason = dj.infinite_reason(name, p, q0)
        lines.append(f"  {name:<13} {value:.6g}" + (f"   ({reason})" if reason else ""))
    lines.append("optima (row 0 global; others local):")
    optima = {}
    for name in dj.DIVERGENCES:
        opt = dj.optimal_q(name, p)
        optima[name] = opt
        parts = [
            f"N({float(m):.4g}, {float(v):.4g}) D={float(d):.4g}"
            for m, v, d in zip(opt.q.loc, opt.q.variance, opt.value)
        ]
        lines.append(f"  {name:<13} " + "; ".join(parts))
    return "\n".join(lines), optima


def run(args) -> list[Row]:
    import jax

    if args.float64:
        jax.config.update("jax_enable_x64", True)
    import divjax as dj
    from divjax.estimators import min_samples
    from divjax.sweep import sweep

    if args.command == "demo":
        weights, locs, scales = DEMO["weights"], DEMO["locs"], DEMO["scales"]
        ks, seeds, steps = DEMO["num_samples"], DEMO["seeds"], DEMO["steps"]
        fits = _fits(None, None)
        optimizer = dj.default_optimizer()
        q0 = dj.default_q0()
        grad_draws = 2000
        if args.quick:
            ks, seeds, steps = (1, 4, 16), 16, 200
    else:
        weights, locs, scales = args.weights, args.locs, args.scales
        ks, seeds, steps = args.num_samples, args.seeds, args.steps
        fits = _fits(args.divergences, args.estimators)
        optimizer = _optimizer(args.optimizer, args.learning_rate, args.momentum)
        q0 = dj.Gaussian.from_loc_variance(*args.q0) if len(args.q0) == 2 else None
        if q0 is None:
            raise ValueError("--q0 takes two numbers: mean,variance")
        grad_draws = args.grad_draws
        if args.quick:
            seeds, steps = 16, 200
    p = dj.GaussianMixture(weights, locs, scales)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header, optima = _header(p, q0)
    print(header, flush=True)
    print(
        f"\nfits: {seeds} seeds x {steps} steps per (divergence, estimator, K); "
        "SNR = |exact| / std of one estimate at q0 (exact: no noise)\n",
        flush=True,
    )

    key = jax.random.key(args.seed)
    rows, runs, stats_by = [], [], {}
    for i, (name, est) in enumerate(fits):
        valid_ks = [k for k in ks if k >= min_samples(est)] if est != "exact" else [1]
        stats = None
        if est != "exact":
            stats = dj.grad_stats(
                name, est, p, q0, valid_ks, grad_draws, jax.random.fold_in(key, 10_000 + i)
            )
            stats_by[(name, est)] = stats
        for j, k in enumerate(valid_ks):
            t = time.perf_counter()
            res = sweep(
                p,
                q0,
                [(name, est)],
                num_samples=(k,),
                num_seeds=seeds,
                num_steps=steps,
                optimizers={"sgd": optimizer},
                key=jax.random.fold_in(key, i),
                optima=optima,
                progress=None,
            )
            wall = time.perf_counter() - t
            row = _row(res.runs[0], stats, j, res.compile_s, wall)
            rows.append(row)
            runs.append(res.runs[0])
            print(
                format_table([row]).splitlines()[-1] if rows[1:] else format_table([row]),
                flush=True,
            )
    _write_tables(out, rows)
    if not args.no_figures:
        paths = _figures(out, p, q0, runs, stats_by, key, optima)
        for path in paths:
            print(f"wrote {path}")
    print(f"wrote {out / 'table.csv'} and {out / 'table.json'}")
    return rows


def _write_tables(out: pathlib.Path, rows: Sequence[Row]) -> None:
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(Row._fields)
        writer.writerows(rows)

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    with open(out / "table.json", "w") as f:
        json.dump([{k: clean(v) for k, v in r._asdict().items()} for r in rows], f, indent=1)


def _figures(out, p, q0, runs, stats_by, key, optima):
    import matplotlib

    matplotlib.use("Agg")
    from divjax import plot

    return plot.demo_figures(out, p, q0, runs, stats_by, key=key, optima=optima)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "explore":
        from divjax.explorer import run_cli

        return run_cli(args)
    try:
        run(args)
    except ValueError as err:
        print(f"divjax: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
