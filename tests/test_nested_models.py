"""A model used as a layer, and layers shared between models, with their weights shared as in Keras
(xpnet/sharing.py): Sequential([model, Softmax()]), model(symbolic_input), feature extraction from a
built Sequential's layer outputs, and transfer learning over a trained model's layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Dropout, Flatten, Input, Model, Sequential, Softmax
from xpnet.callbacks import Callback
from xpnet.gradcheck import check_gradients


def _data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 3)).astype(np.float32)
    return x, (x.reshape(n, -1)[:, :3].argmax(axis=1)).astype(np.int64)


def _logits_model(seed: int = 1, dtype: str = "float32") -> Sequential:
    return Sequential(
        [Flatten(input_shape=(2, 3)), Dense(8, "relu", name="hidden"), Dense(3, name="logits")], seed=seed, dtype=dtype
    )


def _softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_probability_model_is_the_softmax_of_the_inner_models_logits(backend: str) -> None:
    x, _ = _data()
    model = _logits_model().to_backend(backend)
    probability_model = Sequential([model, Softmax()]).to_backend(backend)
    assert probability_model.layers[0] is model and probability_model.input_shape == (None, 2, 3)
    assert probability_model.output_shape == (None, 3) and probability_model.count_params() == 6 * 8 + 8 + 27
    p = probability_model.predict(x)
    np.testing.assert_allclose(p, _softmax(model.predict(x).astype(np.float64)), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert p.dtype == np.float32


def test_training_either_model_changes_what_the_other_predicts() -> None:
    x, y = _data()
    model = _logits_model()
    outer = Sequential([model, Softmax()])
    outer.compile(xpnet.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    before = model.predict(x)
    outer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = model.predict(x)  # the inner model sees the weights the outer fit trained
    assert np.abs(after - before).max() > 1e-2
    np.testing.assert_allclose(outer.predict(x), _softmax(after.astype(np.float64)), rtol=2e-6, atol=1e-7)
    assert outer.layers[0].layers[1].get_weights()[0] is not None

    model.compile(xpnet.optimizers.SGD(0.5), xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    again = model.predict(x)
    assert np.abs(again - after).max() > 1e-2
    np.testing.assert_allclose(outer.predict(x), _softmax(again.astype(np.float64)), rtol=2e-6, atol=1e-7)
    for u, v in zip(outer.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_set_weights_on_either_side_is_seen_by_the_other() -> None:
    x, _ = _data(6)
    model = _logits_model()
    outer = Sequential([model, Softmax()])
    outer.predict(x)  # the outer model holds the layers now
    zero = [np.zeros_like(w) for w in model.get_weights()]
    model.set_weights(zero)
    np.testing.assert_allclose(outer.predict(x), 1 / 3, rtol=1e-6)
    w = [np.full_like(v, 0.1) for v in outer.get_weights()]
    outer.set_weights(w)
    np.testing.assert_allclose(model.layers[2].get_weights()[1], 0.1)
    model.layers[1].set_weights([np.ones((6, 8)), np.zeros(8)])  # a layer's own set_weights: where it is held
    np.testing.assert_allclose(outer.get_weights()[0], 1.0)


def test_the_outer_models_gradients_pass_a_float64_check_and_match_the_flat_model() -> None:
    x, y = _data(8)
    inner = _logits_model(dtype="float64")
    outer = Sequential([Input((2, 3)), Flatten(), Dense(6, "tanh", name="pre"), Dense(6, name="mid")], dtype="float64")
    a = Input((2, 3))
    h = xpnet.layers.Reshape((2, 3))(outer(a))
    net = Model(a, Softmax()(inner(h)), dtype="float64")
    net.compile("sgd", "sparse_categorical_crossentropy")
    result = check_gradients(net, x.astype(np.float64), y)
    assert result.passed, result
    flat = Sequential(  # the same layers, not nested
        [
            Input((2, 3)),
            Flatten(),
            Dense(6, "tanh"),
            Dense(6),
            xpnet.layers.Reshape((2, 3)),
            Flatten(),
            Dense(8, "relu"),
            Dense(3),
            Softmax(),
        ],
        dtype="float64",
    )
    flat.set_weights(net.get_weights())
    flat.compile("sgd", "sparse_categorical_crossentropy")
    _, g_net = net.compute_gradients(x.astype(np.float64), y)
    _, g_flat = flat.compute_gradients(x.astype(np.float64), y)
    for u, v in zip(g_net, g_flat, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-15)


def test_a_frozen_inner_model_keeps_its_weights_while_the_head_trains() -> None:
    x, y = _data()
    base = _logits_model()
    base.trainable = False  # Keras's fine-tuning pattern: freeze, put a head on, compile, fit
    head = Dense(3, name="head")
    outer = Sequential([base, head])
    outer.compile("adam", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    lines: list[str] = []
    outer.summary(print_fn=lines.append)
    assert " Trainable params: 12 (48.00 B)" in lines and " Non-trainable params: 83 (332.00 B)" in lines
    frozen = base.get_weights()
    head_before = head.get_weights()[0]
    outer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for u, v in zip(base.get_weights(), frozen, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(head.get_weights()[0], head_before)
    base.trainable = True  # unfreeze: the next compile applies it
    outer.compile("adam", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    outer.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert not np.array_equal(base.get_weights()[0], frozen[0])


def test_outer_model_saves_loads_and_summarizes_with_the_inner_model_as_one_layer(tmp_path: Path) -> None:
    x, y = _data()
    model = _logits_model()
    outer = Sequential([model, Softmax()], name="probabilities")
    outer.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    outer.fit(x, y, epochs=1, verbose=0)
    lines: list[str] = []
    outer.summary(print_fn=lines.append)
    assert lines[0] == 'Model: "probabilities"'
    assert any("sequential (Sequential)" in ln and "(None, 3)" in ln and "83" in ln for ln in lines)
    assert any("softmax (Softmax)" in ln for ln in lines)
    cfg = outer.get_config()
    assert [e["class_name"] for e in cfg["layers"]] == ["InputLayer", "Sequential", "Softmax"]
    path = tmp_path / "outer.keras"
    outer.save(path)
    loaded = xpnet.models.load_model(path)
    assert isinstance(loaded.layers[0], Sequential) and [lyr.name for lyr in loaded.layers[0].layers] == [
        "flatten",
        "hidden",
        "logits",
    ]
    np.testing.assert_allclose(loaded.predict(x), outer.predict(x), rtol=1e-6)
    np.testing.assert_allclose(loaded.layers[0].predict(x), model.predict(x), rtol=1e-6)
    h1 = loaded.fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]
    h2 = outer.fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(h1, h2, rtol=1e-5)  # the optimizer state came along
    again = xpnet.models.model_from_json(outer.to_json())
    assert type(again.layers[0]).__name__ == "Sequential" and again.count_params() == outer.count_params()
    npz = tmp_path / "w.npz"
    outer.save_weights(npz)
    again.load_weights(npz)
    np.testing.assert_allclose(again.predict(x), outer.predict(x), rtol=1e-6)
    pytest.importorskip("h5py")
    outer.save_weights(tmp_path / "w.weights.h5")  # Keras's layout: the inner model's layers under its group
    third = xpnet.models.model_from_json(outer.to_json())
    third.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(third.predict(x), outer.predict(x), rtol=1e-6)


def test_a_functional_model_over_a_called_model_trains_and_shares() -> None:
    x, y = _data()
    model1 = _logits_model()
    inputs = Input((2, 3))
    outputs = Softmax()(model1(inputs))
    model2 = Model(inputs, outputs)
    assert [type(lyr).__name__ for lyr in model2.layers] == ["Sequential", "Softmax"]
    np.testing.assert_allclose(model2.predict(x), _softmax(model1.predict(x).astype(np.float64)), rtol=2e-6)
    model2.compile(xpnet.optimizers.SGD(0.3), "sparse_categorical_crossentropy")
    model2.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(model2.predict(x), _softmax(model1.predict(x).astype(np.float64)), rtol=2e-6)
    loaded = Model.from_config(model2.get_config())
    assert type(loaded.layers[0]).__name__ == "Sequential"
    lines: list[str] = []
    model2.summary(print_fn=lines.append)
    assert any("sequential (Sequential)" in ln and "input_layer[0][0]" in ln for ln in lines)


def test_feature_extraction_from_a_built_sequentials_layer_outputs() -> None:
    x, _ = _data(5)
    model = _logits_model()
    extractor = Model(inputs=model.inputs, outputs=[layer.output for layer in model.layers])
    flat, hidden, logits = extractor.predict(x)
    w, b = model.layers[1].get_weights()
    np.testing.assert_allclose(flat, x.reshape(5, 6))
    np.testing.assert_allclose(hidden, np.maximum(x.reshape(5, 6) @ w + b, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, model.predict(x), rtol=1e-5, atol=1e-6)
    assert model.layers[1].input is model.layers[0].output and model.layers[0].input is model.inputs[0]
    model.add(Dense(2, name="extra"))  # a rebuilt Sequential's layers report the new graph's tensors
    assert model.layers[1].input is model.layers[0].output and model.layers[3].output.shape == (None, 2)
    with pytest.raises(AttributeError, match="layer 'fresh' has no output yet"):
        _ = Dense(2, name="fresh").output


def test_transfer_learning_over_pretrained_layers_shares_their_weights() -> None:
    x, y = _data()
    pretrained = _logits_model()
    pretrained.compile("adam", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    pretrained.fit(x, y, epochs=2, verbose=0)
    trained = pretrained.layers[1].get_weights()
    new = Sequential(pretrained.layers[:-1] + [Dense(5, name="new_head")])  # noqa: RUF005 (the tutorial's words)
    assert [lyr.name for lyr in new.layers] == ["flatten", "hidden", "new_head"]
    for u, v in zip(new.layers[1].get_weights(), trained, strict=True):
        np.testing.assert_array_equal(u, v)  # the new model starts from the trained weights
    new.compile(xpnet.optimizers.SGD(0.5), xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    new.fit(x, (y + 1) % 5, epochs=1, verbose=0)
    moved = pretrained.layers[1].get_weights()[0]
    assert not np.array_equal(moved, trained[0])  # Keras: one layer, one set of weights
    np.testing.assert_array_equal(pretrained.get_weights()[0], moved)


def test_a_callback_that_runs_the_inner_model_during_fit_does_not_change_the_training() -> None:
    x, y = _data(64)

    class Peek(Callback):
        def __init__(self, inner: Sequential) -> None:
            super().__init__()
            self.inner = inner

        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            self.inner.predict(x[:2])  # takes the layers back for a moment

    runs = []
    for peek in (False, True):
        model = _logits_model(seed=3)
        outer = Sequential([model, Dropout(0.2, seed=4), Softmax()], seed=5)
        outer.compile("adam", "sparse_categorical_crossentropy")
        outer.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False, callbacks=[Peek(model)] if peek else [])
        runs.append(outer.get_weights())
    for u, v in zip(*runs, strict=True):
        np.testing.assert_array_equal(u, v)


def test_dropout_inside_a_nested_model_draws_new_masks_each_step() -> None:
    x, y = _data(32)
    inner = Sequential([Input((2, 3)), Flatten(), Dropout(0.5, seed=1), Dense(3)], seed=2)
    outer = Sequential([inner, Softmax()])
    outer.compile("sgd", "sparse_categorical_crossentropy")
    drop = inner.layers[1]
    outer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert drop.iterations == 4


def test_nesting_mistakes_raise_errors_that_name_the_models_and_layers() -> None:
    model = _logits_model()
    a = Input((2, 3))
    with pytest.raises(ValueError, match="model 'sequential' is called more than once in one model"):
        Model(a, xpnet.layers.Add()([model(a), model(a)]))
    h = Dense(8, name="h8")(Flatten(name="fl")(a))
    with pytest.raises(ValueError, match=r"layer 'logits' is used (directly and inside|inside model 'sequential' and)"):
        Model(a, xpnet.layers.Add()([model(a), model.layers[2](h)]))
    with pytest.raises(ValueError, match=r"model 'sequential' has layers named \['hidden'\]"):
        Sequential([Input((2, 3)), Flatten(name="f"), Dense(6, name="hidden"), xpnet.layers.Reshape((2, 3)), model])
    with pytest.raises(ValueError, match=r"trace follows layers, and \['sequential'\] are models used as layers"):
        Sequential([model, Softmax()]).trace(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="a model cannot be a layer of itself"):
        model.add(model)
    with pytest.raises(TypeError, match=r"Sequential\.add expects a Layer or a Model, received int"):
        Sequential([3])  # type: ignore[list-item]


def test_a_nested_models_fit_reads_the_device_no_more_than_a_flat_models() -> None:
    """No hand-over and no host read inside the step: the syncs per fit do not grow with the steps."""
    pytest.importorskip("array_api_strict")
    from xpnet import ELU, PReLU

    x, y = _data(256)
    counts = {}
    for bs in (128, 8):
        inner = Sequential([Input((2, 3)), Flatten(), Dense(8), PReLU(), Dense(8), ELU(), Dense(3)], seed=0)
        inner.to_backend("strict")
        outer = Sequential([inner, Softmax()])
        outer.compile("adam", "sparse_categorical_crossentropy", backend="strict")
        ops = outer.ops
        assert ops is not None
        before = ops.syncs
        outer.fit(x, y, batch_size=bs, epochs=2, verbose=0)
        counts[bs] = ops.syncs - before
    assert counts[128] == counts[8] <= 2


def test_models_on_two_backends_share_a_layer_through_the_host() -> None:
    pytest.importorskip("array_api_strict")
    x, y = _data()
    model = _logits_model().to_backend("numpy")
    outer = Sequential([model, Softmax()])
    outer.compile(xpnet.optimizers.SGD(0.5), "sparse_categorical_crossentropy", backend="strict")
    before = model.predict(x)
    outer.fit(x, y, epochs=1, verbose=0)
    after = model.predict(x)  # numpy takes the trained weights back from the strict device
    assert model.ops is not None and model.ops.name == "numpy" and np.abs(after - before).max() > 1e-2
    np.testing.assert_allclose(outer.predict(x), _softmax(after.astype(np.float64)), rtol=2e-6, atol=1e-7)


def test_an_unbuilt_sequential_called_in_a_functional_model_is_built_and_saved(tmp_path: Path) -> None:
    x, y = _data(16)
    inner = Sequential([Flatten(), Dense(4, "relu"), Dense(3)])
    a = Input((2, 3))
    model = Model(a, Softmax()(inner(a)))
    assert inner.built and inner.input_shape == (None, 2, 3) and model.count_params() == 6 * 4 + 4 + 15
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "f.keras")
    loaded = xpnet.models.load_model(tmp_path / "f.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Sequential", "Softmax"]
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)
    h1 = loaded.fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]
    h2 = model.fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(h1, h2, rtol=1e-5)


def test_a_base_model_called_with_training_false_stays_in_inference_mode_while_the_head_trains() -> None:
    x, y = _data(32)
    base = Sequential(
        [Input((2, 3)), Flatten(), Dense(6), xpnet.BatchNormalization(), Dropout(0.5, seed=3)], name="base"
    )
    base.trainable = False
    inputs = Input((2, 3))
    features = base(inputs, training=False)  # Keras's fine-tuning recipe
    outputs = Dense(3)(features)
    model = Model(inputs, outputs)
    model.compile("adam", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    moving = base.layers[2].get_weights()
    drop = base.layers[3]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert drop.iterations == 0  # no dropout mask was drawn
    for u, v in zip(base.layers[2].get_weights(), moving, strict=True):
        np.testing.assert_array_equal(u, v)
    cfg = model.get_config()
    assert cfg["layers"][1]["inbound_nodes"][0]["kwargs"] == {"training": False}
    again = Model.from_config(cfg)
    assert again.nodes[0].training is False
    base.trainable = True  # Keras would fine-tune through the inference-mode call; xpnet says it cannot
    model.compile("adam", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="model 'base' was called with training=False, and training needs"):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="training must be None, True or False, received 'no'"):
        base(inputs, training="no")  # type: ignore[arg-type]


class _ReluBlock(xpnet.layers.Layer):
    """A custom (autodiff) layer over a Dense it is handed: relu(dense(x))."""

    def __init__(self, dense: Dense, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x: object) -> object:
        return xpnet.ops.relu(self.dense(x))


def test_a_layer_shared_by_a_model_and_a_custom_layers_sublayer_keeps_one_set_of_weights() -> None:
    """Keras: `Sequential([d])` and `Sequential([Block(d)])` hold the same variables, whichever trained last."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 3))
    d = Dense(3, name="shared")
    direct = Sequential([Input((4,)), d], dtype="float64", seed=1)
    direct.compile(optimizer="sgd", loss="mse")
    direct.fit(x, y, epochs=2, verbose=0)
    trained = [w.copy() for w in d.get_weights()]
    blocked = Sequential([Input((4,)), _ReluBlock(d)], dtype="float64", seed=2)
    for a, b in zip(blocked.get_weights(), trained, strict=True):  # starts from d's weights, not fresh ones
        np.testing.assert_array_equal(a, b)
    # the block model trains as the plain relu Dense model from the same weights
    plain = Sequential([Input((4,)), Dense(3, "relu")], dtype="float64")
    plain.set_weights(trained)
    for m in (blocked, plain):
        m.compile(optimizer="sgd", loss="mse")
        m.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    for a, b, c in zip(blocked.get_weights(), plain.get_weights(), direct.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(c, a)  # the direct model sees the block model's training
    # and back: the direct model trains from there, and the block model then sees that
    linear = Sequential([Input((4,)), Dense(3)], dtype="float64")
    linear.set_weights(plain.get_weights())
    for m in (direct, linear):
        m.compile(optimizer="sgd", loss="mse")
        m.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b, c in zip(direct.get_weights(), linear.get_weights(), blocked.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(c, a)
    w, b = d.get_weights()
    np.testing.assert_allclose(blocked.predict(x, verbose=0), np.maximum(x @ w + b, 0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("change", ["add", "pop"])
def test_changing_the_layers_of_a_nested_model_is_not_silently_left_out_of_the_outer_model(change: str) -> None:
    """After `inner.add(...)` the outer model's buffer lacks the new layer's weights (its fit would leave them
    untrained, its get_weights miss them), after `inner.pop()` it keeps the dropped ones: it says so instead."""
    x, y = _data()
    inner = _logits_model()
    outer = Sequential([inner, Softmax()])
    outer.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    outer.fit(x, y, epochs=1, verbose=0)
    if change == "add":
        inner.add(Dense(3, name="extra"))
    else:
        inner.pop()
    for run in (lambda: outer.predict(x, verbose=0), lambda: outer.fit(x, y, epochs=1, verbose=0)):
        with pytest.raises(ValueError, match=r"'sequential' changed its layers after .* make the outer model again"):
            run()
    # a new outer model over the changed inner model trains all of its weights
    again = Sequential([inner, Softmax()])
    again.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in inner.get_weights()]
    again.fit(x, y, epochs=1, verbose=0)
    assert len(again.get_weights()) == len(before)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(inner.get_weights(), before, strict=True))


def test_a_nested_model_as_the_output_layer_trains_like_the_flat_model(backend: str) -> None:
    # the fused softmax + cross-entropy needs the output layer's own φ: a nested model as the output keeps
    # its softmax inside, and compile must not look for a layer's attributes on it
    x, y = _data()
    head = Sequential([Dense(3, activation="softmax", name="head")], name="inner", dtype="float64")
    nested = Sequential([Input((2, 3)), Flatten(), Dense(8, "relu", name="hidden"), head], seed=3, dtype="float64")
    flat = Sequential([Input((2, 3)), Flatten(), Dense(8, "relu"), Dense(3, activation="softmax")], dtype="float64")
    flat.set_weights(nested.get_weights())
    runs = []
    for model in (nested, flat):
        model.compile(
            xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend
        )
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
        runs.append((history["loss"], [np.asarray(xpnet.ops.convert_to_numpy(w)) for w in model.get_weights()]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-12)
    for u, v in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
