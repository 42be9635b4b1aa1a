"""Keras 3's `keras.ops` for xpnet: array functions, each with its vector-Jacobian product beside it.

`from xpnet import ops` then `ops.matmul(x, w) + b`, `ops.mean(ops.square(y - p), axis=-1)`.
Outside a model the functions compute at once on the arrays' backend (NumPy or CuPy; creation
functions use the process's default backend) and return its arrays. Inside a training step a
custom layer, loss or activation receives `xpnet.tape.Tensor`s: each function then also
records itself with its VJP, and the model's backward pass replays them (xpnet/tape.py).

Each private `_name(xp, *arrays, **settings)` returns (output, vjp): `vjp(g, needs)` gives
∂L/∂input for every input i with needs[i], from g = ∂L/∂output. Shapes follow NumPy's
broadcasting; gradients of broadcast inputs are summed back to the input's shape.
Integer results (argmax, shape, one_hot indices) have no gradient.

The ops live by kind: arithmetic, activations, comparisons, reductions and products in
`numeric.py`; creation, shapes, joining, indexing and casts in `arrays.py`; the dispatch they all
run through (backend, Keras's dtypes, recording) in `core.py`. This module names them all.
"""

from __future__ import annotations

from collections.abc import Callable

from ..tape import OPERATORS
from .arrays import (
    _concatenate,
    _stack,
    arange,
    cast,
    concatenate,
    convert_to_numpy,
    convert_to_tensor,
    expand_dims,
    eye,
    full,
    getitem,
    one_hot,
    ones,
    reshape,
    shape,
    squeeze,
    stack,
    take,
    transpose,
    zeros,
)
from .core import FLOATX as FLOATX  # the names xpnet.ops had as one module
from .core import KERAS_TYPES, Array, Out
from .core import _namespace as _namespace
from .numeric import (
    _add,
    _add_into_sink,
    _clip,
    _divide,
    _exp,
    _log,
    _log_softmax,
    _logsumexp,
    _matmul,
    _matmul_into_sink,
    _maximum,
    _mean,
    _minimum,
    _multiply,
    _power,
    _relu,
    _sigmoid,
    _softmax,
    _softmax_rows,
    _sqrt,
    _square,
    _subtract,
    _tanh,
    _where,
    abs,
    absolute,
    add,
    argmax,
    clip,
    divide,
    dot,
    exp,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    multiply,
    negative,
    power,
    relu,
    sigmoid,
    softmax,
    sqrt,
    square,
    subtract,
    sum,
    tanh,
    where,
)
from .numeric import ends_in_softmax as ends_in_softmax

# ops whose weight gradient a gradient sink can take straight from the op's inputs, as a built-in layer hands it:
# op -> route(sink, owner layer, weight name, node, input position) -> a function of the node's ∂L/∂output, or None
SINK_ROUTES: dict[Callable[..., Out], Callable[..., Callable[[Array], None] | None]] = {
    _add: _add_into_sink,
    _matmul: _matmul_into_sink,
}

# the ops whose dtypes follow Keras rather than NumPy: fn -> (first argument that counts, rule of _keras_promote)
KERAS_TYPES.update(
    {
        _add: (0, "mix"),
        _subtract: (0, "mix"),
        _multiply: (0, "mix"),
        _divide: (0, "float"),
        _power: (0, "int"),
        _maximum: (0, "mix"),
        _minimum: (0, "mix"),
        _where: (1, "mix"),
        _clip: (0, "mix"),
        _square: (0, "int"),
        _relu: (0, "int"),
        _matmul: (0, "matmul"),
        _concatenate: (0, "mix"),
        _stack: (0, "mix"),
        _exp: (0, "float"),
        _log: (0, "float"),
        _sqrt: (0, "float"),
        _tanh: (0, "float"),
        _sigmoid: (0, "float"),
        _softmax: (0, "float"),
        _softmax_rows: (0, "float"),
        _log_softmax: (0, "float"),
        _logsumexp: (0, "float"),
        _mean: (0, "float"),
    }
)

__all__ = [
    "abs",
    "absolute",
    "add",
    "arange",
    "argmax",
    "cast",
    "clip",
    "concatenate",
    "convert_to_numpy",
    "convert_to_tensor",
    "divide",
    "dot",
    "exp",
    "expand_dims",
    "eye",
    "full",
    "getitem",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "log",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "multiply",
    "negative",
    "one_hot",
    "ones",
    "power",
    "relu",
    "reshape",
    "shape",
    "sigmoid",
    "softmax",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "subtract",
    "sum",
    "take",
    "tanh",
    "transpose",
    "where",
    "zeros",
]

OPERATORS.update(
    add=add,
    subtract=subtract,
    multiply=multiply,
    divide=divide,
    matmul=matmul,
    power=power,
    negative=negative,
    abs=abs,
    getitem=getitem,
    transpose=transpose,
    greater=greater,
    greater_equal=greater_equal,
    less=less,
    less_equal=less_equal,
)
