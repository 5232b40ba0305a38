"""Sweeps across processes (JAX's multi-process runtime, gloo on CPU) and killed, resumed sweeps."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = str(Path(__file__).with_name("sweep_worker.py"))
ROOT = str(Path(__file__).parents[1])


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _run(args, timeout=240):
    cmd = [sys.executable, WORKER] + [str(a) for a in args]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(procs, timeout=240):
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a sweep worker did not finish in time")
        outs.append(out.decode())
        assert p.returncode == 0, out.decode()[-3000:]
    return outs


def _leaves(path):
    with np.load(path) as data:
        return [data[k] for k in sorted(data.files, key=lambda s: int(s.split("_")[1]))]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FITS = [("kl_reverse", "reparam"), ("kl_forward", "snis"), ("kl_forward", "exact")]


def _in_process(seeds, steps, chunk, out_dir=None):
    """The worker's sweep, run here (the same program for every call of the same shapes)."""
    import jax

    import divjax as dj

    res = dj.sweep(
        dj.default_target(), dj.default_q0(), FITS, num_samples=(4, 16), num_seeds=seeds,
        num_steps=steps, key=jax.random.key(7), seed_chunk=chunk, out_dir=out_dir, progress=False,
    )  # fmt: skip
    return [np.asarray(x) for x in jax.tree_util.tree_leaves([(r.q, r.status) for r in res.runs])]


@pytest.mark.slow  # 23 s: three cold compiles of the sharded sweep
def test_two_processes_match_one_process(tmp_path):
    """2 processes x 1 CPU device (gloo), gathered on every process == one process, bitwise.

    The numbers depend on how many seeds each device vectorizes per chunk (float
    rounding in vectorized math, amplified by Monte Carlo dynamics), not on how
    devices are spread over processes: 3 seeds per device here and in the
    one-process run (``seed_chunk=3``).
    """
    port = _free_port()
    common = ["--seeds", 9, "--steps", 100, "--chunk", 6, "--num-processes", 2, "--port", port]
    procs = [_run(common + ["--process-id", i, "--out", tmp_path / f"p{i}.npz"]) for i in range(2)]
    _wait(procs)
    _same(_leaves(tmp_path / "p0.npz"), _in_process(9, 100, 3))


def test_killed_sweep_resumes_identically(tmp_path):
    """A sweep killed mid-run leaves its finished chunks; the same call resumes, bitwise equal."""
    out_dir = tmp_path / "sweep"
    proc = _run(
        [
            "--seeds",
            32,
            "--steps",
            300,
            "--chunk",
            4,
            "--out-dir",
            out_dir,
            "--out",
            tmp_path / "x.npz",
        ]
    )
    deadline = time.time() + 180
    while not (out_dir / "chunk_00001.npz").exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "no chunk was written in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in out_dir.glob("chunk_*.npz"))
    assert 2 <= len(done) < 8, done  # killed mid-run; every finished chunk is a readable file
    for path in out_dir.glob("chunk_*.npz"):
        np.load(path).close()
    # A chunk cut off while being written is left as a partial file, never under a
    # finished chunk's name; resuming overwrites it.
    (out_dir / "chunk_00007.npz.part").write_bytes(b"cut off mid-write")
    resumed = _in_process(32, 300, 4, out_dir)
    assert len(list(out_dir.glob("chunk_*.npz"))) == 8
    assert not list(out_dir.glob("*.part")), list(out_dir.glob("*"))
    _same(resumed, _in_process(32, 300, 4))
