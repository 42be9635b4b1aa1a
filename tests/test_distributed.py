"""Data-parallel training over MPI: N ranks × batch B follow the 1-process run with batch N·B."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import distributed

WORKER = Path(__file__).with_name("mpi_worker.py")


def _mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _needs_mpi() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py not installed (pip install 'xpnet[mpi]')")
    exe = _mpiexec()
    if exe is None:
        pytest.skip("no mpiexec on PATH (pip install 'xpnet[mpi]' brings MPICH's)")
    # a machine whose mpiexec and mpi4py do not work together (no xpnet involved) skips, saying why
    probe = "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"
    try:
        subprocess.run(
            [exe, "-n", "2", sys.executable, "-c", probe], env=_env(), capture_output=True, check=True, timeout=60
        )
    except (subprocess.SubprocessError, OSError) as e:
        err = getattr(e, "stderr", b"") or b""
        pytest.skip(f"mpiexec cannot start 2 mpi4py ranks here: {err.decode(errors='replace')[-300:] or e}")
    return exe


def _env() -> dict[str, str]:
    # one BLAS thread per rank, numpy backend, no inherited MPI launch variables
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "HYDRA_"))}
    return {**env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "XPNET_BACKEND": "numpy"}


def test_single_process_needs_no_mpi() -> None:
    comm = distributed.get_communicator("auto")
    assert (comm.rank, comm.size) == (0, 1)
    assert distributed.shard(0, 10, 0, 1) == (0, 10)
    assert [distributed.shard(32, 64, r, 2) for r in range(2)] == [(32, 48), (48, 64)]
    assert [distributed.shard(0, 5, r, 2) for r in range(2)] == [(0, 2), (2, 5)]


def test_missing_mpi_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(distributed.DistributedError, match=r"pip install 'xpnet\[mpi\]'"):
        distributed.get_communicator(True)
    monkeypatch.setenv("PMI_SIZE", "2")  # started by mpiexec, but mpi4py missing: an error, not a 1-rank run
    with pytest.raises(distributed.DistributedError, match="mpi4py"):
        xpnet.Sequential([xpnet.Dense(2, input_shape=(3,))]).compile("sgd", "mse")


@pytest.mark.mpi
@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_two_ranks_follow_the_one_process_trajectory(tmp_path: Path, kind: str) -> None:
    exe = _needs_mpi()
    env = _env()
    flags = ["--functional"] if kind == "functional" else []
    subprocess.run([exe, "-n", "2", sys.executable, str(WORKER), str(tmp_path / "two.npz"), "16", *flags], env=env,
                   check=True, timeout=300)  # fmt: skip
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one.npz"), "32", *flags], env=env, check=True,
                   timeout=300)  # fmt: skip
    with np.load(tmp_path / "two.npz") as two, np.load(tmp_path / "one.npz") as one:
        assert int(two["ranks"]) == 2 and int(one["ranks"]) == 1
        for k in one.files:
            if k.startswith("arr_"):
                np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
        np.testing.assert_allclose(two["acc"], one["acc"], atol=1e-6)
        np.testing.assert_allclose(two["val"], one["val"], rtol=1e-5)


@pytest.mark.mpi
def test_ranks_disagreeing_on_the_model_is_an_error(tmp_path: Path) -> None:
    exe = _needs_mpi()
    proc = subprocess.run(
        [exe, "-n", "2", sys.executable, str(WORKER), str(tmp_path / "x.npz"), "16", "--disagree"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "ranks disagree on the model" in proc.stderr + proc.stdout


@pytest.mark.mpi
def test_two_ranks_resume_mid_epoch_with_the_same_weights_and_history(tmp_path: Path) -> None:
    exe = _needs_mpi()
    worker = str(Path(__file__).with_name("mpi_resume_worker.py"))

    def run(ckpt: str, out: str, mode: str) -> None:
        cmd = [exe, "-n", "2", sys.executable, worker, str(tmp_path / ckpt), str(tmp_path / out), mode]
        subprocess.run(cmd, env=_env(), check=True, timeout=300)

    run("full", "full.npz", "full")
    run("c", "crashed.npz", "crash")
    run("c", "resumed.npz", "resume")
    assert not (tmp_path / "crashed.npz").exists()
    with np.load(tmp_path / "full.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_every_rank_resumes_from_the_checkpoint_rank_0_chose(tmp_path: Path) -> None:
    """Only rank 0 writes checkpoints, so a rank that looked for the newest file itself could
    resume from an older one (rank 0 still writing its last one): rank 0 names the file instead."""
    from xpnet.checkpoint import Checkpoint, list_checkpoints

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 5)).astype("float32"), rng.integers(0, 3, 64)

    def model() -> xpnet.Sequential:
        m = xpnet.Sequential([xpnet.Dense(4, "relu", input_shape=(5,)), xpnet.Dense(3, "softmax")], seed=1)
        m.compile("adam", "sparse_categorical_crossentropy", distribute=False)
        return m

    model().fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Checkpoint(tmp_path, keep=3)])
    files = list_checkpoints(tmp_path)
    assert len(files) == 3

    class Rank1(distributed.Communicator):
        rank, size = 1, 2

        def allgather(self, obj: object) -> list[object]:
            if isinstance(obj, tuple):
                return [(str(files[0]), None), obj]  # rank 0 chose the oldest file
            return [None, obj]  # then each rank's failure to read it, if any

    m = model()
    m._comm = Rank1()
    m.train_state.samples, m.train_state.batch_size = 64, 16  # as fit sets them before it resumes
    m._resume(tmp_path, steps=4, verbose=0)
    assert m.optimizer is not None and m.optimizer.iterations == 4  # ckpt-000000004, not the newest (12)


def test_a_rank_that_cannot_read_rank_0s_checkpoint_stops_every_rank(tmp_path: Path) -> None:
    """Rank 1 failing to read the file rank 0 chose used to raise on rank 1 alone: rank 0 went on into
    fit and waited for it forever. Every rank now hears of the failure and raises."""
    from xpnet.checkpoint import Checkpoint, CheckpointError

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 5)).astype("float32"), rng.integers(0, 3, 32)

    def model() -> xpnet.Sequential:
        m = xpnet.Sequential([xpnet.Dense(4, "relu", input_shape=(5,)), xpnet.Dense(3, "softmax")], seed=1)
        m.compile("adam", "sparse_categorical_crossentropy", distribute=False)
        return m

    model().fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path)])

    class Rank0(distributed.Communicator):
        rank, size = 0, 2

        def allgather(self, obj: object) -> list[object]:
            return [obj, (None, None) if isinstance(obj, tuple) else "rank 1: unreadable"]

    m = model()
    m._comm = Rank0()
    m.train_state.samples, m.train_state.batch_size = 32, 16
    with pytest.raises(CheckpointError, match="rank 1: unreadable"):
        m._resume(tmp_path, steps=2, verbose=0)
