"""The plan (xpnet/training/plan.py): every execution decision made once per compiled model, in words."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import Activation, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D, Sequential
from xpnet.backend import get_backend
from xpnet.training.plan import AS_WRITTEN, IN_PLACE, PREACTIVATION, RELU_AFTER_POOL

INPLACE = get_backend("numpy").runs_in_one_call("gemm_sub")  # NumPy's BLAS at hand: plain SGD goes inside backprop


def _model_a() -> Sequential:
    model = Sequential([Input((784,)), Dense(300, "relu"), Dense(100, "relu"), Dense(10, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


def _model_b() -> Sequential:
    model = Sequential([Input((784,)), Dense(128, "relu"), Dropout(0.2), Dense(10, "softmax")], seed=2)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


def _lenet() -> Sequential:
    model = Sequential(
        [
            Input((28, 28, 1)),
            Conv2D(6, 5, padding="same", activation="relu"),
            MaxPooling2D(),
            Conv2D(16, 5),
            Activation("relu"),
            MaxPooling2D(),
            Flatten(),
            Dense(120, "relu"),
            Dense(84, "relu"),
            Dense(10, "softmax"),
        ],
        seed=3,
    )
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


def test_model_a_updates_inside_backprop_fuses_softmax_and_predicts_transposed() -> None:
    plan = _model_a().plan
    assert plan.updates_in_backprop == INPLACE
    assert plan.fused == (True,)
    assert plan.relu_pairs == ()
    assert plan.train_forms == (AS_WRITTEN, AS_WRITTEN, PREACTIVATION)
    assert plan.predict_forms == (IN_PLACE, IN_PLACE, PREACTIVATION)
    assert plan.predict_route == "transposed small batches" and plan.logits_at_end
    assert plan.nan_check == "by output"
    assert not plan.captures
    text = plan.explain()
    if INPLACE:
        assert text.startswith(
            "weights updated inside backprop: plain SGD, one process, no penalty, every layer sink-only"
        )
    assert "softmax fused into the loss" in text
    assert "predict: transposed small batches" in text and "NaN check by output" in text
    assert 'step: replayed: recorded once, then run as a flat list of NumPy calls (with jit_compile="auto"' in text


def test_model_b_keeps_the_gradient_buffer_for_adam_and_skips_dropout_in_the_chain() -> None:
    plan = _model_b().plan
    assert plan.sink == "gradient buffer" and plan.sink_reason == "Adam"
    assert plan.fused == (True,)
    assert plan.train_forms == (AS_WRITTEN, AS_WRITTEN, PREACTIVATION)
    assert plan.predict_forms == (IN_PLACE, AS_WRITTEN, PREACTIVATION)  # Dropout has no in-place form
    assert plan.affine_chain is not None and plan.affine_chain[1] is None  # Dropout: the identity at inference
    assert plan.explain().startswith("gradients into the buffer, then the optimizer's update: Adam;")


def test_lenet_moves_each_relu_after_its_max_pool() -> None:
    plan = _lenet().plan
    assert plan.updates_in_backprop == INPLACE
    assert plan.relu_pairs == (("conv2d", "max_pooling2d"), ("activation", "max_pooling2d_1"))
    assert plan.train_forms[:5] == (PREACTIVATION, RELU_AFTER_POOL, AS_WRITTEN, PREACTIVATION, RELU_AFTER_POOL)
    assert plan.train_forms[-1] == PREACTIVATION
    assert plan.predict_route == "layer by layer" and plan.nan_check == "by input"  # Conv2D: not an affine chain
    assert "relu moved after the max pool: conv2d → max_pooling2d, activation → max_pooling2d_1" in plan.explain()


def test_the_plan_is_made_once_and_again_after_a_change() -> None:
    model = _model_a()
    plan = model.plan
    assert model.plan is plan  # nothing changed: the same object
    model.compile(xpnet.optimizers.Adam(), "sparse_categorical_crossentropy")
    adam = model.plan
    assert adam is not plan and adam.sink == "gradient buffer"
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.plan.updates_in_backprop == INPLACE
    model.layers[0].trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy")  # compile applies the flag: a new store, a new plan
    frozen = model.plan
    assert frozen.updates_in_backprop == INPLACE  # the other layers still hand their gradients to the sink
    model.layers[1].activation = xpnet.activations.get("tanh")
    assert model.plan is not frozen
    model.compile(xpnet.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    assert model.plan.sink_reason == "SGD with momentum"


def test_a_penalty_a_replaced_backward_and_a_shared_layer_keep_sgd_out_of_backprop() -> None:
    model = Sequential([Input((4,)), Dense(3, "relu", kernel_regularizer="l2"), Dense(2, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    assert model.plan.sink_reason == "plain SGD with a weight penalty"
    model = Sequential([Input((4,)), Dense(3, "relu"), Dense(2, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    layer = model.layers[0]
    layer.backward = layer.backward  # type: ignore[method-assign]
    assert not model.plan.updates_in_backprop and "compute their own gradients" in model.plan.sink_reason
    x = Input((4,))
    shared = Dense(4, "relu")
    out = Dense(2, "softmax")(shared(shared(x)))
    graph = xpnet.Model(x, out, seed=1)
    graph.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    assert graph.plan.sink_reason == "plain SGD, but a layer is called more than once"


def test_a_model_that_is_not_compiled_has_a_predict_only_plan() -> None:
    model = Sequential([Input((4,)), Dense(3, "relu"), Dense(2, "softmax")], seed=0)
    plan = model.plan
    assert plan.sink == "none" and plan.fused == (False,) and not plan.captures
    assert plan.explain().startswith("not compiled: predict only;")
    with pytest.raises(ValueError, match="not built yet"):
        _ = Sequential([Dense(3)]).plan


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_one_predict_equals_the_layers_as_written(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 12)).astype(np.float32)
    layers = [Dense(16, "relu"), Dropout(0.3), Dense(8, "tanh"), Dense(5, "softmax")]
    if kind == "sequential":
        model: xpnet.Model = Sequential([Input((12,)), *layers], seed=4)
    else:
        inp = Input((12,))
        h = inp
        for layer in layers:
            h = layer(h)
        model = xpnet.Model(inp, h, seed=4)
    got = model.predict(x, batch_size=37)
    h = model.ops.asarray(x)
    for layer in model.layers:  # each layer's own forward, in inference mode
        h = layer.forward(h, False)
    if model.ops.name == "numpy":
        np.testing.assert_array_equal(got, model.ops.to_numpy(h))
    else:  # CuPy's forward fuses bias + softmax in one kernel; predict applies softmax once to the logits
        np.testing.assert_allclose(got, model.ops.to_numpy(h), rtol=1e-6, atol=1e-7)
    transposed = kind == "sequential" and model.ops.name == "numpy"  # a chain, on the backend with that program
    assert model.plan.predict_route == ("transposed small batches" if transposed else "layer by layer")


def test_a_deep_copy_plans_for_its_own_layers() -> None:
    import copy

    model = _model_a()
    plan = model.plan
    twin = copy.deepcopy(model)
    assert twin.plan is not plan and twin.plan == plan  # the same decisions, for the copy's layers and store
    assert twin.plan.affine_chain[0].kernel is twin.layers[0].params["kernel"]


def test_dropout_says_whether_its_seed_is_the_models_and_clone_model_asks_it_beside_a_nested_model() -> None:
    model = Sequential([Input((4,)), Dense(3, "relu"), Dropout(0.2), Dense(2, "softmax")], seed=2)
    drop, dense = model.layers[1], model.layers[0]
    assert drop.seeded_by_model(drop.seed) and not drop.seeded_by_model(drop.seed + 1)
    assert not dense.seeded_by_model(0)
    assert xpnet.models.clone_model(model).layers[1].seed != drop.seed  # drawn again from the clone's seed
    user = Dropout(0.2, seed=7)
    user.take_model_seed(3)
    assert user.seed == 7  # the user's seed stays
    inner = Sequential([Input((4,)), Dense(3, "relu")], seed=1)
    nested = Sequential([inner, Dropout(0.2), Dense(2, "softmax")], seed=2)
    assert isinstance(xpnet.models.clone_model(nested).layers[0], Sequential)  # a model among the layers: no error


def test_a_function_activation_at_the_end_is_not_taken_for_a_builtin() -> None:
    """A row-mixing function activation at the output: predict's transposed route must not apply it
    once over all rows at the end as it may a built-in (builtin_name said "activation" for it)."""
    from xpnet import ops

    def centre(x: np.ndarray) -> np.ndarray:
        return x - ops.mean(x, axis=0)

    model = Sequential([Input((6,)), Dense(5, activation="relu"), Dense(3, activation=centre)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    expected = np.concatenate([model(x[i : i + 8]) for i in range(0, 40, 8)])
    np.testing.assert_allclose(model.predict(x, batch_size=8, verbose=0), expected, rtol=1e-6, atol=1e-6)
    assert "at the end" not in model.plan.explain()


def test_a_method_replaced_on_a_nested_models_layer_after_predict_keeps_sgd_out_of_backprop() -> None:
    """The plan made by predict must not outlive a step method replaced on a layer of a nested model: a
    layer that writes its own gradients needs the buffer, or the optimizer never applies them."""
    inner = Sequential([Input((4,)), Dense(3, "relu")], seed=1)
    model = Sequential([inner, Dense(2, "softmax")], seed=2)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    model.predict(x)  # the plan is made here
    layer = inner.layers[0]
    written = layer.backward

    def backward(dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        dx = written(dy, need_input_grad)
        layer.grads["kernel"][...] = 1.0  # the layer's own gradient (it already carries the learning rate)
        return dx

    layer.backward = backward  # type: ignore[method-assign]
    before = layer.get_weights()[0]
    model.fit(x, np.arange(32) % 2, batch_size=32, epochs=1, verbose=0)
    assert not model.plan.updates_in_backprop and "compute their own gradients" in model.plan.sink_reason
    np.testing.assert_allclose(before - layer.get_weights()[0], 1.0, rtol=1e-6)


def test_predict_route_is_transposed_only_where_the_backend_has_that_program(backend: str) -> None:
    """explain() names the transposed route only where the backend runs it, with its condition."""
    model = Sequential([Input((20,)), Dense(30, "relu"), Dense(5, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", backend=backend)
    x = np.random.default_rng(0).standard_normal((2000, 20)).astype(np.float32)
    ran = model.plan.batch_logits(model.ops, 2000, 32) is not None
    text = model.plan.explain()
    assert ("predict: transposed small batches" in text) == ran
    assert model.plan.predict_route == ("transposed small batches" if ran else "layer by layer")
    if ran:
        assert "at most 256 rows" in text  # the batches it takes; larger ones run layer by layer
    assert model.predict(x, batch_size=32).shape == (2000, 5)


def test_predict_route_is_layer_by_layer_for_a_hidden_activation_that_mixes_a_row() -> None:
    model = Sequential([Input((20,)), Dense(30, "softmax"), Dense(5, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    assert model.plan.batch_logits(model.ops, 2000, 32) is None  # NumPy's program takes elementwise ones only
    assert model.plan.predict_route == "layer by layer" and "predict: layer by layer" in model.plan.explain()


def test_an_optimizer_changed_after_predict_makes_the_plan_again() -> None:
    """The plan predict made must not outlive a change to the optimizer the sink depends on: an update
    replaced on the instance, momentum set, a schedule given (not checked for capture)."""
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = np.arange(64) % 2
    model = Sequential([Input((4,)), Dense(3, "relu"), Dense(2, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    model.predict(x)  # the plan is made here
    opt = model.optimizer
    calls: list[int] = []
    rule = opt.update

    def update(params: np.ndarray, grads: np.ndarray, scaled: bool) -> None:
        calls.append(1)
        rule(params, grads, scaled)

    opt.update = update  # type: ignore[method-assign]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert len(calls) == 2 and not model.plan.updates_in_backprop
    del opt.update
    assert model.plan.updates_in_backprop == INPLACE
    opt.momentum = 0.5
    assert model.plan.sink_reason == "SGD with momentum"
    opt.momentum = 0.0
    assert model.plan.updates_in_backprop == INPLACE
    plan = model.plan
    opt.learning_rate = xpnet.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert model.plan is not plan


def test_a_recompile_with_other_metrics_makes_the_plan_again(backend: str) -> None:
    """Same optimizer, loss and communicator, another metric: the capture decision (a metric not checked
    for capture keeps the step eager on CuPy) is made again, and agrees with the step program."""
    from xpnet.training.distributed import Communicator

    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    model = Sequential([Input((4,)), Dense(3, "relu"), Dense(2, "softmax")], seed=0)
    comm, opt = Communicator(), xpnet.optimizers.SGD(0.01)
    loss = xpnet.losses.get("sparse_categorical_crossentropy")
    model.compile(opt, loss, metrics=["accuracy"], backend=backend, distribute=comm)
    model.predict(x)
    plan = model.plan

    def first_column(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        return y_pred[:, 0]

    model.compile(opt, loss, metrics=[first_column], distribute=comm)
    assert model.plan is not plan
    assert model.plan.captures == model.step_program.captures
    if model.ops.name == "cupy":  # captured with accuracy, eager with a metric not checked for capture
        assert plan.captures and "first_column" in model.plan.capture_reason


@pytest.mark.parametrize("jit", [True, "auto"])
def test_plan_explain_says_the_numpy_step_is_replayed_under_true_and_auto(jit: bool | str) -> None:
    # the plan's "step:" sentence and the step program agree (it said "CUDA graphs are a CuPy feature"
    # while every step after the second was replayed)
    model = xpnet.Sequential([Dense(16, "relu", input_shape=(8,)), Dense(3, "softmax")], seed=1)
    model.compile("adam", "sparse_categorical_crossentropy", backend="numpy", jit_compile=jit)
    rng = np.random.default_rng(0)
    model.fit(rng.random((40, 8), dtype=np.float32), rng.integers(0, 3, 40), batch_size=8, epochs=1, verbose=0)
    step = model.plan.explain().split("step: ")[1]
    assert not model.plan.captures
    assert model.step_program.replayed > 0
    assert step.startswith("replayed: "), step
    # "auto" says it replays the steps small enough for it to pay (this one: 8 rows of 176 multiply-adds)
    assert ("small enough" in step) is (jit == "auto"), step
