"""One training step written down as the array operations it makes: what `print(model.step_program)` shows.

    gemm      t2[32,300] = x[32,784] @ dense.kernel[784,300] + dense.bias[300]
    relu      t3[32,300] = relu(t2)
    ...
    sgd_gemm  dense.kernel -= xᵀ @ t12      (the gradient t12 already carries η / batch)

Arrays are named by their memory: the model's weights and gradients by layer and weight
(`dense.kernel`, `∇dense.kernel`), the batch buffers `x`, `y`, `w`, the rest `t1`, `t2`, … in the
order the step makes them. Shapes follow each name; the dtype too where it is not the model's.
`recording` is also how the NumPy replay (training/replay.py) keeps the calls it binds.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..backend import Ops
    from .protocol import TrainableModel as Trainer


class Writer(Protocol):
    def call(self, name: str, f: Any) -> Any: ...


class Recorder:
    """Writes down the top-level backend calls of one step as `op  outputs = formula(inputs)` lines."""

    def __init__(self, model: Trainer, xb: Any, yb: Any, wb: Any) -> None:
        self.lines: list[str] = []
        self.fixed: dict[Any, str] = {}  # memory that outlives the step
        self.temps: dict[Any, str] = {}  # the latest temporary at each address (freed memory is reused)
        self.count = 0
        self.depth = 0
        self.inputs: set[Any] = set()
        self.dtype = str(getattr(model.store.params, "dtype", "float32"))
        for a, name in _named(model, xb, yb, wb):
            if is_array(a):
                self.fixed.setdefault(where(a), name)
                if a.ndim == 2:  # its transpose, as backprop reads weights
                    self.fixed.setdefault(where(a.T), name + "ᵀ")

    def describe(self, v: Any, new: bool = False) -> str:
        """An argument or result as the listing shows it: `t3[32,300]`, `y[32]:i32`, `0.9`, `relu`."""
        if isinstance(v, (list, tuple)):
            return ", ".join(self.describe(u, new) for u in v)
        if is_array(v):
            return self._array(v, new)
        if isinstance(v, float):
            return f"{v:g}"
        if isinstance(v, (int, bool, str)) or v is None:
            return repr(v)
        return str(getattr(v, "name", type(v).__name__))

    def _array(self, v: Any, new: bool) -> str:
        key = where(v)
        name = self.fixed.get(key)
        if name is None and new and key in self.inputs:  # written into an argument's memory
            name = self.temps.get(key)
        if name is None and new:
            self.count += 1
            name = self.temps[key] = f"t{self.count}"
        elif name is None:
            name = self.temps.get(key) or _transposed(self.temps, v)
        if not name and v.ndim == 0 and isinstance(v, (np.ndarray, np.generic)):
            return f"{v.item():g}"  # a number made outside the step (η / batch): its value (no device read)
        dtype = "" if str(v.dtype) == self.dtype else f":{short(v.dtype)}"
        return f"{name}[{','.join(map(str, v.shape))}]{dtype}"

    def call(self, name: str, f: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            top = self.depth == 0
            if top:  # the arguments' names before the call, which may write into them
                ins = [self.describe(a) for a in args] + [f"{k}={self.describe(v)}" for k, v in kwargs.items()]
                self.inputs = {where(a) for a in [*args, *kwargs.values()] if is_array(a)}
            self.depth += 1
            try:
                r = f(*args, **kwargs)
            finally:
                self.depth -= 1
            if top:
                outs = [self.describe(o, new=True) for o in (r if isinstance(r, tuple) else (r,))]
                self.lines += formula(name, [_bare(o) for o in outs], ins, outs)
            return r

        return run


def _named(model: Trainer, xb: Any, yb: Any, wb: Any) -> list[tuple[Any, str]]:
    """(array, name) of the memory the step's objects hold: flat buffers, slots, weights, gradients, batch."""
    store, opt = model.store, model.optimizer
    named = [(store.params, "params"), (store.grads, "grads")]
    if opt is not None:
        named += [(a, f"{opt.name}.{k}") for k, a in opt.slots.items()]
        named += [(opt.device_count, f"{opt.name}.t")] if opt.device_count is not None else []
    for layer in model.leaf_layers:
        named += [(a, f"{layer.name}.{k}") for k, a in layer.params.items()]
        named += [(a, f"∇{layer.name}.{k}") for k, a in layer.grads.items()]
        # the layer's own counters and state (a dropout layer's step count)
        named += [(a, f"{layer.name}.{k.lstrip('_')}") for k, a in vars(layer).items() if is_array(a)]
    for label, v in (("x", xb), ("y", yb), ("w", wb)):
        named += [(a, label if not isinstance(v, list) else f"{label}{k}") for k, a in enumerate(listed(v))]
    return named


