"""Every script in examples/ runs at a reduced size (--quick) and saves its figure.

The scripts are imported and their ``main(argv)`` called in this process, so jit
caches are shared between them; each returns the numbers it printed.
"""

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = [
    "mean_vs_mode_seeking",
    "step_size_momentum",
    "mc_stuck",
    "reverse_kl_mode_locking",
    "infinite_chi2",
    "verify_gradient",
    "beyond_1d",
    "convexity",
    "natural_gradient",
]


def test_every_example_is_tested():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(NAMES)


def load(name):
    spec = importlib.util.spec_from_file_location(f"divjax_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name, tmp_path, capsys):
    findings = load(name).main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    png = tmp_path / f"{name}.png"
    assert png.exists() and png.stat().st_size > 5000
    assert f"saved {png}" in out
    return findings, out


@pytest.mark.slow  # 15-40 s: optimal_q compiles; the features are unit-tested
def test_mean_vs_mode_seeking(tmp_path, capsys):
    findings, out = run("mean_vs_mode_seeking", tmp_path, capsys)
    assert set(findings) == {"kl_forward", "kl_reverse", "chi2_forward", "chi2_reverse"}
    # Forward KL moment-matches (mean 1.5, scale sqrt(6.025)); reverse KL picks the mode at 3.
    assert findings["kl_forward"]["loc"] == pytest.approx(1.5, abs=0.05)
    assert findings["kl_forward"]["scale"] == pytest.approx(6.025**0.5, abs=0.05)
    assert findings["kl_reverse"]["loc"] == pytest.approx(3.0, abs=0.1)
    assert findings["kl_reverse"]["scale"] < findings["kl_forward"]["scale"]
    assert findings["kl_forward"]["outcome"] == "global"
    assert "kl_forward    mean-seeking" in out


def test_step_size_momentum_reports_negative_step_as_diverged(tmp_path, capsys):
    findings, out = run("step_size_momentum", tmp_path, capsys)
    assert findings["negative"]["diverged_at"] >= 0
    assert findings["too large"]["diverged_at"] >= 0
    assert findings["momentum 0.9"]["diverged_at"] == -1
    assert findings["momentum 0.9"]["gap"] < findings["too small"]["gap"]
    assert findings["momentum 0.9"]["steps_to_tol"] < findings["momentum 0.99"]["steps_to_tol"]
    assert "diverged at step" in out


@pytest.mark.slow  # 9 s; sweep outcomes are unit-tested in test_sweeps
def test_mc_stuck_exact_moves_and_fractions_add_up(tmp_path, capsys):
    findings, _ = run("mc_stuck", tmp_path, capsys)
    assert findings["exact"]["sgd"] == "global"
    for label in ("adam", "sgd"):
        for k, fractions in findings["fractions"][label].items():
            assert sum(fractions.values()) == pytest.approx(1.0)
            assert 0.0 <= findings["left_mode"][label][k] <= 1.0 - fractions["global"] + 1e-9
    # Adam's bounded steps keep every small-K fit on the small mode.
    assert findings["left_mode"]["adam"][2] == 1.0


@pytest.mark.slow  # 6 s; mode locking is unit-tested in test_fit
def test_reverse_kl_mode_locking_finds_the_local_minimum(tmp_path, capsys):
    findings, out = run("reverse_kl_mode_locking", tmp_path, capsys)
    assert 1 <= findings["num_local"] < findings["num_starts"]
    assert "local optimum (mode at -2)" in out


@pytest.mark.slow  # 11 s; infinite values and reasons are unit-tested in test_divergences
def test_infinite_chi2(tmp_path, capsys):
    findings, out = run("infinite_chi2", tmp_path, capsys)
    fwd, rev = findings["chi2_forward"], findings["chi2_reverse"]
    assert fwd[0] == float("inf") and rev[-1] == float("inf")  # sigma^2 = 0.3 and 5
    assert findings["fits"]["exact"]["diverged_at"] == [0]  # infinite at N(0, 5)
    assert "q^2/p" in out and "does not decay" in out


def test_verify_gradient(tmp_path, capsys):
    findings, out = run("verify_gradient", tmp_path, capsys)
    assert findings["good_ok"] and not findings["bad_ok"]
    assert "PASS" in out and "FAIL" in out


@pytest.mark.slow  # 15-40 s: optimal_q compiles; the features are unit-tested
def test_beyond_1d(tmp_path, capsys):
    findings, out = run("beyond_1d", tmp_path, capsys)
    # One moment match; reverse KL has one minimum on this target (the small mode's
    # basin is not a local minimum over full-rank q).
    assert findings["optima"] == {"kl_forward": 1, "kl_reverse": 1, "chi2_forward": 1}
    assert findings["fits"]["kl_forward"] == "global"
    assert findings["mixture_weights"] == pytest.approx([0.3, 0.7], abs=0.05)
    assert "converged to the global optimum" in out


@pytest.mark.slow  # 15-40 s: optimal_q compiles; the features are unit-tested
def test_convexity(tmp_path, capsys):
    findings, out = run("convexity", tmp_path, capsys)
    rows = {(r["divergence"], r["parameterization"]): r for r in findings}
    # Forward KL convex, forward chi-square log-convex, in natural coordinates only.
    assert rows["kl_forward", "natural"]["rel"] >= -1e-7
    assert rows["kl_forward", "mu_log_sigma"]["rel"] < -1e-3
    assert rows["chi2_forward", "natural"]["log_rel"] >= -1e-7
    assert all(rows["chi2_reverse", n]["rel"] < -0.1 for n in ("mu_log_sigma", "natural"))
    assert "convex = rel >=" in out


@pytest.mark.slow  # 15-40 s: optimal_q compiles; the features are unit-tested
def test_natural_gradient(tmp_path, capsys):
    findings, out = run("natural_gradient", tmp_path, capsys)
    # One direction in every parameterization.
    assert max(findings["invariance"].values()) < 1e-10
    # Newton's method: the last ratios e_k / e_(k-1)^2 settle (quadratic convergence).
    assert findings["newton_errors"][-1] < 1e-12
    assert findings["newton_ratios"][-1] == pytest.approx(findings["newton_ratios"][-2], rel=1e-3)
    # One step in expectation coordinates lands on moment matching.
    assert findings["expectation_step"] == pytest.approx((1.5, 6.025), abs=1e-12)
    assert "converged to the global optimum" in out
