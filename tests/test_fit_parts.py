"""The parts `fit` delegates to: data preparation, the callback list, the resume, the step counters.

Each is checked on its own here; the whole fit is checked against its results elsewhere
(test_model, test_sample_weights, test_checkpoint, test_keras_callbacks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.backend import get_backend
from xpnet.layers import Dense, Dropout
from xpnet.layers.base import Layer
from xpnet.training import data
from xpnet.training.callbacks import Callback, CallbackList, HoldingCallback
from xpnet.training.checkpoint import Checkpoint, resume
from xpnet.training.distributed import Communicator
from xpnet.training.state import step_counted, step_counters
from xpnet.training.trainer import Trainer


def _model(dropout: bool = False) -> xpnet.Sequential:
    layers: list[Layer] = [Dense(8, "relu", input_shape=(4,))]
    if dropout:
        layers.append(Dropout(0.5))
    layers.append(Dense(3, "softmax"))
    model = xpnet.Sequential(layers, seed=3)
    model.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", backend="numpy")
    return model


def _xy(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def test_split_validation_keeps_sample_weights_for_validation_but_not_class_weights() -> None:
    x, y = _xy(10)
    w = np.arange(10, dtype=np.float32)
    kept = data.split_validation(data.FitData(x, y, w), 0.3, split_weights=True)
    assert kept.x.shape == (7, 4) and kept.val is not None and kept.val[0].shape == (3, 4)
    np.testing.assert_array_equal(kept.w, w[:7])
    np.testing.assert_array_equal(kept.val[2], w[7:])
    dropped = data.split_validation(data.FitData(x, y, w), 0.3, split_weights=False)
    assert dropped.val is not None and dropped.val[2] is None
    np.testing.assert_array_equal(dropped.w, w[:7])


def test_split_validation_refuses_an_empty_side() -> None:
    x, y = _xy(3)
    with pytest.raises(ValueError, match=r"validation_split=0.9 leaves an empty training or validation set"):
        data.split_validation(data.FitData(x, y), 0.9, split_weights=True)


def test_fit_data_counts_every_array_it_would_upload() -> None:
    x, y = _xy(10)
    w = np.ones(10, np.float32)
    fd = data.FitData(x, y, w, (x[:2], y[:2], None))
    # x and validation x in float64 (8 bytes), y as int64 labels, w as float32
    assert fd.nbytes("float64") == 10 * 4 * 8 + 10 * 8 + 2 * 4 * 8 + 2 * 8 + 10 * 4


@pytest.mark.parametrize("limit", [None, 0])
def test_fit_data_on_device_uploads_validation_only_when_resident(limit: int | None) -> None:
    ops = get_backend("numpy")
    x, y = _xy(10)
    x = x.astype(np.float64)  # uploading as float32 makes a new array
    fd = data.FitData(x[:8], y[:8], None, (x[8:], y[8:], None))
    old = ops.max_resident_bytes
    ops.max_resident_bytes = limit
    try:
        batches, val = fd.on_device(ops, 4, Communicator(), "float32", None)
    finally:
        ops.max_resident_bytes = old
    assert batches.resident is (limit is None) and batches.steps == 2
    assert val is not None
    assert (val[0] is fd.val[0]) is (limit == 0)  # type: ignore[index]


def test_fit_makes_class_weights_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = data.sample_weights

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "sample_weights", counting)
    x, y = _xy()
    _model().fit(x, y, epochs=1, batch_size=5, validation_split=0.25, class_weight={0: 2.0}, verbose=0)
    assert len(calls) == 1


class _Counts(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def on_batch_end(self, batch: int, logs: Any = None) -> None:  # the older alias of on_train_batch_end
        self.seen.append(("end", batch))


class _Holds(HoldingCallback):
    def __init__(self) -> None:
        super().__init__()
        self.released = 0

    def release(self) -> None:
        self.released += 1


def test_callback_list_calls_batch_hooks_only_on_callbacks_that_override_them() -> None:
    quiet, counting, holding = Callback(), _Counts(), _Holds()
    cbs = CallbackList([quiet, counting, holding], ("on_train_batch_begin", "on_train_batch_end"))
    assert not cbs.wants("on_train_batch_begin") and cbs.wants("on_train_batch_end")
    cbs.batch("on_train_batch_end", 4, {})
    assert counting.seen == [("end", 4)]
    cbs.release()
    assert holding.released == 1


def test_begin_hooks_give_each_callback_its_own_logs_and_epoch_end_shares_them() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    class Writes(Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            logs["mine"] = 1.0

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs["added"] = 2.0

    class Reads(Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            seen.append(("begin", dict(logs)))

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seen.append(("end", dict(logs)))

    x, y = _xy()
    history = _model().fit(x, y, epochs=1, callbacks=[Writes(), Reads()], verbose=0)
    assert seen[0] == ("begin", {})
    assert seen[1][1]["added"] == 2.0 and "added" in history.history  # History ran first, saw it after


def test_a_failing_callback_still_frees_the_checkpoint_folder(tmp_path: Path) -> None:
    class Boom(Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            raise RuntimeError("boom")

    x, y = _xy()
    ckpt = Checkpoint(tmp_path / "run")
    with pytest.raises(RuntimeError, match="boom"):
        _model().fit(x, y, epochs=1, callbacks=[ckpt, Boom()], verbose=0)
    Checkpoint(tmp_path / "run").on_train_begin()  # the lock was let go: another writer may take it


def test_step_counted_asks_the_layers() -> None:
    model = _model(dropout=True)
    model.build((None, 4))
    counted = step_counted(model.layers)
    assert [type(layer) for layer in counted] == [Dropout]
    assert step_counters(model.layers) == {counted[0].name: 0}


def test_resume_of_a_finished_run_says_so_and_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _xy()
    model = _model(dropout=True)
    model.fit(x, y, epochs=2, batch_size=5, callbacks=[Checkpoint(tmp_path)], verbose=0)
    again = _model(dropout=True)
    history = again.fit(x, y, epochs=2, batch_size=5, resume_from=tmp_path, verbose=1)
    assert "is complete (2 of 2 epochs)" in capsys.readouterr().out
    assert history.epoch == [0, 1]
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_from_an_empty_folder_past_the_last_epoch_trains_nothing(tmp_path: Path) -> None:
    x, y = _xy()
    model = _model()
    before = model.get_weights()
    history = model.fit(x, y, epochs=1, initial_epoch=3, resume_from=tmp_path, verbose=0)
    assert history.epoch == [] and model.optimizer is not None and model.optimizer.iterations == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_resume_returns_whether_the_run_is_finished(tmp_path: Path) -> None:
    x, y = _xy()
    model = _model()
    model.fit(x, y, epochs=1, batch_size=5, callbacks=[Checkpoint(tmp_path)], verbose=0)
    fresh = _model()
    fresh.build((None, 4))
    fresh.train_state.start(0, 20, 5)
    assert resume(fresh, tmp_path, 4, 0, epochs=1) is True
    fresh.train_state.start(0, 20, 5)
    assert resume(fresh, tmp_path, 4, 0, epochs=3) is False and fresh.train_state.epoch == 1


def test_trainer_declares_no_model_structure() -> None:
    """The structure is the model class's (`protocol.ModelStructure`); Trainer neither stubs nor defaults it."""
    chain = Trainer.__mro__[:-1]  # Trainer and the classes it extends, one file each
    for cls in chain:
        for name in ("build", "install", "store", "built", "forward", "output_layers", "output_names", "check_inputs"):
            assert name not in vars(cls), (cls, name)
        assert cls.__module__.startswith("xpnet.training."), cls
    assert Trainer.__mro__[-1] is object  # the protocol is the type checker's, not a runtime base


def test_steps_per_epoch_on_arrays_refuses_validation_split_without_naming_a_generator() -> None:
    model = _model()
    x, y = _xy()
    with pytest.raises(ValueError, match="validation_split cannot go with steps_per_epoch on arrays") as err:
        model.fit(x, y, epochs=1, batch_size=5, steps_per_epoch=2, validation_split=0.2, verbose=0)
    assert "generator" not in str(err.value)
