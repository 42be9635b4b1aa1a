"""scripts/gpu_check.py, the one prepared run for a lent GPU, dry-run on the CPU stand-in so it cannot rot
between the rare days a GPU is lent: every section, tiny sizes, its log and JSON checked.

The stand-in (gpusim) is found on PYTHONPATH or as shared/gpu-sim in a folder above the checkout; without it
the dry run skips. The script's own helpers (time boxes, argument checks) are tested without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from xpnet.backend import _cupy_problem

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _gpusim_dir() -> Path | None:
    spec = importlib.util.find_spec("gpusim")
    if spec is not None and spec.origin:
        return Path(spec.origin).parents[1]
    for up in ROOT.parents:
        if (up / "shared" / "gpu-sim" / "gpusim" / "__init__.py").is_file():
            return up / "shared" / "gpu-sim"
    return None


def test_time_boxes_nest_and_expire() -> None:
    gc = _load_script()
    with pytest.raises(gc.SectionTimeout, match="time box of 0 s exhausted"), gc.time_box(0.05):
        time.sleep(1)
    t = time.perf_counter()
    with pytest.raises(gc.SectionTimeout), gc.time_box(0.3):
        with gc.time_box(5):  # the inner box ends first; the outer one still fires on time
            pass
        time.sleep(2)
    assert time.perf_counter() - t < 1.5


def test_bad_sections_and_budgets_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    gc = _load_script()
    with pytest.raises(SystemExit):
        gc.parse_args(["--sections", "tests,speed"])
    assert "unknown section or workload: speed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gc.parse_args(["--budget", "0"])
    assert "--budget must be > 0, received 0.0" in capsys.readouterr().err


def test_the_dry_run_on_the_stand_in_runs_every_section(tmp_path: Path) -> None:
    sim = _gpusim_dir()
    if sim is None:
        pytest.skip("the CPU stand-in gpusim is not on PYTHONPATH nor at shared/gpu-sim above the checkout")
    if "cupy" not in sys.modules and importlib.util.find_spec("cupy") is None:  # (the stand-in has no spec)
        pytest.skip("gpusim needs the real cupy package installed (it imports without a GPU)")
    if "gpusim" not in sys.modules and _cupy_problem(0) is None:
        pytest.skip("a real CUDA device is here: the script itself is what runs on it, not its dry run")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(sim)]), "GPUSIM_CUBLAS_IN_CAPTURE": "1"}
    env.pop("OUT", None)
    cmd = [sys.executable, str(SCRIPT), "--stand-in", "--quick", "--out", str(out), "--workloads", "A,LENET"]
    cmd += ["--stand-in-tests", "tests/test_program.py::test_numpy_runs_the_step_eagerly_and_says_why"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "gpu_check.json").read_text())
    sections = record["sections"]
    assert {k: v["status"] for k, v in sections.items()} == dict.fromkeys(
        ("info", "tests", "parity", "identity", "bench", "e2e"), "ok"
    )
    assert record["stand_in"] and "gpusim" in record["info"]["device"]
    assert record["info"]["commit"] and record["info"]["cupy"]
    assert sections["tests"]["summary"].startswith("1 passed")
    assert sections["parity"]["pass"] and sections["parity"]["max_rel_weight_diff"] <= 1e-5
    assert sections["identity"]["pass"]
    assert all(sections["identity"][k]["bit_identical"] and sections["identity"][k]["captured"] for k in "AB")
    # and the path jit_compile=False takes (CuPy's own cuBLAS handle, not the graph's binding) against the graph,
    # reported: the stand-in's `cupy.matmul` is NumPy's, not cuBLAS's, so only a GPU's answer means anything
    plain = sections["identity"]["A"]
    assert isinstance(plain["unrouted_eager_bit_identical"], bool) and plain["unrouted_eager_sink"] == "in backprop"
    for name in ("A", "LENET"):
        rows = sections["bench"][name]["rows"]
        for label in ("xpnet eager", "xpnet captured"):
            assert rows[label]["first_epoch_s"] > 0 and len(rows[label]["epochs_s"]) == 1, (name, label, rows[label])
        # each peer ran or says why not (absent here, or no CUDA device for PyTorch)
        jax_row = rows["JAX lax.scan"]
        assert "s_per_epoch" in jax_row or jax_row["status"].startswith("skipped"), jax_row
    assert set(sections["bench"]["stand_in_launches_per_step"]["eager"]) == {"A", "B", "LENET"}
    assert sections["e2e"]["xpnet_train"].get("returncode", 0) == 0
    log = (out / "gpu_check.log").read_text()
    assert "model A: 22 steps" in log and "bit-identical" in log and "done in" in log
    assert "model A: jit_compile=False (CuPy's own cuBLAS handle) vs captured: " in log


@pytest.mark.gpu
def test_forward_identity_says_whether_any_forward_graph_ran() -> None:
    # two eager models agree trivially: the identity section must not pass on that alone
    problem = _cupy_problem(0)
    if problem:
        pytest.skip(f"cupy backend unavailable: {problem.split(' (')[0]}")
    import xpnet
    from xpnet.layers import Dense

    gc = _load_script()
    models = []
    for _ in range(2):
        model = xpnet.Sequential([Dense(10, "softmax", input_shape=(784,))], seed=1)
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=False)
        models.append(model)
    got = gc.forward_identity(*models)
    assert got["forward_bit_identical"] and got["forward_graph_launches"] == 0
    assert got["forward_captured"] is False
