"""A small sweep run in a subprocess: one of several JAX processes, or a single one.

Used by tests/test_distributed.py (multi-process sweeps, killed and resumed
sweeps). Writes the flattened results of process 0 to ``--out`` (npz).
"""

import argparse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--process-id", type=int, default=0)
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import jax

    jax.config.update("jax_num_cpu_devices", args.devices)
    if args.num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=60,
            heartbeat_timeout_seconds=30,
        )
    import numpy as np

    import divjax as dj

    res = dj.sweep(
        dj.default_target(),
        dj.default_q0(),
        [("kl_reverse", "reparam"), ("kl_forward", "snis"), ("kl_forward", "exact")],
        num_samples=(4, 16),
        num_seeds=args.seeds,
        num_steps=args.steps,
        key=jax.random.key(7),
        seed_chunk=args.chunk,
        out_dir=args.out_dir,
        progress=False,
    )
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_leaves([(r.q, r.status) for r in res.runs])
        np.savez(args.out, *[np.asarray(x) for x in leaves])


if __name__ == "__main__":
    main()
