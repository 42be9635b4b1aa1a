"""A functional model's architecture as Keras's config dict, and the graph built back from one.

`functional_config(graph, name, dtype)` writes what `Model.get_config()` returns: each layer with
its `inbound_nodes` (Keras numbers a layer's calls in the order they were made), then
`input_layers` and `output_layers`. `graph_from_config` makes new layers and calls them on new
Inputs in the same way, so `Model(*graph_from_config(config, custom))` is the same network with
fresh weights. `copy_graph` does the same from a live graph over copies of its layers.
The file formats that carry a config are in xpnet/io/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..io import saving
from ..io.config import layer_entry
from ..layers.base import Layer
from ..layers.input import Input
from ..layers.node import KerasTensor
from .graph import Graph, is_model

# (layer name, call index) → the tensor that call made; Inputs are call 0 of their own name
Tensors = dict[tuple[str, int], KerasTensor]


def functional_config(graph: Graph, name: str, dtype: str) -> dict[str, Any]:
    """Keras's functional config: layers with their `inbound_nodes`, `input_layers`, `output_layers`."""
    index: dict[int, tuple[str, int]] = {id(t): (str(t.name), 0) for t in graph.inputs}
    calls: dict[int, int] = {}  # a layer's calls numbered as they were made, as Keras's node indices
    inbound: dict[int, list[Any]] = {id(layer): [] for layer in graph.layers}

    def history(t: KerasTensor) -> list[Any]:
        name, k = index[id(t)]
        return [name, k, 0]

    def ref(t: KerasTensor) -> dict[str, Any]:
        return {"class_name": "__keras_tensor__", "config": {"shape": list(t.shape), "keras_history": history(t)}}

    for node in graph.calls_as_made():
        k = calls.get(id(node.layer), 0)
        calls[id(node.layer)] = k + 1
        index[id(node.output)] = (str(node.layer.name), k)
        refs = [ref(t) for t in node.inputs]
        kwargs = {} if node.training is None else {"training": node.training}
        inbound[id(node.layer)].append({"args": [refs] if node.multi else refs, "kwargs": kwargs})
    entries: list[dict[str, Any]] = [
        {
            "class_name": "InputLayer",
            "name": t.name,
            "config": {"batch_shape": list(t.shape), "dtype": dtype, "name": t.name},
            "inbound_nodes": [],
        }
        for t in graph.inputs
    ]
    for layer in graph.layers:
        entry = layer_entry(layer)
        entries.append(
            {
                "class_name": entry["class_name"],
                "name": layer.name,
                "config": entry["config"],
                "inbound_nodes": inbound[id(layer)],
            }
        )
    ins, outs = [history(t) for t in graph.inputs], [history(t) for t in graph.outputs]
    return {
        "name": name,
        "layers": entries,
        "input_layers": ins[0] if graph.single_input else ins,
        "output_layers": outs[0] if graph.single_output else outs,
    }


def graph_from_config(config: Any, custom: dict[str, Any]) -> tuple[Any, Any]:
    """(inputs, outputs) of new layers called as `config` (`functional_config`) says: each a tensor or a list.

    A cycle or a call of a layer the config lacks raises a ValueError naming the layers.
    """
    need = ("layers", "input_layers", "output_layers")
    if not isinstance(config, dict) or not all(k in config for k in need):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"a functional config is a dict with {list(need)} (model.get_config()), received {got}")
    tensors: Tensors = {}
    pending: list[tuple[Layer, int, dict[str, Any]]] = []
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            cfg = entry["config"]
            tensors[(entry["name"], 0)] = Input(tuple(cfg["batch_shape"][1:]), name=cfg.get("name", entry["name"]))
            continue
        layer = saving.layer_from_config({"class_name": entry["class_name"], "config": entry["config"]}, custom)
        layer.name = entry.get("name", layer.name)
        pending += [(layer, k, node) for k, node in enumerate(entry["inbound_nodes"])]
    # a layer's later call may read a layer listed after it: call whatever is ready until nothing is left
    while pending:
        left = [(layer, k, node) for layer, k, node in pending if not _call_if_ready(layer, k, node, tensors)]
        if len(left) == len(pending):
            stuck = sorted({str(layer.name) for layer, _, _ in left})
            raise ValueError(
                f"the model config cannot be built: the calls of {stuck} wait on each other (a cycle) "
                "or on layers the config does not have"
            )
        pending = left

    def pick(spec: Any) -> Any:
        if spec and isinstance(spec[0], list):
            return [tensors[(s[0], s[1])] for s in spec]
        return tensors[(spec[0], spec[1])]

    return pick(config["input_layers"]), pick(config["output_layers"])


def _call_if_ready(layer: Layer, k: int, node: dict[str, Any], tensors: Tensors) -> bool:
    """Make call `k` of `layer` (its config entry `node`) if the tensors it reads exist; whether it did."""
    args = node["args"]
    multi = len(args) == 1 and isinstance(args[0], list)
    refs = args[0] if multi else args
    keys = [tuple(r["config"]["keras_history"][:2]) for r in refs]
    if not all(key in tensors for key in keys) or (k > 0 and (str(layer.name), k - 1) not in tensors):
        return False
    inputs = [tensors[key] for key in keys]  # type: ignore[index]
    arg = inputs if multi else inputs[0]
    if is_model(layer):
        tensors[(str(layer.name), k)] = layer(arg, training=node.get("kwargs", {}).get("training"))
    else:
        tensors[(str(layer.name), k)] = layer(arg)
    return True


def copy_graph(graph: Graph, copy_layer: Callable[[Layer], Layer]) -> tuple[Any, Any]:
    """(inputs, outputs) of the same calls over `copy_layer` of each layer, on new Inputs of the same names."""
    copies = {id(layer): copy_layer(layer) for layer in graph.layers}
    tensors: dict[int, KerasTensor] = {id(t): Input(t.feature_shape, name=t.name) for t in graph.inputs}
    for node in graph.calls_as_made():  # so a shared layer's copy numbers its calls as the original
        args = [tensors[id(t)] for t in node.inputs]
        tensors[id(node.output)] = copies[id(node.layer)](args if node.multi else args[0])
    ins = [tensors[id(t)] for t in graph.inputs]
    outs = [tensors[id(t)] for t in graph.outputs]
    return ins[0] if graph.single_input else ins, outs[0] if graph.single_output else outs
