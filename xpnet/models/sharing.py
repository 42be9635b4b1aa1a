"""How several models share layers, and how a model becomes a layer of another, over one flat buffer each.

Keras lets two models hold the same layer objects: `Sequential([model, Softmax()])`,
`Model(model.inputs, [layer.output for layer in model.layers])`, or
`Sequential(pretrained.layers[:-1] + [Dense(5)])`. The weights are then the same variables, so
training one model changes what the other predicts. xpnet keeps every model's weights in one
flat `ParamStore` (one optimizer kernel per step), so a layer's weights cannot sit in two
buffers at once. The rule that reconciles the two:

* A layer's `params` are views into exactly one store at a time, that of the model that last
  used it (`layer.model_ref`). Those views always hold the layer's current values, so
  `layer.get_weights()`, `set_weights` and `Variable`s are right whatever model used it last.
* Each model keeps its own store (and its optimizer's state) for all of its layers. Before a
  model uses its weights (`store`, predict, each training step, evaluate), it takes back the
  layers another model used since: it copies their current values from the other store into its
  own (a device copy on the same backend, else one host round trip) and binds the layers to its
  views again. A global hand-over count makes the check one integer comparison when nothing
  moved, so models that share nothing pay nothing per step.
* A new model built over layers that already hold weights starts from those values instead of
  drawing fresh ones (Keras's transfer learning), and takes the layers over.
* A model used as a layer (`Sequential([model, ...])`, `model(symbolic_input)`) is one call in
  the outer graph; the outer store holds the weights of the inner model's layers (its leaves)
  like those of its own layers, and the inner model's forward and backward run on them.
  `model.trainable = False` freezes every leaf (Keras's fine-tuning), which the outer store's
  layout applies at its next compile.

So weights are shared both ways, as in Keras: after outer.fit the inner model predicts with the
trained weights (it copies them in when next used), and after inner.fit the outer model does.
The cost of a hand-over is one copy of the layers' weights, paid only when the model using them
changes, never inside a training step of a model that keeps them.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..layers.base import Layer
    from ..params import ParamStore

# incremented whenever layers move to another model's store: a model that saw the current count
# still holds all of its layers (read as `HANDOVERS[0]` where every step looks: no call)
HANDOVERS = [0]


def handovers() -> int:
    return HANDOVERS[0]


def leaves(layers: Sequence[Any]) -> list[Layer]:
    """The weight-holding layers under `layers`: each layer, and for a model used as a layer its own leaves.

    A layer reached twice (inside a nested model and directly, or in two nested models) raises: the
    outer graph would not know it runs twice per step.
    """
    out: list[Layer] = []
    seen: dict[int, str] = {}
    stack: list[tuple[Any, str]] = [(layer, "") for layer in reversed(layers)]
    while stack:
        layer, where = stack.pop()
        inner = getattr(layer, "nested_layers", None)
        if inner is not None:
            stack.extend((sub, f" inside model {layer.name!r}") for sub in reversed(inner))
            continue
        if id(layer) in seen:
            raise ValueError(
                f"layer {layer.name!r} is used{where or ' directly'} and{seen[id(layer)] or ' directly'} in one "
                "model; call it once per model, or use the nested model alone"
            )
        seen[id(layer)] = where
        out.append(layer)
    return out


def current_values(layer: Layer, dtype: str) -> list[np.ndarray | None] | None:
    """A layer's weights as its current store holds them (host copies in `dtype`, in `param_specs` order), or None if
    it has none yet (never bound, or placeholders the layer does not hand out, as Normalization's before `adapt`).

    A custom layer's sublayer may be held by another model too (`Block(dense)` and `Sequential([dense])`): its
    weights are read where the sublayer is bound now, and an entry is None where no model has drawn it yet.
    """
    if len(_tree(layer)) > 1:
        out: list[np.ndarray | None] = []
        for spec in layer.param_specs():
            holder, name = _holder(layer, spec.name)
            hops = holder.ops
            value = holder.params.get(name) if hops is not None and holder.params else None
            out.append(None if hops is None or value is None else np.asarray(hops.to_numpy(value), dtype=dtype))
        return out if any(v is not None for v in out) else None
    if layer.ops is None or not layer.params:
        return None
    weights = layer.get_weights()
    return [np.asarray(w, dtype=dtype) for w in weights] if weights else None


def current_dtype(layer: Layer) -> str | None:
    """The dtype of the weights another model holds for `layer` (a sublayer's, where another model holds it), or None
    when no model holds them: weights a layer made on its own (`layer.build`) are cast to the model's dtype."""
    held = [sub for sub in _tree(layer) if sub.ops is not None and "_xp_standalone" not in vars(sub)]
    return str(held[0].compute_dtype) if held else None


def _tree(layer: Layer) -> list[Layer]:
    """The layer, and for a custom (`call`) layer the sublayers whose weights its store slot holds."""
    out = [layer]
    if getattr(layer, "keras_call", False):
        from ..layers import custom

        for _, sub in custom.sublayers(layer):
            out += _tree(sub)
    return out


def _holder(layer: Layer, name: str) -> tuple[Layer, str]:
    """The layer whose `params` hold `layer`'s weight `name` now: a sublayer's for "path/kernel"."""
    if getattr(layer, "keras_call", False) and "/" in name:
        from ..layers import custom

        for path, sub in custom.sublayers(layer):
            if name.startswith(path + "/"):
                return _holder(sub, name[len(path) + 1 :])
    return layer, name


def owned_by(layer: Layer, model: Any) -> bool:
    for sub in _tree(layer):  # a custom layer's sublayer may have served another model since
        ref = getattr(sub, "model_ref", None)
        if ref is None or ref() is not model:
            return False
    return True


def mark_owner(model: Any, layers: Sequence[Layer]) -> None:
    """Record `model` as the holder of `layers`' weights; other models will take them back when they run."""
    moved = any(not owned_by(layer, model) for layer in layers)
    ref = weakref.ref(model)
    for layer in layers:
        for sub in _tree(layer):
            sub.model_ref = ref
    if moved:
        HANDOVERS[0] += 1


def take_back(store: ParamStore, model: Any) -> bool:
    """Copy the current values of the store's layers that another model used since into `store`, bind all of
    its layers to it again, and mark `model` their holder. Returns whether anything moved."""
    away = {id(layer) for layer in store.layers if not owned_by(layer, model)}
    if not away:
        return False
    ops, flat = store.ops, store.flat
    with ops.activate():
        for s in store.slots:
            if id(s.layer) not in away:
                continue
            holder, name = _holder(s.layer, s.spec.name)  # a sublayer's weight: where the sublayer is bound now
            value = holder.params.get(name) if holder.ops is not None else None
            if value is None:
                continue  # never bound elsewhere: this store's values are current
            if holder.ops is ops and str(value.dtype) == str(flat.dtype):
                flat[s.offset : s.offset + s.size] = ops.xp.reshape(value, (s.size,))
            else:  # another backend or dtype: through the host
                assert holder.ops is not None
                host = np.asarray(holder.ops.to_numpy(value), dtype=store.dtype).reshape(s.size)
                flat[s.offset : s.offset + s.size] = ops.asarray(host)
    store.rebind()  # the same values moved: not `weights_assigned` (that means new ones, e.g. statistics given)
    mark_owner(model, store.layers)
    return True


def check_leaves(model: Any, store: ParamStore) -> None:
    """Raise if the layers under `model` are no longer those its store was laid out for."""
    leaves_now = model.leaf_layers
    if len(leaves_now) == len(store.layers) and all(a is b for a, b in zip(leaves_now, store.layers, strict=True)):
        return
    # a nested model added or popped layers since this model was built: its buffer lacks (or keeps) them
    nested = [layer.name for layer in model.layers if getattr(layer, "nested_layers", None) is not None]
    raise ValueError(
        f"model {nested[0] if len(nested) == 1 else nested!r} changed its layers after it became a layer of "
        f"{model.name!r}, whose weights were laid out for the layers it had then; make the outer model again "
        "(e.g. Sequential([inner, ...])) to use the changed one"
    )
