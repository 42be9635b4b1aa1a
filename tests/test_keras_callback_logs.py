"""Callbacks get what Keras gives them (written from keras.io's "Writing your own callbacks" guide):
logs dicts in every hook, per-batch loss and metrics, evaluate/predict hooks, and ModelCheckpoint
saving by step into a folder that does not exist yet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import BatchLogs, Callback, LambdaCallback, ModelCheckpoint


def _data(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def _model(backend: str = "numpy") -> xpnet.Sequential:
    model = xpnet.Sequential([xpnet.Dense(8, "relu", input_shape=(4,)), xpnet.Dense(3, "softmax")], seed=1)
    model.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    return model


class _LossPrinter(Callback):
    """The guide's example: print the loss at the end of every training batch."""

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        print(f"Up to batch {batch}, the average loss is {logs['loss']:7.4f}.")


def test_a_callback_printing_the_loss_of_every_batch(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data()
    hist = _model().fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[_LossPrinter()])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 4  # 4 batches of 100 samples per epoch
    assert lines[0].startswith("Up to batch 0, the average loss is")
    # batch logs are the running mean over the epoch so far: the last batch's is the epoch's loss
    last_of_epoch = [float(lines[k].split()[-1].rstrip(".")) for k in (3, 7)]
    assert last_of_epoch == pytest.approx([round(v, 4) for v in hist.history["loss"]], abs=1e-4)


def test_every_hook_gets_a_dict_never_none() -> None:
    x, y = _data()
    seen: dict[str, list[Any]] = {}

    class Spy(Callback):
        pass

    spy = Spy()
    for hook in LambdaCallback._HOOKS:
        if hook in ("on_batch_begin", "on_batch_end"):
            continue
        if "batch" in hook or "epoch" in hook:
            setattr(spy, hook, lambda i, logs=None, h=hook: seen.setdefault(h, []).append(logs))
        else:
            setattr(spy, hook, lambda logs=None, h=hook: seen.setdefault(h, []).append(logs))
    model = _model()
    model.fit(x, y, batch_size=50, epochs=1, verbose=0, validation_data=(x[:20], y[:20]), callbacks=[spy])
    model.evaluate(x, y, verbose=0, callbacks=[spy])
    model.predict(x, callbacks=[spy])
    for hook in LambdaCallback._HOOKS:
        if hook in ("on_batch_begin", "on_batch_end"):
            continue
        assert hook in seen, hook
        assert all(isinstance(logs, dict) for logs in seen[hook]), hook
    assert set(seen["on_train_batch_end"][0]) == {"loss", "accuracy"}
    assert set(seen["on_epoch_end"][0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert seen["on_train_end"][0]["loss"] == seen["on_epoch_end"][0]["loss"]
    assert len(seen["on_test_begin"]) == 2  # fit's validation pass, then evaluate


def test_batch_logs_are_read_only_when_a_callback_looks() -> None:
    x, y = _data()
    model = _model()
    reads = {"n": 0}
    real = model._read

    def counting(*args: Any) -> dict[str, float]:
        reads["n"] += 1
        return real(*args)

    model._read = counting  # type: ignore[method-assign]
    steps: list[int] = []
    model.fit(
        x,
        y,
        batch_size=10,
        epochs=2,
        verbose=0,
        callbacks=[LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))],
    )
    assert len(steps) == 20 and reads["n"] == 2  # one read per epoch end, none per batch
    reads["n"] = 0
    model.fit(
        x,
        y,
        batch_size=10,
        epochs=2,
        verbose=0,
        callbacks=[LambdaCallback(on_train_batch_end=lambda b, logs: logs["loss"])],
    )
    assert reads["n"] == 2 + 20


def test_batch_logs_behave_as_a_dict() -> None:
    logs = BatchLogs(lambda: {"loss": 0.5, "accuracy": 0.25})
    assert "{loss:.2f}".format(**logs) == "0.50"
    assert dict(logs) == {"loss": 0.5, "accuracy": 0.25} and sorted(logs) == ["accuracy", "loss"]
    logs["extra"] = 1.0
    assert len(logs) == 3 and logs.get("extra") == 1.0


def test_the_legacy_on_batch_end_name_is_called_for_training_batches() -> None:
    x, y = _data()
    got: list[float] = []

    class Old(Callback):
        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            got.append(logs["loss"])

    _model().fit(x, y, batch_size=25, epochs=1, verbose=0, callbacks=[Old()])
    assert len(got) == 4 and all(math.isfinite(v) for v in got)


