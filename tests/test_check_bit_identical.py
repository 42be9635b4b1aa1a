"""scripts/check_bit_identical.py: the seeded-run comparison, run against this checkout twice."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_bit_identical.py"


def test_check_bit_identical_finds_this_checkout_identical_to_itself():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--baseline", str(ROOT), "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for model in ("A", "B", "lenet", "residual", "sgd_momentum_l2_f64"):
        (line,) = [ln for ln in lines if ln.split()[0] == model]
        assert " identical (" in line
        assert int(line.split("(")[1].split()[0]) >= 5  # weights, losses and predictions were compared
    assert lines[-1].startswith("5 of 5 identical")


def test_first_difference_names_the_first_differing_array_and_its_max_diff():
    first_difference = runpy.run_path(str(SCRIPT))["first_difference"]
    a = {"m/weights[0]": np.zeros(3, np.float32), "m/loss per epoch": np.array([0.5, 0.25])}
    b = {"m/weights[0]": np.array([0.0, 2e-7, -1e-7], np.float32), "m/loss per epoch": np.array([0.5, 0.25])}
    assert first_difference("m", a, dict(a)) is None
    assert first_difference("m", a, b) == "weights[0]: max |diff| 2e-07"
    c = {"m/weights[0]": np.zeros(3, np.float64), "m/loss per epoch": a["m/loss per epoch"]}
    assert first_difference("m", a, c) == "weights[0]: float32[3] vs float64[3]"
    # -0.0 and 0.0 are equal numbers but different bytes: the check is byte for byte
    d = {"m/weights[0]": -np.zeros(3, np.float32), "m/loss per epoch": a["m/loss per epoch"]}
    assert first_difference("m", a, d) == "weights[0]: max |diff| 0"


def test_check_bit_identical_refuses_a_baseline_that_is_not_a_checkout(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--baseline", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert f"--baseline: {tmp_path} is not an xpnet checkout" in proc.stderr


@pytest.mark.parametrize("models", ["C", ""])
def test_check_bit_identical_refuses_unknown_models(models):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--baseline", str(ROOT), "--models", models],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--models: unknown model" in proc.stderr
