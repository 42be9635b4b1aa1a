"""Merge layers of the functional API: Add, Subtract, Multiply, Average, Concatenate.

Each takes a list of tensors: forward gets a list of (batch, *shape) arrays and backward
returns one gradient per input. A merge has no weights. Backward may return the same array for
several inputs (Add's ∂L/∂x_i = ∂L/∂y for every i): the model copies it before a second
consumer could change it in place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Array, Layer, Shape


class Merge(Layer):
    """Elementwise merges: every input has the same shape, and so does the output."""

    multi_input: ClassVar[bool] = True
    carries_nan = True
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.input_shapes: list[Shape] = []
        self._xs: list[Array] = []

    def build(self, input_shape: Any) -> Shape:
        shapes = [tuple(s) for s in input_shape]
        n = len(shapes)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            want = str(self.min_inputs) if self.max_inputs == self.min_inputs else f"at least {self.min_inputs}"
            raise ValueError(f"{type(self).__name__} merges {want} tensors, received {n}")
        self.input_shapes = shapes
        self.input_shape = shapes[0]
        self.output_shape = self.merged_shape(shapes)
        return self.output_shape

    def merged_shape(self, shapes: list[Shape]) -> Shape:
        if any(s != shapes[0] for s in shapes):
            shown = ", ".join(str((None, *s)) for s in shapes)
            raise ValueError(f"{type(self).__name__} needs inputs of one shape, received {shown}")
        return shapes[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Add(Merge):
    """y = x_1 + x_2 + …; ∂L/∂x_i = ∂L/∂y."""

    def forward(self, x: Any, training: bool = False) -> Array:
        assert self.ops is not None
        add = self.ops.xp.add  # a namespace call, not `+`: a captured step keeps its result (training/program.py)
        y = add(x[0], x[1])
        for xi in x[2:]:
            y = add(y, xi)
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Any:
        return [dy] * len(self.input_shapes) if need_input_grad else None


class Subtract(Merge):
    """y = x_1 − x_2 (exactly two inputs); ∂L/∂x_1 = ∂L/∂y, ∂L/∂x_2 = −∂L/∂y."""

    max_inputs: ClassVar[int | None] = 2

    def forward(self, x: Any, training: bool = False) -> Array:
        return x[0] - x[1]

    def backward(self, dy: Array, need_input_grad: bool = True) -> Any:
        return [dy, -dy] if need_input_grad else None


class Multiply(Merge):
    """y = x_1 ⊙ x_2 ⊙ …; ∂L/∂x_i = ∂L/∂y ⊙ Π_{j≠i} x_j (the inputs are kept in training)."""

    def forward(self, x: Any, training: bool = False) -> Array:
        if training:
            self._xs = list(x)
        y = x[0] * x[1]
        for xi in x[2:]:
            y = y * xi
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Any:
        if not need_input_grad:
            return None
        xs, out = self._xs, []
        for i in range(len(xs)):
            g = dy
            for j, xj in enumerate(xs):
                if j != i:
                    g = g * xj
            out.append(g)
        return out


class Average(Merge):
    """y = (x_1 + … + x_n) / n; ∂L/∂x_i = ∂L/∂y / n."""

    def forward(self, x: Any, training: bool = False) -> Array:
        y = x[0] + x[1]
        for xi in x[2:]:
            y = y + xi
        return y * (1.0 / len(x))

    def backward(self, dy: Array, need_input_grad: bool = True) -> Any:
        return [dy * (1.0 / len(self.input_shapes))] * len(self.input_shapes) if need_input_grad else None


class Concatenate(Merge):
    """y = [x_1, x_2, …] joined along `axis` (default the last); ∂L/∂x_i is x_i's slice of ∂L/∂y."""

    def __init__(self, axis: int = -1, name: str | None = None) -> None:
        super().__init__(name=name)
        self.axis = int(axis)
        self._feature_axis = 0  # the axis without the batch axis, set by build

    def merged_shape(self, shapes: list[Shape]) -> Shape:
        rank = len(shapes[0])
        axis = self.axis + rank if self.axis < 0 else self.axis - 1  # axis counts the batch axis, as in Keras
        if not 0 <= axis < rank or any(len(s) != rank for s in shapes):
            raise ValueError(
                f"Concatenate(axis={self.axis}) cannot join inputs of shapes "
                + ", ".join(str((None, *s)) for s in shapes)
            )
        rest = [s[:axis] + s[axis + 1 :] for s in shapes]
        if any(r != rest[0] for r in rest):
            raise ValueError(
                f"Concatenate(axis={self.axis}) needs inputs that match except along that axis, received "
                + ", ".join(str((None, *s)) for s in shapes)
            )
        self._feature_axis = axis
        return (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1 :])

    def forward(self, x: Any, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        concat = getattr(xp, "concat", None) or xp.concatenate  # CuPy before 14 lacks the array-API name
        return concat(list(x), axis=self._feature_axis + 1)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Any:
        if not need_input_grad:
            return None
        out, lo = [], 0
        axis = self._feature_axis + 1
        for s in self.input_shapes:
            hi = lo + s[axis - 1]
            index = (slice(None),) * axis + (slice(lo, hi),)
            out.append(dy[index])
            lo = hi
        return out

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "axis": self.axis}

    def __repr__(self) -> str:
        return f"Concatenate(axis={self.axis}, name={self.name!r})"
