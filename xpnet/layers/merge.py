"""Merge layers of the functional API: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate,
and Keras's lower-case shortcuts (`add([a, b])` is `Add()([a, b])`).

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


class _Extremum(Merge):
    """y = the elementwise max (or min) of the inputs; ∂L/∂y goes to the first input that attains it.

    Ties go to the earliest input, as Keras's pairwise maximum(maximum(x_1, x_2), x_3) gives them.
    """

    pick: ClassVar[str] = "maximum"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self._y: Array = None

    def forward(self, x: Any, training: bool = False) -> Array:
        assert self.ops is not None
        pick = getattr(self.ops.xp, self.pick)
        y = pick(x[0], x[1])
        for xi in x[2:]:
            y = pick(y, xi)
        if training:
            self._xs, self._y = list(x), y
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Any:
        if not need_input_grad:
            return None
        assert self.ops is not None
        xp, out = self.ops.xp, []
        free = None  # elements whose gradient no earlier input has taken
        for xi in self._xs:
            hit = xi == self._y
            if free is not None:
                hit = xp.logical_and(hit, free)
            out.append(xp.where(hit, dy, 0.0))
            free = xp.logical_not(hit) if free is None else xp.logical_and(free, xp.logical_not(hit))
        return out


class Maximum(_Extremum):
    """y = max(x_1, x_2, …) elementwise; ∂L/∂x_i = ∂L/∂y where x_i is the (first) largest, else 0."""

    pick: ClassVar[str] = "maximum"


class Minimum(_Extremum):
    """y = min(x_1, x_2, …) elementwise; ∂L/∂x_i = ∂L/∂y where x_i is the (first) smallest, else 0."""

    pick: ClassVar[str] = "minimum"


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


def add(inputs: list[Any], **kwargs: Any) -> Any:
    """Keras's `layers.add(inputs)`: `Add(**kwargs)(inputs)`, the symbolic sum of a list of tensors."""
    return Add(**kwargs)(inputs)


def subtract(inputs: list[Any], **kwargs: Any) -> Any:
    """Keras's `layers.subtract([a, b])`: `Subtract(**kwargs)([a, b])`, the symbolic a − b."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs: list[Any], **kwargs: Any) -> Any:
    """Keras's `layers.multiply(inputs)`: `Multiply(**kwargs)(inputs)`, the elementwise product."""
    return Multiply(**kwargs)(inputs)


def average(inputs: list[Any], **kwargs: Any) -> Any:
    """Keras's `layers.average(inputs)`: `Average(**kwargs)(inputs)`, the elementwise mean."""
    return Average(**kwargs)(inputs)


def maximum(inputs: list[Any], **kwargs: Any) -> Any:
    """Keras's `layers.maximum(inputs)`: `Maximum(**kwargs)(inputs)`, the elementwise max."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: list[Any], **kwargs: Any) -> Any:
    """Keras's `layers.minimum(inputs)`: `Minimum(**kwargs)(inputs)`, the elementwise min."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: list[Any], axis: int = -1, **kwargs: Any) -> Any:
    """Keras's `layers.concatenate(inputs, axis=-1)`: `Concatenate(axis, **kwargs)(inputs)`."""
    return Concatenate(axis=axis, **kwargs)(inputs)
