"""The model's parts: the `Graph` of layer calls, per-call state of shared layers, config, weights and loading."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Input, Model, Sequential
from xpnet.layers import Add, Concatenate
from xpnet.models import graph as graph_module
from xpnet.models import loading
from xpnet.models.config import copy_graph, functional_config, graph_from_config
from xpnet.models.graph import Graph, UniqueNames, call_view


def _residual() -> tuple[Any, Any, list[Any]]:
    x = Input((4,), name="x")
    first, second, head = Dense(3, "relu", name="first"), Dense(3, "relu", name="second"), Dense(2, name="head")
    h = first(x)
    y = head(Add(name="add")([h, second(h)]))
    return x, y, [first, second, head]


def test_a_graph_orders_the_calls_and_gives_each_tensor_a_slot() -> None:
    x, y, (first, _, _) = _residual()
    g = Graph.between(x, y)
    assert [node.layer.name for node in g.nodes] == ["first", "second", "add", "head"]
    assert g.slots[id(x)] == 0 and sorted(g.slots.values()) == [0, 1, 2, 3, 4]
    assert [(c.inputs, c.output) for c in g.program] == [((0,), 1), ((1,), 2), ((1, 2), 3), ((3,), 4)]
    # h feeds second and add; y is read once, as the output
    assert g.consumers[id(first.output)] == 2 and g.consumers[id(y)] == 1
    assert g.shared == set() and g.fusable_outputs() == [True]
    assert g.stop_at([True]) == frozenset({3}) and g.stop_at([False]) == frozenset()


def test_a_graph_marks_a_layer_called_twice_as_shared_and_never_fuses_its_output() -> None:
    a, b = Input((3,), name="a"), Input((3,), name="b")
    shared = Dense(3, name="enc")
    out = shared(Add()([shared(a), shared(b)]))
    g = Graph.between([a, b], out)
    assert g.shared == {id(shared)}
    assert [c.shared for c in g.program] == [True, True, False, True]
    assert g.fusable_outputs() == [False]  # the fused loss would need the layer's last call alone
    assert not g.single_input and g.single_output


def test_the_backward_plan_skips_calls_with_no_trained_weights_behind_them() -> None:
    x, y, (first, _, _) = _residual()
    model = Model(x, y, seed=0)
    steps = [call.node.layer.name for call, _, _ in model.graph.backward_plan(False)]
    assert steps == ["head", "add", "second", "first"]
    first.trainable = False
    model.compile("sgd", "mse")  # the store gives frozen weights no gradient views
    steps = [call.node.layer.name for call, _, _ in model.graph.backward_plan(False)]
    assert steps == ["head", "add", "second"]
    need_in = {call.node.layer.name: any_in for call, _, any_in in model.graph.backward_plan(False)}
    assert need_in == {"head": True, "add": True, "second": False}


def test_a_graph_copy_indexes_the_copied_tensors() -> None:
    x, y, _ = _residual()
    model = Model(x, y, seed=0)
    twin = copy.deepcopy(model)
    assert twin.graph is not model.graph and twin.inputs[0] is not model.inputs[0]
    assert twin.graph.slots[id(twin.inputs[0])] == 0 and id(model.inputs[0]) not in twin.graph.slots
    assert twin._slots is twin.graph.slots and twin._forward_program is twin.graph.program
    data = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(twin.predict(data), model.predict(data))


def test_a_graph_refuses_a_cycle_an_unconnected_input_and_an_input_as_output() -> None:
    x, y, _ = _residual()
    other = Input((4,), name="other")
    with pytest.raises(ValueError, match=r"'other'.* is not connected to any output"):
        Graph.between([x, other], y)
    with pytest.raises(ValueError, match="is an Input itself"):
        Graph.between(x, [y, x])
    with pytest.raises(TypeError, match=r"outputs must be symbolic tensors .* received float64"):
        Graph.between(x, np.zeros(3))
    a = Input((2,))
    t1 = Dense(2, name="c1")(a)
    t2 = Dense(2, name="c2")(t1)
    assert t1.node is not None
    t1.node.inputs = [t2]
    with pytest.raises(ValueError, match="cycle"):
        Graph.between(a, t2)


def test_a_subclassed_models_trace_must_return_layer_outputs() -> None:
    with pytest.raises(TypeError, match=r"Odd.call returned int when traced"):
        Graph.traced(lambda t: 3, "Odd", "odd", (None, 4))
    with pytest.raises(ValueError, match="'odd' is subclassed and its input shape is unknown"):
        Graph.traced(lambda t: t, "Odd", "odd", None)


def test_unique_names_number_each_base_after_the_names_in_use() -> None:
    names = UniqueNames(["dense", "dense_1", None])
    assert [names.fresh("dense"), names.fresh("dense"), names.fresh("add")] == ["dense_2", "dense_3", "add"]


def test_a_model_used_as_a_layer_checks_the_tensor_it_is_called_on() -> None:
    inner = Sequential([Input((4,)), Dense(2)], name="inner")
    with pytest.raises(ValueError, match=r"'inner' was built for input \(None, 4\) and cannot be called on"):
        inner(Input((3,)))
    with pytest.raises(TypeError, match="was called on 2 tensors"):
        graph_module.check_model_call("inner", inner.graph, [Input((4,)), Input((4,))])


def _shared_model(seed: int) -> tuple[Model, Dense]:
    a, b = Input((4,), name="a"), Input((4,), name="b")
    shared = Dense(3, "tanh", name="shared")
    out = Dense(2, "softmax", name="head")(Concatenate()([shared(a), shared(b)]))
    return Model([a, b], out, seed=seed), shared


def test_each_call_of_a_shared_layer_keeps_its_own_forward_state() -> None:
    model, shared = _shared_model(0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    rng = np.random.default_rng(1)
    xa, xb = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    with model.ops.activate():  # type: ignore[union-attr]
        model.forward_outputs([xa, xb], True, [False])
    calls = [c for c in model.graph.program if c.shared]
    # each call's state holds what that call's forward cached: its own input
    cached = [next(v for v in c.node.cache.values() if isinstance(v, np.ndarray) and v.shape == (6, 4)) for c in calls]
    np.testing.assert_array_equal(cached[0], xa)
    np.testing.assert_array_equal(cached[1], xb)
    # a view of the first call reads the first call's state, and leaves the layer as the last call left it
    before = dict(vars(shared))
    view = call_view(shared, calls[0].node.cache)
    assert type(view) is Dense and view is not shared and view.params is shared.params
    assert all(vars(shared)[k] is v for k, v in before.items()) and vars(shared).keys() == before.keys()


def test_backward_leaves_a_shared_layers_attributes_as_its_last_forward_call_left_them() -> None:
    model, shared = _shared_model(0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(2)]
    ops = model.ops
    assert ops is not None
    with ops.activate():
        (p,) = model.forward_outputs(xs, True, [False])
        after_forward = dict(vars(shared))
        model.backward_outputs([ops.xp.ones_like(p) / 5], [False])
    assert {k: v for k, v in vars(shared).items() if after_forward.get(k) is not v} == {}


def test_a_shared_layers_weight_gradient_is_the_sum_of_its_calls() -> None:
    """Against float64 NumPy: d(sum of both calls' outputs)/dW = x_aᵀ(1-h_a²) + x_bᵀ(1-h_b²)."""
    a, b = Input((4,), name="a"), Input((4,), name="b")
    shared = Dense(3, "tanh", name="shared")
    model = Model([a, b], Add()([shared(a), shared(b)]), seed=3, dtype="float64")
    model.compile("sgd", "mse", backend="numpy")
    rng = np.random.default_rng(4)
    xa, xb = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    w, bias = model.get_weights()
    ha, hb = np.tanh(xa @ w + bias), np.tanh(xb @ w + bias)
    y = rng.standard_normal((6, 3))
    dz = 2 * (ha + hb - y) / y.size  # mse
    want_w = xa.T @ (dz * (1 - ha**2)) + xb.T @ (dz * (1 - hb**2))
    want_b = (dz * (1 - ha**2)).sum(0) + (dz * (1 - hb**2)).sum(0)
    _, grads = model.compute_gradients([xa, xb], y)
    np.testing.assert_allclose(grads[0], want_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[1], want_b, rtol=1e-10, atol=1e-12)


def test_a_config_round_trip_calls_new_layers_the_same_way() -> None:
    model, _ = _shared_model(0)
    spec = functional_config(model.graph, "m", "float32")
    inputs, outputs = graph_from_config(spec, {})
    again = Model(inputs, outputs, "m", seed=0)
    assert again.get_config() == spec == model.get_config() | {"name": "m"}
    assert [len(layer.inbound_nodes) for layer in again.layers if layer.name == "shared"] == [2]
    with pytest.raises(ValueError, match=r"a functional config is a dict with \['layers', 'input_layers'"):
        graph_from_config({"layers": []}, {})


def test_a_config_whose_calls_wait_on_each_other_names_them() -> None:
    spec = _shared_model(0)[0].get_config()
    head = next(e for e in spec["layers"] if e["name"] == "head")
    head["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["nowhere", 0, 0]
    with pytest.raises(ValueError, match=r"the calls of \['head'\] wait on each other"):
        graph_from_config(spec, {})


def test_copy_graph_calls_copies_of_the_layers_in_the_order_they_were_made() -> None:
    model, shared = _shared_model(0)
    made: list[str] = []

    def fresh(layer: Any) -> Any:
        made.append(str(layer.name))
        return type(layer).from_config(layer.get_config())

    inputs, outputs = copy_graph(model.graph, fresh)
    twin = Model(inputs, outputs, seed=0)
    assert sorted(made) == sorted(layer.name for layer in model.layers)
    assert twin.get_config() == model.get_config() | {"name": twin.name}
    assert all(layer is not shared for layer in twin.layers)


def test_loading_lives_in_its_own_module_and_keeps_its_public_names() -> None:
    assert xpnet.models.load_model is loading.load_model
    assert xpnet.models.clone_model is loading.clone_model
    assert xpnet.models.model_from_json is loading.model_from_json
    model, _ = _shared_model(5)
    again = xpnet.models.model_from_json(model.to_json())
    assert again.get_config() == model.get_config()


def test_sequential_names_an_added_model_uniquely_and_refuses_a_taken_name() -> None:
    first = Sequential([Input((3,)), Dense(2, name="a")])
    second = Sequential([Input((2,)), Dense(2, name="b")])
    outer = Sequential([first, second])
    assert [layer.name for layer in outer.layers] == ["sequential", "sequential_1"]
    with pytest.raises(ValueError, match="a layer named 'b' is already in the model"):
        Sequential([Input((3,)), Dense(2, name="b"), Dense(2, name="b")])
    with pytest.raises(TypeError, match=r"Sequential\.add expects a Layer or a Model, received int"):
        Sequential().add(3)  # type: ignore[arg-type]
