"""CuPy backend: the generic code on a CUDA device, plus fused elementwise kernels.

Only this module (and `select`) import cupy. The kernels' CUDA C is in cuda_kernels.py (the step's
sums in metric_kernels.py); the image methods are in cupy_images.py. Each fused kernel has the
generic `Ops` method as its reference and a GPU test comparing the two (tests/test_fused_kernels.py,
on a GPU or the CPU stand-in).
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from . import _cublas
from .base import Array
from .cuda_kernels import (
    build_activation_kernel,
    build_kernel,
    column_chunks_source,
    counting_source,
    row_source,
)
from .cupy_images import CupyImages
from .metric_kernels import ticket_word, ticket_words


class CupyOps(CupyImages):  # pragma: no cover - needs a CUDA device
    name = "cupy"

    def __init__(self, device_id: int = 0) -> None:
        import cupy

        super().__init__()
        self.xp = cupy
        self.device_id = device_id
        self.device = cupy.cuda.Device(device_id)
        self._kernels: dict[str, Any] = {}
        self.blas: Any = None  # a capturable cuBLAS GEMM (`_cublas.routed`) while a step program needs one

    def describe(self) -> str:
        return f"cupy:{self.device_id}"

    def info(self) -> dict[str, str]:
        props = self.xp.cuda.runtime.getDeviceProperties(self.device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return {
            **super().info(),
            "cupy": self.xp.__version__,
            "device": name,
            "cuda_runtime": str(self.xp.cuda.runtime.runtimeGetVersion()),
            "memory_gib": f"{props['totalGlobalMem'] / 2**30:.1f}",
        }

    def asarray(self, a: Any, dtype: Any = None) -> Array:
        with self.device:
            return self.xp.asarray(a, dtype=dtype)

    def zeros(self, shape: tuple[int, ...] | int, dtype: Any) -> Array:
        with self.device:
            return self.xp.zeros(shape, dtype=dtype)

    def arange_u32(self, n: int) -> Array:
        a = self._arange_cache.get(n)
        if a is None:
            with self.device:
                a = self.xp.arange(n, dtype=self.xp.uint32)
            self._arange_cache[n] = a
        return a

    def _to_numpy(self, a: Array) -> np.ndarray:
        return self.xp.asnumpy(a)

    def is_native(self, a: Any) -> bool:
        return isinstance(a, self.xp.ndarray) and a.device.id == self.device_id

    @property
    def max_fused_classes(self) -> int:
        """The widest output the fused loss kernels take; a wider one runs the loss's plain code."""
        return _MAX_ROW

    def fits_on_device(self, nbytes: int) -> bool:
        if self.max_resident_bytes is not None:
            return nbytes <= self.max_resident_bytes
        with self.device:
            free, _ = self.xp.cuda.runtime.memGetInfo()
            pool = self.xp.get_default_memory_pool()
            free += pool.free_bytes()
        # leave half for activations, gradients and the allocator's slack
        return nbytes <= free // 2

    def activate(self) -> AbstractContextManager[Any]:
        return self.device

    def synchronize(self) -> None:
        self.device.synchronize()

    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        blas = self.blas
        if blas is not None and blas.supports(a, b) and (out is None or out.flags.c_contiguous):
            return blas(a, b, out)
        return self.xp.matmul(a, b, out=out)

    fuses_launches = True

    def runs_in_one_call(self, method: str) -> bool:
        # `gemm_sub` is one cuBLAS GEMM (β = 1): the direct binding in a captured step, CuPy's wrappers eagerly
        return method == "gemm_sub" and (self.blas is not None or _cublas.eager_gemm_for(self) is not None)

    def gemm_sub(self, a: Array, b: Array, c: Array) -> None:
        # c ← c + (−1)·aᵀb in one GEMM: b carries η already, and α = −1, β = 1 round as c − aᵀb does
        blas = self.blas if self.blas is not None else _cublas.eager_gemm_for(self)
        if blas is not None and blas.supports(a.T, b) and c.flags.c_contiguous and c.dtype == a.dtype:
            blas(a.T, b, c, alpha=-1.0, beta=1.0)
            return
        super().gemm_sub(a, b, c)

    def take_rows(self, a: Array, idx: Array, out: Array | None = None) -> Array:
        # straight into the fixed batch buffer: one launch per array, outside a captured step
        if out is not None and out.flags.c_contiguous and out.dtype == a.dtype:
            return self.xp.take(a, idx, axis=0, out=out)
        return super().take_rows(a, idx, out)

    def take_rows_into(self, sources: list[Array], idx: Array, outs: list[Array]) -> None:
        # two arrays (x and y) in one launch: the wider one's elements are the threads, each of the first
        # `narrow` columns of a row also copies the other's element
        pair = len(sources) == 2 and all(
            o.flags.c_contiguous and a.flags.c_contiguous and a.dtype == o.dtype and a.shape[1:] == o.shape[1:]
            for a, o in zip(sources, outs, strict=True)
        )
        n = int(idx.shape[0]) if idx.ndim == 1 else -1
        if not pair or n <= 0 or any(int(o.shape[0]) != n for o in outs) or idx.dtype.kind not in "iu":
            super().take_rows_into(sources, idx, outs)
            return
        widths = [a.size // max(int(a.shape[0]), 1) for a in sources]
        w, v = (0, 1) if widths[0] >= widths[1] else (1, 0)
        if widths[v] == 0:
            super().take_rows_into(sources, idx, outs)
            return
        args = (sources[w], sources[v], self.xp.ascontiguousarray(idx), np.int64(widths[w]), np.int64(widths[v]))
        self._kernel("take_rows_pair")(*args, outs[w], outs[v], size=n * widths[w])

    def allreduce_sum(self, comm: Any, buf: Array) -> None:
        nccl_comm = self._nccl(comm)
        if nccl_comm is None:  # no NCCL, or ranks sharing one GPU: stage through the host
            super().allreduce_sum(comm, buf)
            return
        from cupy.cuda import nccl

        dtype = nccl.NCCL_FLOAT32 if buf.dtype == np.float32 else nccl.NCCL_FLOAT64
        with self.device:
            stream = self.xp.cuda.get_current_stream().ptr
            nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, dtype, nccl.NCCL_SUM, stream)

    def _nccl(self, comm: Any) -> Any:
        """The NCCL communicator over the ranks of mpi4py communicator `comm`, or None to stage through MPI.

        One per `comm` (kept with it, so its id is not reused while cached). Whether NCCL is used is
        decided by every rank together: each finds out locally (import, PCI bus), then one allgather
        that every rank reaches, so no rank waits in a collective the others skipped.
        """
        cache: dict[int, tuple[Any, Any]] = self.__dict__.setdefault("_nccl_comms", {})
        hit = cache.get(id(comm))
        if hit is not None and hit[0] is comm:
            return hit[1]
        bus: str | None = None
        try:
            from cupy.cuda import nccl

            if nccl.available:
                bus = str(self.xp.cuda.runtime.deviceGetPCIBusId(self.device_id))
        except Exception:  # no NCCL in this CuPy build: this rank says so in the allgather below
            bus = None
        buses = comm.allgather(bus)
        nccl_comm = None
        if all(b is not None for b in buses) and len(set(buses)) == len(buses):
            uid, problem = None, None
            if comm.Get_rank() == 0:
                try:
                    uid = nccl.get_unique_id()
                except Exception as e:  # sent to every rank, so all raise together
                    problem = f"{type(e).__name__}: {e}"
            uid, problem = comm.bcast((uid, problem), root=0)
            if problem is not None:
                raise RuntimeError(f"NCCL: rank 0 could not make the communicator's id ({problem})")
            with self.device:  # a collective across ranks: an error here is raised, never swallowed
                nccl_comm = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        cache[id(comm)] = (comm, nccl_comm)
        return nccl_comm

    def dense_forward(self, x: Array, w: Array, b: Array | None, act: Any, keep_u: bool = True) -> tuple[Array, Array]:
        u = self.matmul(x, w)
        return u, act.apply_biased(self, u, b)  # `bias_softmax` or `bias_activation` below

    def bias_softmax(self, act: Any, u: Array, b: Array | None) -> Array:
        if u.ndim != 2 or u.shape[1] > _MAX_ROW:
            return super().bias_softmax(act, u, b)
        h = self.xp.empty_like(u)
        bias = b if b is not None else self.xp.zeros(u.shape[1], dtype=u.dtype)
        self._rows("softmax", u.dtype, u.shape[0], (u, bias, h, np.int32(u.shape[0]), np.int32(u.shape[1])))
        return h

    def bias_activation(self, act: Any, u: Array, b: Array | None) -> Array:
        # one kernel for the bias and φ, from the activation's own CUDA C
        if act.cuda_forward is None:
            return super().bias_activation(act, u, b)
        h = self.xp.empty_like(u)
        bias = b if b is not None else u.dtype.type(0)
        self._activation_kernel("fwd", act)(bias, u.dtype.type(getattr(act, "alpha", 0.0)), u, h)
        return h

    def activation_backward(self, act: Any, u: Array, h: Array, dh: Array) -> Array:
        if act.cuda_backward is not None:
            return self._activation_kernel("bwd", act)(u, h, dh, dh.dtype.type(getattr(act, "alpha", 0.0)))
        return act.backward(self.xp, u, h, dh)

    def activation_backward_sum(self, act: Any, u: Array, h: Array, dh: Array, out: Array, mode: str) -> Array:
        n = int(u.shape[0]) if u.ndim == 2 else 0
        # one thread per unit walks the rows: one launch for ∂L/∂u and the sums, worth it while the
        # batch is short (a long column is a long serial loop; then a separate tree reduction wins)
        if (
            act.cuda_backward is None
            or u.ndim != 2
            or n >= 2**31
            or dh.dtype.char not in "fd"
            or not all(a.flags.c_contiguous and a.shape == u.shape and a.dtype == dh.dtype for a in (u, h, dh))
            or not out.flags.c_contiguous
            or out.dtype != dh.dtype
        ):
            return super().activation_backward_sum(act, u, h, dh, out, mode)
        du = self.xp.empty_like(dh)
        alpha = dh.dtype.type(getattr(act, "alpha", 0.0))
        if n > _MAX_SUM_ROWS:
            self._column_chunks(act, u, h, dh, alpha, mode == "sub", du, out)
            return du
        k = self._activation_kernel("bwdsum", act)
        k(u, h, dh, alpha, np.int32(n), np.int32(u.shape[1]), mode == "sub", du, out)
        return du

    def _column_chunks(
        self, act: Any, u: Array, h: Array, dh: Array, alpha: Any, sub: bool, du: Array, out: Array
    ) -> None:
        """`activation_backward_sum` past `_MAX_SUM_ROWS` rows in one launch: a thread per (block of rows, unit),
        the blocks' sums added in block order by the unit's last thread (cuda_kernels.column_chunks_source)."""
        n, k = (int(d) for d in u.shape)
        t = "float" if dh.dtype == np.float32 else "double"
        key = f"bwdchunks:{t}:{act.cuda_backward}"
        fn = self._kernels.get(key)
        if fn is None:
            module = self.xp.RawModule(
                code=column_chunks_source(act.cuda_backward), name_expressions=[f"xpnet_bwdchunks<{t}>"]
            )
            fn = self._kernels[key] = module.get_function(f"xpnet_bwdchunks<{t}>")
        chunks = -(-n // _CHUNK_ROWS)
        part = self.xp.empty(chunks * k, dtype=dh.dtype)
        threads = 256
        args = (u, h, dh, alpha, np.int32(n), np.int32(k), np.int32(_CHUNK_ROWS), np.int32(sub), du, part)
        fn((-(-chunks * k // threads),), (threads,), (*args, ticket_words(self.xp, k), out))

    def bias_grad(self, du: Array, out: Array) -> None:
        self.xp.sum(du, axis=0, out=out)

    def dropout_forward(self, x: Array, keys: tuple[Any, Any], rate: float, offset: Any = 0) -> tuple[Array, Array]:
        # keys and offset may be 0-d device arrays (the step's counters): the kernel reads them there
        threshold = min(int(rate * 4294967296.0), 4294967295)
        scale = x.dtype.type(1.0 / (1.0 - rate))
        y = self.xp.empty_like(x)
        mask = self.xp.empty_like(x)
        k0, k1, off = (self._u32(v) for v in (*keys, offset))
        self._kernel("dropout")(x, k0, k1, np.uint32(threshold), scale, off, y, mask)
        return y, mask

    def dropout_step(self, x: Array, base: int, step: Array, rate: float, offset: Any = 0) -> tuple[Array, Array]:
        # the keys of `dropout_keys` computed by every thread from the device counter: one launch, not 27
        threshold = min(int(rate * 4294967296.0), 4294967295)
        scale = x.dtype.type(1.0 / (1.0 - rate))
        y = self.xp.empty_like(x)
        mask = self.xp.empty_like(x)
        b, st, off = (self._u32(v) for v in (base, step, offset))
        self._kernel("dropout_step")(x, b, st, np.uint32(threshold), scale, off, y, mask)
        return y, mask

    def _u32(self, v: Any) -> Any:
        return v if isinstance(v, self.xp.ndarray) else np.uint32(int(v) & 0xFFFFFFFF)

    def fused_loss(self, loss: Any, act: Any, y: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        return loss.fused(self, act, y, u, scale)  # the loss calls one of the two methods below where it is one

    def softmax_crossentropy(self, loss: Any, act: Any, y: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        return self._softmax_ce("cce", loss, act, y, u, scale)

    def sparse_softmax_crossentropy(
        self, loss: Any, act: Any, y: Array, u: Array, scale: Any
    ) -> tuple[Array, Array, Array]:
        return self._softmax_ce("sce", loss, act, y, u, scale)

    def _softmax_ce(self, kind: str, loss: Any, act: Any, y: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        """One thread per row: softmax, the loss, its gradient (scaled) and the probabilities; kind "sce"/"cce"."""
        if u.ndim != 2 or u.shape[1] > _MAX_ROW or not u.flags.c_contiguous:
            return self.preactivation_loss(loss, act, y, u, scale)
        n, k = u.shape
        value = self.xp.empty(n, dtype=u.dtype)
        grad = self.xp.empty_like(u)
        probs = self.xp.empty_like(u)
        if kind == "sce":
            y = self.xp.ascontiguousarray(y, dtype=self.xp.int32)
        else:
            y = self.xp.ascontiguousarray(y, dtype=u.dtype)
        # scale (η/batch or 1/batch) is read from device memory: a 0-d array of u's dtype
        scale = scale if isinstance(scale, self.xp.ndarray) else self.xp.asarray(scale, dtype=u.dtype)
        self._rows(kind, u.dtype, n, (u, y, value, grad, probs, np.int32(n), np.int32(k), scale))
        # with from_logits the model's output is u itself, not the softmax the loss needed
        return value, grad, act.output_of_softmax(self.xp, u, probs)

    def loss_adds_bias(self, loss: Any, act: Any) -> bool:
        # the sparse softmax cross-entropy's own `fused` (which calls `sparse_softmax_crossentropy` here),
        # known by its name: importing xpnet.losses from the backend would close an import circle
        fused = type(loss).fused
        own = getattr(fused, "__module__", "") == "xpnet.losses"
        return own and fused.__qualname__ == "SparseCategoricalCrossentropy.fused" and "fused" not in vars(loss)

    def fused_loss_with_bias(
        self,
        loss: Any,
        act: Any,
        y: Any,
        u: Array,
        bias: Array,
        scale: Array | float,
        db: Array | None = None,
        sums: Any = None,
        mode: str = "set",
        running: Any = None,
        counter: Any = None,
    ) -> tuple[Array, Array, Array]:
        # one launch for u + b, the softmax cross-entropy, Σ_rows du (or db −= it), the batch's [Σ loss, hits] and
        # the optimizer's t + 1 (the row kernel "sce_bias")
        if not self._bias_kernel_fits(loss, act, u, bias, db, mode, counter):
            return super().fused_loss_with_bias(loss, act, y, u, bias, scale, db, sums, mode, running, counter)
        n, k = (int(d) for d in u.shape)
        value, grad, probs = self.xp.empty(n, dtype=u.dtype), self.xp.empty_like(u), self.xp.empty_like(u)
        # the hits compare labels as int32: only labels that are int32 already (fit's) are counted here
        count = sums is not None and isinstance(y, self.xp.ndarray) and y.dtype == np.int32 and y.shape == (n,)
        y = self.xp.ascontiguousarray(y, dtype=self.xp.int32)
        scale = scale if isinstance(scale, self.xp.ndarray) else self.xp.asarray(scale, dtype=u.dtype)
        # the model's output, over which the hits' argmax runs: the probabilities (softmax) or u (from logits),
        # buffers the kernel fills; another activation's is computed after the launch, and counted apart
        out = act.output_of_softmax(self.xp, u, probs)
        buffer = out is probs or out is u
        count = count and buffer
        # the running sums are read by the last thread only: 0-d arrays of u's dtype, or the kernel counts nothing
        run = running is not None
        if run and not (len(running) == 2 and all(self._scalar_of(a, u.dtype) for a in running)):
            count = run = False
        loss_sum, hits = self.xp.empty((), dtype=u.dtype), self.xp.empty((), dtype=u.dtype)
        head = (u, bias, y, value, grad, probs, np.int32(n), np.int32(k), scale)
        want_db = 0 if db is None else 2 if mode == "sub" else 1
        wants = (np.int32(want_db), bias if db is None else db, np.int32(count))
        adds = (np.int32(run), *(running if run else (loss_sum, hits)))
        tail = (np.int32(out is probs), loss_sum, hits, *adds, *_count_args(self, counter), ticket_word(self.xp))
        self._rows("sce_bias", u.dtype, n, (*head, *wants, *tail))
        if count:
            sums += [loss_sum, hits]
        return value, grad, out if buffer else act.output_of_softmax(self.xp, u, probs)

    def _scalar_of(self, a: Any, dtype: Any) -> bool:
        """Whether `a` is a 0-d device array of `dtype` (a kernel reads it through a pointer)."""
        return isinstance(a, self.xp.ndarray) and a.ndim == 0 and a.dtype == dtype

    def _bias_kernel_fits(
        self, loss: Any, act: Any, u: Array, bias: Array, db: Any, mode: str = "set", counter: Any = None
    ) -> bool:
        """Whether `fused_loss_with_bias`'s kernel takes these: u (n, k) C-contiguous float, n·k within the
        last thread's serial sums, bias and db (k,) contiguous of u's dtype, mode "set" or "sub", the count t
        None or a 0-d float64 device array (the last thread reads and writes it)."""
        n, k = (int(d) for d in u.shape) if u.ndim == 2 else (0, 0)
        return (
            self.loss_adds_bias(loss, act)
            and mode in ("set", "sub")
            and (counter is None or self._scalar_of(counter, np.float64))
            and 0 < n * k <= _MAX_BIAS_SUM
            and k <= _MAX_ROW
            and u.dtype.char in "fd"
            and u.flags.c_contiguous
            and all(
                isinstance(a, self.xp.ndarray) and a.flags.c_contiguous and a.shape == (k,) and a.dtype == u.dtype
                for a in (bias, bias if db is None else db)
            )
        )

    def _rows(self, name: str, dtype: Any, n: int, args: tuple[Any, ...]) -> None:
        """Launch a one-thread-per-row kernel (rows are short: the class axis)."""
        suffix = "f32" if dtype == np.float32 else "f64"
        fn = self._kernels.get(f"{name}_{suffix}")
        if fn is None:
            fn = self.xp.RawModule(code=row_source(suffix)).get_function(f"xpnet_{name}_{suffix}")
            self._kernels[f"{name}_{suffix}"] = fn
        if n == 0:
            return
        threads = 128
        fn(((n + threads - 1) // threads,), (threads,), args)

    def _kernel(self, name: str) -> Any:
        k = self._kernels.get(name)
        if k is None:
            k = build_kernel(self.xp, name)
            self._kernels[name] = k
        return k

    def _activation_kernel(self, kind: str, act: Any) -> Any:
        """The fused kernel `kind` ("fwd", "bwd", "bwdsum") of `act`, built from its CUDA C, one per source."""
        body = act.cuda_forward if kind == "fwd" else act.cuda_backward
        key = f"{kind}:{body}"
        k = self._kernels.get(key)
        if k is None:
            k = self._kernels[key] = build_activation_kernel(
                self.xp, kind, f"xpnet_{kind}_{type(act).__name__.lower()}", body
            )
        return k

    def dropout_mask(
        self, shape: tuple[int, ...], keys: tuple[Any, Any], rate: float, dtype: Any, offset: Any = 0
    ) -> Array:
        out = self.xp.empty(shape, dtype=dtype)
        threshold = min(int(rate * 4294967296.0), 4294967295)
        k0, k1, off = (self._u32(v) for v in (*keys, offset))
        self._kernel("dropout_mask")(k0, k1, np.uint32(threshold), out.dtype.type(1.0 / (1.0 - rate)), off, out)
        return out

    # learning rates arrive as 0-d device arrays in p's dtype: the kernels broadcast them from device memory
    def sgd_update(self, p: Array, g: Array, m: Array | None, lr: Any, momentum: float, nesterov: bool) -> None:
        if m is None:
            super().sgd_update(p, g, m, lr, momentum, nesterov)
        else:
            self._kernel("sgd_momentum")(g, lr, p.dtype.type(momentum), bool(nesterov), p, m)

    def subtract_counting(self, p: Array, g: Array, t: Array) -> None:
        # no other thread reads t, so the first one may move it: one launch, not a subtract and an add
        if p.size and p.flags.c_contiguous and g.flags.c_contiguous and p.shape == g.shape and t.dtype == np.float64:
            self._kernel("subtract_counting")(g, p, t)
        else:
            super().subtract_counting(p, g, t)

    def adam_update(
        self, p: Array, g: Array, m: Array, v: Array, lr_t: Any, beta_1: float, beta_2: float, eps: float
    ) -> None:
        t = p.dtype.type
        self._kernel("adam")(g, lr_t, t(1.0 - beta_1), t(1.0 - beta_2), t(eps), p, m, v)

    def adam_step(
        self, p: Array, g: Array, m: Array, v: Array, lr: Array, t: Array, beta_1: float, beta_2: float, eps: float
    ) -> None:
        # lr and t are 0-d float64 device arrays, read by every thread: no launches for the correction
        ty = p.dtype.type
        args = (np.float64(beta_1), np.float64(beta_2), ty(1.0 - beta_1), ty(1.0 - beta_2), ty(eps))
        self._kernel("adam_step")(g, lr, t, *args, p, m, v)

    def adam_counting(
        self, p: Array, g: Array, m: Array, v: Array, lr: Array, t: Array, beta_1: float, beta_2: float, eps: float
    ) -> None:
        # t read by every thread and moved by the last one (see cuda_kernels): one launch, not an add and a step
        arrays = (p, g, m, v)
        if (
            p.dtype.char not in "fd"
            or not all(a.flags.c_contiguous and a.shape == p.shape and a.dtype == p.dtype for a in arrays)
            or not all(isinstance(a, self.xp.ndarray) and a.dtype == np.float64 and a.size == 1 for a in (lr, t))
        ):
            super().adam_counting(p, g, m, v, lr, t, beta_1, beta_2, eps)
            return
        ty = p.dtype.type
        args = (np.float64(beta_1), np.float64(beta_2), ty(1.0 - beta_1), ty(1.0 - beta_2), ty(eps))
        self._counting("adam", p, (g, p, m, v, t, ticket_word(self.xp), lr, np.int64(p.size), *args))

    def dropout_counting(self, x: Array, base: int, step: Array, rate: float, offset: Any = 0) -> tuple[Array, Array]:
        # the count read by every thread and moved by the last one (see cuda_kernels): one launch, not two
        counters = (step, offset)
        if (
            x.dtype.char not in "fd"
            or not x.flags.c_contiguous
            or not all(isinstance(a, self.xp.ndarray) and a.dtype == np.uint32 and a.size == 1 for a in counters)
        ):
            return super().dropout_counting(x, base, step, rate, offset)
        threshold = min(int(rate * 4294967296.0), 4294967295)
        y, mask = self.xp.empty_like(x), self.xp.empty_like(x)
        head = (x, y, mask, step, offset, ticket_word(self.xp), np.int64(x.size))
        tail = (np.uint32(int(base) & 0xFFFFFFFF), np.uint32(threshold), x.dtype.type(1.0 / (1.0 - rate)))
        self._counting("dropout", x, (*head, *tail))
        return y, mask

    def _counting(self, name: str, like: Array, args: tuple[Any, ...]) -> None:
        """Launch `xpnet_{name}_counting<T>` over like's elements, on a grid of at most 256 blocks: each
        thread draws one ticket (one atomic on one word), so the grid stays small and each thread strides."""
        key = f"{name}_counting_{like.dtype.char}"
        fn = self._kernels.get(key)
        if fn is None:
            names = [f"xpnet_{k}_counting<{t}>" for k in ("adam", "dropout") for t in ("float", "double")]
            module = self.xp.RawModule(code=counting_source(), name_expressions=names)
            for full in names:
                kind, t = full[len("xpnet_") :].split("_counting<")
                self._kernels[f"{kind}_counting_{'f' if t == 'float>' else 'd'}"] = module.get_function(full)
            fn = self._kernels[key]
        threads = 256
        blocks = max(1, min((like.size + threads - 1) // threads, 256))
        fn((blocks,), (threads,), args)

    def rmsprop_update(
        self, p: Array, g: Array, v: Array, m: Array | None, lr: Any, rho: float, momentum: float, eps: float
    ) -> None:
        if m is not None:
            super().rmsprop_update(p, g, v, m, lr, rho, momentum, eps)
            return
        t = p.dtype.type
        self._kernel("rmsprop")(g, lr, t(rho), t(eps), p, v)

    def full(self, shape: tuple[int, ...], value: float, dtype: Any) -> Array:
        with self.device:
            return self.xp.full(shape, value, dtype=dtype)


_MAX_ROW = 1024
_MAX_SUM_ROWS = 256  # activation_backward_sum's fused kernel: rows one thread sums serially
# fused_loss_with_bias: scores the last thread sums for ∂L/∂b (a serial tail; past it the plain sum runs)
_MAX_BIAS_SUM = 16384
_CHUNK_ROWS = 64  # past _MAX_SUM_ROWS: rows per thread, whose sums the unit's last thread adds


_IDLE: dict[Any, Array] = {}


def _count_args(ops: CupyOps, counter: Array | None) -> tuple[Any, Any]:
    """The loss kernel's (want_t, t): t + 1 by its last thread where a count is given."""
    return (np.int32(0), _idle_count(ops)) if counter is None else (np.int32(1), counter)


def _idle_count(ops: CupyOps) -> Array:
    """A float64 word the loss kernel is given for t when it counts nothing (never read or written there), one
    per device. Not an `ops` method: a capture keeps every array those return, and this one outlives the graph."""
    cp = sys.modules.get("cupy", ops.xp)  # the module: during a capture `xp` keeps what it makes for the graph
    key = (cp.ndarray, ops.device_id)
    word = _IDLE.get(key)
    if word is None:
        with ops.device:
            word = _IDLE[key] = cp.empty((), dtype=np.float64)
    return word