def test_evaluate_and_predict_run_their_hooks() -> None:
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, verbose=0)
    test_logs: list[dict[str, float]] = []
    outputs: list[np.ndarray] = []
    cb = LambdaCallback(
        on_test_batch_end=lambda b, logs: test_logs.append(dict(logs)),
        on_predict_batch_end=lambda b, logs: outputs.append(logs["outputs"]),
    )
    result = model.evaluate(x, y, batch_size=30, verbose=0, return_dict=True, callbacks=[cb])
    assert len(test_logs) == 4
    assert test_logs[-1] == pytest.approx(result)
    pred = model.predict(x, batch_size=30, callbacks=[cb])
    assert [o.shape for o in outputs] == [(30, 3), (30, 3), (30, 3), (10, 3)]
    np.testing.assert_allclose(pred, model.predict(x), rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(outputs), pred)


def test_test_batch_logs_hold_the_weight_penalty_as_the_final_loss_does() -> None:
    # Keras's evaluate loss includes the regularization penalty at every batch; the batch logs
    # left it out while on_test_end's logs (and the result) had it
    x, y = _data()
    model = xpnet.Sequential(
        [
            xpnet.Dense(8, "relu", input_shape=(4,), kernel_regularizer=xpnet.regularizers.L2(0.5)),
            xpnet.Dense(3, "softmax"),
        ],
        seed=1,
    )
    model.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    logs: list[dict[str, float]] = []
    cb = LambdaCallback(on_test_batch_end=lambda b, batch_logs: logs.append(dict(batch_logs)))
    result = model.evaluate(x, y, batch_size=30, verbose=0, return_dict=True, callbacks=[cb])
    assert logs[-1] == pytest.approx(result)
    streamed = model.evaluate(((x[i : i + 30], y[i : i + 30]) for i in range(0, 100, 30)), verbose=0, callbacks=[cb])
    assert logs[-1]["loss"] == pytest.approx(streamed[0])


def test_model_checkpoint_by_step_names_the_file_by_the_loss_and_makes_its_folder(tmp_path: Path) -> None:
    x, y = _data()
    folder = tmp_path / "runs" / "not-there-yet"
    model = _model()
    ckpt = ModelCheckpoint(str(folder / "model-loss={loss:.2f}.keras"), save_freq=3)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[ckpt])
    files = sorted(folder.glob("model-loss=*.keras"))
    assert 1 <= len(files) <= 3  # 10 steps: saves after steps 3, 6, 9 (names may coincide)
    loss = float(files[0].name[len("model-loss=") : -len(".keras")])
    assert 0.0 < loss < 5.0
    restored = xpnet.models.load_model(files[-1])
    assert restored.predict(x[:3]).shape == (3, 3)


def test_model_checkpoint_by_step_keeps_the_best_by_the_running_batch_loss(tmp_path: Path) -> None:
    # Keras: with an integer save_freq, save_best_only compares `monitor` in the batch logs
    x, y = _data()
    seen: list[float] = []
    record = LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["loss"]) if (b + 1) % 2 == 0 else None)
    ckpt = ModelCheckpoint(
        str(tmp_path / "best.weights.npz"), monitor="loss", save_best_only=True, save_weights_only=True, save_freq=2
    )
    model = _model()
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, shuffle=False, callbacks=[record, ckpt])
    assert len(seen) == 10 and ckpt.best == min(seen)
    assert (tmp_path / "best.weights.npz").is_file()


def test_model_checkpoint_each_epoch_into_a_new_folder(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "a" / "b" / "w-{epoch:02d}.weights.npz"
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(path), save_weights_only=True)])
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["w-01.weights.npz", "w-02.weights.npz"]


@pytest.mark.gpu
def test_batch_hooks_on_cupy_read_the_device_only_when_logs_are_used() -> None:
    from xpnet.backend import _cupy_problem

    if _cupy_problem(0):
        pytest.skip("needs the CuPy backend (a GPU or the gpu-sim stand-in)")
    gpusim = pytest.importorskip("gpusim")
    x, y = _data()
    model = _model("cupy")
    model.fit(x, y, batch_size=10, epochs=1, verbose=0)
    quiet = LambdaCallback(on_train_batch_end=lambda b, logs: None)
    with gpusim.counting() as quiet_count:
        model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[quiet])
    loud = LambdaCallback(on_train_batch_end=lambda b, logs: logs["loss"])
    with gpusim.counting() as loud_count:
        model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[loud])
    assert loud_count.syncs >= quiet_count.syncs + 10