def _transposed(temps: dict[Any, str], v: Any) -> str:
    """A temporary read through its transpose (backprop's xᵀ of a hidden activation): `t4ᵀ`, else ''."""
    name = temps.get(where(v.T)) if v.ndim == 2 else None
    return f"{name}ᵀ" if name else ""


def _bare(described: str) -> str:
    """A name without its shape: `t3[32,300]` → `t3` (what a formula repeats)."""
    return described.split("[", 1)[0] or described


def _line(op: str, text: str) -> str:
    return f"{op:<14} {text}"


def _dense(o: list[str], i: list[str], full: list[str]) -> list[str]:
    act = i[3] if len(i) > 3 else "linear"
    bias = f" + {i[2]}" if i[2] != "None" else ""
    return [_line("gemm", f"{full[0]} = {i[0]} @ {i[1]}{bias}"), _line(act, f"{full[1]} = {act}({o[0]})")]


def _fused_loss(o: list[str], i: list[str], full: list[str]) -> list[str]:
    return [
        _line("softmax", f"{full[2]} = softmax({i[3]})"),
        _line("xent", f"{full[0]} = −log {o[2]}[{_bare(i[2])}]"),
        _line("xent_grad", f"{full[1]} = {_bare(i[4])} · ({o[2]} − onehot {_bare(i[2])})"),
    ]


def _backward_sum(o: list[str], i: list[str], full: list[str]) -> list[str]:
    act, h, dh, b, mode = i[0], _bare(i[2]), _bare(i[3]), _bare(i[4]), i[5]
    bias = f"{b} -= Σrows {dh}" if mode == "'sub'" else f"{b} = Σrows {dh}"
    return [_line(f"{act}_grad", f"{dh} ·= {act}'({h})"), _line("bias_grad", bias)]


def _pool(size: str, strides: str) -> str:
    """A max pool's window, and its strides where they differ: `maxpool2x2`, `maxpool3x3 stride 1x1`."""
    window = f"maxpool{size.replace(', ', 'x')}"
    return window if strides == size else f"{window} stride {strides.replace(', ', 'x')}"


# op name → (outputs' bare names, inputs as described, outputs as described) → lines of the listing
_FORMULAS: dict[str, Callable[[list[str], list[str], list[str]], list[str]]] = {
    "dense_forward": _dense,
    "affine": lambda o, i, f: [_line("gemm", f"{f[0]} = {i[0]} @ {i[1]}" + (f" + {i[2]}" if i[2] != "None" else ""))],
    "matmul": lambda o, i, f: [_line("gemm", f"{f[0]} = {i[0]} @ {i[1]}")],
    "gemm_sub": lambda o, i, f: [_line("sgd_gemm", f"{_bare(i[2])} -= {_bare(i[0])}ᵀ @ {_bare(i[1])}")],
    "bias_sub": lambda o, i, f: [_line("sgd_bias", f"{_bare(i[1])} -= Σrows {_bare(i[0])}")],
    "bias_grad": lambda o, i, f: [_line("bias_grad", f"{_bare(i[1])} = Σrows {_bare(i[0])}")],
    "subtract_": lambda o, i, f: [_line("sgd", f"{_bare(i[0])} -= {_bare(i[1])}")],
    "fused_loss": _fused_loss,
    "activation_backward_sum": _backward_sum,
    "dropout_step": lambda o, i, f: [
        _line("dropout", f"{f[1]} = (hash(seed, {_bare(i[2])}) ≥ {i[3]}) / (1 − {i[3]});  {f[0]} = {i[0]} · {o[1]}")
    ],
    "adam_step": lambda o, i, f: [
        _line("adam", f"{_bare(i[0])} -= adam({_bare(i[1])}; {_bare(i[2])}, {_bare(i[3])}, β={i[6]},{i[7]}, ε={i[8]})")
    ],
    "conv2d_forward": lambda o, i, f: [_line("conv2d", f"{f[0]} = conv({i[0]}, {i[1]}) + {i[2]}")],
    "conv2d_backward": lambda o, i, f: [
        _line("conv2d_grad", f"{', '.join(f)} = ∂conv(δ {i[0]}, {_bare(i[2])})"),
    ],
    "max_pool_relu_forward": lambda o, i, f: [_line("pool_relu", f"{f[0]} = relu({_pool(i[1], i[2])}({i[0]}))")],
    "max_pool_relu_backward": lambda o, i, f: [_line("pool_relu_grad", f"{f[0]} = ∂{_pool(i[3], i[4])}(relu'·{i[0]})")],
}


