"""`cupy:N` with N > 0: every device allocation happens with device N current.

CuPy allocates on the *current* device, not on the device of the `Ops` that asked, so an
allocation outside `with device:` lands on GPU 0 and the next kernel mixing it with device-N
arrays fails (or silently copies over the peer link). Only the GPU stand-in (`gpusim`, which
records every allocation) can show this without two GPUs: the test runs where `cupy` is the
stand-in and skips elsewhere.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

pytestmark = pytest.mark.gpu


@pytest.fixture
def second_device(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[str]]]:
    """CupyOps(1) on the stand-in with two devices, and the list of allocations made off device 1."""
    cp = sys.modules.get("cupy")
    if cp is None or "gpusim" not in type(cp).__module__:
        pytest.skip("needs the GPU stand-in (gpusim) as cupy: it records where each allocation happens")
    from gpusim import device as gdev

    from xpnet.backend.cupy_ops import CupyOps

    current = [0]
    Device = cp.cuda.Device

    def enter(self: Any) -> Any:
        self._prev = current[0]
        current[0] = self.id
        return self

    def leave(self: Any, *a: Any) -> None:
        current[0] = self._prev

    offenders: list[str] = []
    record = gdev.record

    def checked(cat: str, what: str) -> None:
        # allocations and launches alike: CuPy launches on the current device too
        if cat in ("alloc", "kernel") and current[0] != 1:
            frames = [f for f in traceback.extract_stack() if "/xpnet/" in f.filename.replace("\\", "/")]
            site = f"{frames[-1].filename.split('/xpnet/')[-1]}:{frames[-1].lineno}" if frames else "?"
            offenders.append(f"{cat} {what} at xpnet/{site}")
        record(cat, what)

    monkeypatch.setattr(Device, "__enter__", enter)
    monkeypatch.setattr(Device, "__exit__", leave)
    monkeypatch.setattr(gdev, "record", checked)
    monkeypatch.setattr(cp.cuda.runtime, "getDeviceCount", lambda: 2)
    # the stand-in has one memory: every array claims to live on device 1 for the test's length
    monkeypatch.setattr(cp.ndarray, "device", property(lambda self: Device(1)))
    yield CupyOps(1), offenders


def test_training_and_inference_on_cupy_1_allocate_on_device_1(second_device: tuple[Any, list[str]]) -> None:
    ops, offenders = second_device
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 64)
    offenders.clear()
    with xpnet.use_backend(ops):  # the model is built on cupy:1 from the start, never on "auto"'s cupy:0
        model = _model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=ops)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.25)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    model.train_on_batch(x[:8], y[:8])
    model.test_on_batch(x[:8], y[:8])
    model.compute_gradients(x[:8], y[:8])
    model.trace(x[:2], y[:2])
    model.set_weights(model.get_weights())
    model.layers[3].weights[0].assign(ops.asarray(np.ones((18, 6), np.float32)))
    assert offenders == [], "allocations made with device 0 current:\n" + "\n".join(sorted(set(offenders)))


def _model() -> xpnet.Sequential:
    return xpnet.Sequential(
        [
            Conv2D(2, 3, activation="relu", input_shape=(8, 8, 1)),
            MaxPooling2D(2),
            Flatten(),
            Dense(6, "relu"),
            Dropout(0.3),
            Dense(3, "softmax"),
        ],
        seed=1,
    )


class _Comm:
    """An mpi4py-like communicator of `size` ranks seen from `rank`; the others' answers are given."""

    def __init__(self, rank: int, others_bus: list[str | None]) -> None:
        self.rank, self.others = rank, others_bus
        self.calls: list[str] = []

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return 1 + len(self.others)

    def allgather(self, obj: Any) -> list[Any]:
        self.calls.append("allgather")
        return [obj, *self.others] if self.rank == 0 else [*self.others[:1], obj, *self.others[1:]]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        self.calls.append("bcast")
        return obj if self.rank == root else ("uid-from-root", None)


@pytest.fixture
def fake_nccl(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[tuple[int, Any, int]]]]:
    cp = sys.modules.get("cupy")
    if cp is None or "gpusim" not in type(cp).__module__:
        pytest.skip("needs the GPU stand-in (gpusim) as cupy, with a stand-in NCCL module")
    import types

    from xpnet.backend.cupy_ops import CupyOps

    made: list[tuple[int, Any, int]] = []

    class NcclCommunicator:
        def __init__(self, size: int, uid: Any, rank: int) -> None:
            made.append((size, uid, rank))

    mod = types.ModuleType("cupy.cuda.nccl")
    mod.available = True  # type: ignore[attr-defined]
    mod.get_unique_id = lambda: "uid"  # type: ignore[attr-defined]
    mod.NcclCommunicator = NcclCommunicator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", mod)
    monkeypatch.setattr(cp.cuda, "nccl", mod, raising=False)
    yield CupyOps(0), made


def test_nccl_communicator_is_made_per_mpi_communicator(fake_nccl: tuple[Any, list[Any]]) -> None:
    ops, made = fake_nccl
    world, other = _Comm(0, ["bus-1"]), _Comm(0, ["bus-1", "bus-2"])
    first = ops._nccl(world)
    assert first is not None and made == [(2, "uid", 0)]
    assert ops._nccl(world) is first and world.calls == ["allgather", "bcast"]  # cached for that communicator
    second = ops._nccl(other)
    assert second is not None and second is not first and made[-1] == (3, "uid", 0)


def test_nccl_is_skipped_by_every_rank_when_one_rank_lacks_it(fake_nccl: tuple[Any, list[Any]]) -> None:
    ops, made = fake_nccl
    # rank 1's view: rank 0 has no NCCL. Rank 1 still takes part in the one allgather, then stages
    # through MPI as rank 0 does, instead of waiting in a bcast rank 0 never makes
    comm = _Comm(1, [None])
    assert ops._nccl(comm) is None and comm.calls == ["allgather"] and made == []
    shared = _Comm(0, ["0000:00:00.0"])  # two ranks on one GPU
    assert ops._nccl(shared) is None and shared.calls == ["allgather"]


def test_benchmark_prints_launches_per_step_on_the_stand_in(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = sys.modules.get("cupy")
    if cp is None or "gpusim" not in type(cp).__module__:
        pytest.skip("launches are counted only on the GPU stand-in (gpusim)")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    spec = importlib.util.spec_from_file_location("xpnet_benchmark_script", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    assert bench.main(["--backend", "cupy"]) == 0
    out = capsys.readouterr().out
    counts = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if "launches per step" in line}
    # the counts after the fused kernels (before: A 32, B 62, LeNet 57): a new launch in the step shows here
    assert counts["A"] <= 26 and counts["B"] <= 25 and counts["LENET"] <= 47, counts