def formula(name: str, bare: list[str], ins: list[str], outs: list[str]) -> list[str]:
    """The listing's lines for one call: a known op as its formula, any other as `outs = name(ins)`."""
    shown = [o for o in outs if o != "None"]
    make = _FORMULAS.get(name)
    if make is not None:
        try:
            return make(bare, ins, shown)
        except IndexError:  # called with fewer arguments than the formula names: say it plainly
            pass
    head = ", ".join(shown) + " = " if shown else ""
    return [_line(name.rstrip("_"), f"{head}{name.rstrip('_')}({', '.join(ins)})")]


def is_array(v: Any) -> bool:
    # an array class (np.ndarray passed as an argument) has these names too, as descriptors
    return not isinstance(v, type) and hasattr(v, "shape") and hasattr(v, "dtype") and hasattr(v, "ndim")


def listed(v: Any) -> list[Any]:
    return [a for a in (v if isinstance(v, list) else [v]) if a is not None]


def where(a: Any) -> Any:
    """An array's memory as a key: its address, shape and dtype (views made anew each step match)."""
    data = getattr(a, "data", None)
    ptr = getattr(data, "ptr", None)
    if ptr is None:
        iface = getattr(a, "__array_interface__", None)
        ptr = iface["data"][0] if iface else id(a)
    return (int(ptr), tuple(a.shape), str(a.dtype))


def short(dtype: Any) -> str:
    name = str(dtype).split(".")[-1]
    return {"float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "uint32": "u32"}.get(name, name)


_NOT_STEP = ("activate", "describe", "info", "to_numpy", "is_native")


@contextmanager
def recording(ops: Ops, rec: Writer) -> Iterator[None]:
    """Inside: every top-level `ops` method and `ops.xp` function call goes through `rec.call`."""
    names = [n for n, _ in inspect.getmembers(type(ops), inspect.isfunction) if not n.startswith("_")]
    xp = ops.xp

    class _Listed:
        def __getattr__(self, attr: str) -> Any:
            v = getattr(xp, attr)
            if not callable(v) or isinstance(v, type) or inspect.ismodule(v):
                return v
            return rec.call(attr, v)

    with patched(ops, [n for n in names if n not in _NOT_STEP], rec.call, _Listed()):
        yield


# one patching at a time: the backend object is shared by every model of the process, so two threads'
# recordings that overlapped would each restore what they found, and the later leave the earlier's wrappers
_PATCHING = threading.RLock()


class _OnThread:
    """`ops.xp` while one thread patches it: the patched namespace there, the one it replaced elsewhere."""

    def __init__(self, thread: int, patched: Any, plain: Any) -> None:
        self._thread, self._patched, self._plain = thread, patched, plain

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._patched if threading.get_ident() == self._thread else self._plain, attr)


def _on_thread(thread: int, patched: Any, plain: Any) -> Any:
    """A method wrapped for the patching thread only: another thread's calls meanwhile run it plainly."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return (patched if threading.get_ident() == thread else plain)(*args, **kwargs)

    return call


@contextmanager
def patched(ops: Ops, names: list[str], wrap: Callable[[str, Any], Any], xp: Any) -> Iterator[None]:
    """Inside: `ops.<name>` is `wrap(name, the bound method)` for each of `names`, and `ops.xp` is `xp`,
    for the calling thread; other threads see the backend as before (they wait to patch it themselves)."""
    with _PATCHING:
        me = threading.get_ident()
        saved_xp = ops.__dict__.get("xp")
        for name in names:
            plain = getattr(ops, name)
            ops.__dict__[name] = _on_thread(me, wrap(name, plain), plain)
        ops.__dict__["xp"] = _OnThread(me, xp, ops.xp)
        try:
            yield
        finally:
            for name in names:
                ops.__dict__.pop(name, None)
            if saved_xp is None:
                ops.__dict__.pop("xp", None)
            else:
                ops.__dict__["xp"] = saved_xp
