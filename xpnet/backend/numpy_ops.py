"""NumPy backend: the generic code plus in-place hot spots that avoid temporaries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _cblas, _jit
from .base import Array, Ops
from .hashing import dropout_constants, mix_int
from .image_ops import _window
from .numpy_images import (
    _ZEROED_EXTRA,
    _empty_like_layout,
    _Halves,
    _halving,
    _matmul_by_columns,
    _matmul_nt_by_blocks,
    _max_pool_2x2,
    _max_pool_2x2_backward,
    _max_pool_2x2_wide,
    _max_pool_2x2_wide_backward,
    _nhwc,
    _Wide,
    _wide_base,
    _WideCtx,
    _WideHalves,
)


class NumpyOps(Ops):
    name = "numpy"
    xp = np
    device = None
    # a few MB of activations per block stay in cache between the GEMM, the bias and the activation
    inference_rows = 2048
    # predict() batches of at most this many rows run as uᵀ = Wᵀhᵀ (see `inference_program`)
    transposed_inference_rows: int | None = 256

    def __init__(self, jit: bool | None = None, blas: str | None = None) -> None:
        """jit: numba's loops for 2×2 pooling (None: installed, XPNET_JIT not 0); blas: the GEMMs' `_cblas.library`."""
        super().__init__()
        self._jit = _jit.wanted() if jit is None else jit
        self.cblas = _cblas.library(blas)
        self._gemm_kinds: dict[tuple[Any, ...], Any] = {}  # `_product`'s layout checks, once per kind of operands
        self._buffers_lock = threading.Lock()  # the kept buffers below: threads may predict at once
        if jit and self.kernels is None:
            raise ImportError(
                "NumpyOps(jit=True): numba's kernels are unavailable (pip install 'xpnet[jit]'; "
                "not with NUMBA_DISABLE_JIT=1)"
            )

    @property
    def kernels(self) -> Any:
        """numba's kernels, or None; numba is imported at the first use, not with the backend."""
        return _jit.kernels() if self._jit else None

    def info(self) -> dict[str, str]:
        extra = {"numba": self.kernels.numba} if self.kernels is not None else {}
        return {**super().info(), "numpy": np.__version__, "blas": self.cblas.label, **extra}

    # Diverging runs overflow; fit reports a non-finite loss itself, once, with advice. np.errstate itself,
    # with its arguments bound, so that a training call's entry runs no frame of a wrapper here.
    activate: Callable[[], AbstractContextManager[Any]] = staticmethod(
        partial(np.errstate, over="ignore", invalid="ignore", divide="ignore")
    )

    def asarray(self, a: Any, dtype: Any = None) -> Array:
        return np.asarray(a, dtype=dtype)

    def zeros(self, shape: tuple[int, ...] | int, dtype: Any) -> Array:
        return np.zeros(shape, dtype=dtype)

    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        return self._product(a, b, out)

    def _product(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """`self.cblas.matmul(a, b, out)`: np.matmul, or MKL's GEMM called from here, its layout checked once per
        kind of operands (`Blas.gemm_kind`), so that an eager step's products enter no other file."""
        if self.cblas.name != "mkl" or type(a) is not np.ndarray or type(b) is not np.ndarray:
            return np.matmul(a, b, out=out)
        if out is not None and type(out) is not np.ndarray:
            return np.matmul(a, b, out=out)
        o = None if out is None else (out.dtype, out.shape, out.strides, out.flags.writeable)
        key, kinds = (self.cblas, a.dtype, b.dtype, a.shape, b.shape, a.strides, b.strides, o), self._gemm_kinds
        kind = kinds.get(key, False)  # one look-up: another thread (predict) may clear the dict meanwhile
        if kind is False:
            if len(kinds) >= 4096:  # shapes without end (teaching tools, varied batches)
                kinds.clear()
            kind = kinds[key] = self.cblas.gemm_kind(a, b, out)
        if kind is None or (out is not None and (np.may_share_memory(out, a) or np.may_share_memory(out, b))):
            return np.matmul(a, b, out=out)
        fn, (order, ta, tb, m, n, k, alpha, _, lda, _, ldb, beta, _, ldc) = kind
        c = np.empty((m, n), a.dtype) if out is None else out
        fn(order, ta, tb, m, n, k, alpha, a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)
        return c

    def affine(self, x: Array, w: Array, b: Array | None) -> Array:
        u = self._product(x, w)
        if b is not None:
            u += b
        return u

    def take_rows(self, a: Array, idx: Array, out: Array | None = None) -> Array:
        # mode="clip" lets take write straight into `out` (the default mode buffers it); idx is in range
        return np.take(a, idx, axis=0, out=out, mode="clip" if out is not None else "raise")

    def take_rows_into(self, sources: list[Array], idx: Array, outs: list[Array]) -> None:
        # fit's gather every step: the arrays' own take, without two wrapper calls per array
        for a, out in zip(sources, outs, strict=True):
            a.take(idx, 0, out, "clip")

    def cast(self, x: Array, dtype: Any) -> Array:
        return np.asarray(x, dtype=dtype)

    def subtract_(self, p: Array, g: Array) -> None:
        np.subtract(p, g, out=p)

    def dropout_keys(self, base: int, step: Array) -> tuple[Any, Any]:
        # the counter lives in host memory here: the same keys from Python ints, without 15 tiny array ops
        k0 = mix_int(base ^ mix_int(int(step) ^ 0x85EBCA6B))
        return k0, mix_int(k0 + 0x632BE5AB)

    def dropout_mask(
        self, shape: tuple[int, ...], keys: tuple[Any, Any], rate: float, dtype: Any, offset: Any = 0
    ) -> Array:
        # the generic hash, written in place: 9 passes over uint32 instead of 14 fresh arrays
        n = int(np.prod(shape))
        h = np.add(self.arange_u32(n), np.uint32((int(keys[0]) + int(offset)) & 0xFFFFFFFF))
        h ^= np.uint32(int(keys[1]))
        t = np.empty_like(h)
        for shift, mult in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None)):
            np.right_shift(h, shift, out=t)
            h ^= t
            if mult is not None:
                h *= np.uint32(mult)
        threshold = min(int(rate * 4294967296.0), 4294967295)
        keep = np.greater_equal(h, np.uint32(threshold))
        return np.multiply(keep, 1.0 / (1.0 - rate), dtype=dtype).reshape(shape)

    def dropout_forward(self, x: Array, keys: tuple[Any, Any], rate: float, offset: Any = 0) -> tuple[Array, Array]:
        """-> (x · mask, mask), both like x: numba's one pass where it applies, else the hash's NumPy passes."""
        kernels = self.kernels
        if kernels is None or x.dtype not in _jit.DTYPES or not x.flags.c_contiguous or not 0.0 < rate < 1.0:
            return super().dropout_forward(x, keys, rate, offset)
        if type(self).dropout_mask is not NumpyOps.dropout_mask:  # a subclass's own mask: it runs, not our hash
            return super().dropout_forward(x, keys, rate, offset)
        mask, y = np.empty_like(x), np.empty_like(x)
        kernels.dropout_apply(
            x.reshape(-1), *dropout_constants(keys, rate, x.dtype, offset), mask.reshape(-1), y.reshape(-1)
        )
        return y, mask

    def runs_in_one_call(self, method: str) -> bool:
        # `gemm_sub` is one GEMM only with a CBLAS symbol at hand (else matmul, then a subtraction)
        return method == "gemm_sub" and self.cblas.gemm_sub is not None

    def gemm_sub(self, a: Array, b: Array, c: Array) -> None:
        if self.cblas.gemm_sub is None or not self.cblas.gemm_sub(a, b, c):
            np.subtract(c, self.cblas.matmul(a.T, b), out=c)

    def bias_sub(self, du: Array, b: Array) -> None:
        np.subtract(b, np.add.reduce(du, axis=0), out=b)

    def allreduce_sum(self, comm: Any, buf: Array) -> None:
        from mpi4py import MPI

        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)  # straight from the gradient buffer, no copy

    def dense_forward(self, x: Array, w: Array, b: Array | None, act: Any, keep_u: bool = True) -> tuple[Array, Array]:
        u = self._product(x, w)
        if b is not None:
            u += b
        return u, self.activation_forward(act, u, in_place=not keep_u)

    def activation_forward(self, act: Any, u: Array, in_place: bool = False) -> Array:
        return act.apply(self, u, in_place)  # the activation calls `relu`/`softmax` below where it is one

    def activation_backward(self, act: Any, u: Array, h: Array, dh: Array) -> Array:
        return act.backprop(self, u, h, dh)

    def relu(self, act: Any, u: Array, in_place: bool = False) -> Array:
        return np.maximum(u, 0.0, dtype=u.dtype, out=u if in_place else None)

    def backprop_relu(self, act: Any, u: Array, h: Array, dh: Array) -> Array:
        # h > 0 exactly where u > 0; h is contiguous where u may be a strided view (a conv's output)
        positive = (u if h is None else h) > 0.0
        # dh is a fresh temporary from the layer above, so it can take the result
        return np.multiply(dh, positive, out=dh) if dh.flags.writeable else dh * positive

    def softmax(self, act: Any, u: Array, in_place: bool = False) -> Array:
        if u.ndim != 2:
            return act.forward(np, u)
        h = np.subtract(u, np.maximum.reduce(u, axis=1, keepdims=True), out=u if in_place else None)
        np.exp(h, out=h)
        h /= np.add.reduce(h, axis=1, keepdims=True)
        return h

    def bias_grad(self, du: Array, out: Array) -> None:
        np.add.reduce(du, axis=0, out=out)

    def fused_loss(self, loss: Any, act: Any, y: Array, u: Array, scale: float) -> tuple[Array, Array, Array]:
        return loss.fused(self, act, y, u, scale)  # the loss calls `sparse_softmax_crossentropy` where it is one

    def sparse_softmax_crossentropy(
        self, loss: Any, act: Any, y: Array, u: Array, scale: Any
    ) -> tuple[Array, Array, Array]:
        if u.ndim != 2:
            return self.preactivation_loss(loss, act, y, u, scale)
        # 1-D indices of each row's label: a flat take/put is cheaper than u[rows, y]
        idx = self._row_starts(*u.shape) + y
        m = np.maximum.reduce(u, axis=1)
        p = np.subtract(u, m[:, None])
        np.exp(p, out=p)
        s = np.add.reduce(p, axis=1)
        p /= s[:, None]
        value = np.log(s)
        value += m
        value -= u.reshape(-1).take(idx)
        grad = np.multiply(p, scale)
        grad.reshape(-1)[idx] -= scale
        # with from_logits the model's output is u itself, not the softmax the loss needed
        return value, grad, act.output_of_softmax(np, u, p)

    def _row_starts(self, n: int, k: int) -> Array:
        r = getattr(self, "_row_starts_cache", None)
        if r is None or r.shape[0] != n or (n > 1 and r[1] != k):
            r = self._row_starts_cache = np.arange(n) * k
        return r

    def adam_update(
        self, p: Array, g: Array, m: Array, v: Array, lr_t: float, beta_1: float, beta_2: float, eps: float
    ) -> None:
        t = self._scratch(g)
        np.subtract(g, m, out=t)
        t *= 1.0 - beta_1
        m += t
        np.multiply(g, g, out=t)
        t -= v
        t *= 1.0 - beta_2
        v += t
        np.sqrt(v, out=t)
        t += eps
        np.divide(m, t, out=t)
        t *= lr_t
        p -= t

    def inference_route(self, chain: list[Any] | None) -> str | None:
        limit = self.transposed_inference_rows
        layers = [a for a in chain or [] if a is not None]
        if limit is None or not layers or not all(getattr(a.activation, "elementwise", False) for a in layers[:-1]):
            return None
        return f"batches of at most {limit} rows, 4 or more; else layer by layer"

    def inference_program(self, chain: list[Any] | None, n: int, rows: int) -> Callable[[Array, Array], None] | None:
        """Small batches as uᵀ = Wᵀhᵀ with contiguous Wᵀ copies (PyTorch's weight layout).

        OpenBLAS is ~12% faster at that product than at u = hW for batches of a few dozen rows.
        Copying Wᵀ costs about one batch, so only for predictions of at least 4 batches, and only
        for chains whose hidden activations are elementwise (`inference_route`).
        """
        limit = self.transposed_inference_rows
        if chain is None or limit is None or rows > limit or n < 4 * rows or self.inference_route(chain) is None:
            return None
        layers = [a for a in chain if a is not None]
        plan = [
            (np.ascontiguousarray(a.kernel.T), None if a.bias is None else a.bias[:, None], a.activation)
            for a in layers
        ]

        def logits(x: Array, out: Array) -> None:
            h = x.reshape(x.shape[0], -1).T
            for i, (wt, bias, act) in enumerate(plan):
                u = self.cblas.matmul(wt, h)
                if bias is not None:
                    u += bias
                h = u if i == len(plan) - 1 else self.activation_forward(act, u, in_place=True)
            out[...] = h.T

        return logits

    def _scratch(self, like: Array) -> Array:
        buf = getattr(self, "_scratch_buf", None)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = np.empty_like(like)
            self._scratch_buf = buf
        return buf

    # --- images: strided views instead of per-offset slices, in-place passes ---
    def im2col(
        self, x: Array, size: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int]
    ) -> Array:
        # one copy out of a strided view of every window, instead of kh·kw slices and a stack
        (kh, kw), (sh, sw) = size, strides
        xpad = self.pad2d(x, pads)
        n, hp, wp, c = xpad.shape
        oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        s = xpad.strides
        view = as_strided(xpad, (n, oh, ow, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1], s[2], s[3]), writeable=False)
        return view.reshape(n, oh, ow, kh * kw * c)

    # patch matrices up to this size stay in cache; inference works through batches of more than twice
    # that in slices (a batch of 32 LeNet images, 6.3 MB of patches, ran 1.17x faster whole than as
    # 21 + 11 images once patch matrices were reused; 10,000 images ran no faster in 8 MB slices)
    conv_patch_bytes = 4 << 20
    # inference copies the patches of this many bytes' worth of images, then multiplies them, block
    # by block (LeNet at batch 32: 6 and 4 images; ~0.25 ms of 2.9 ms less than the whole batch at once)
    conv_block_bytes = 640 << 10

    def conv2d_forward(
        self,
        x: Array,
        kernel: Array,
        bias: Array | None,
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_ctx: bool = True,
    ) -> tuple[Array, Any]:
        """Stride 1: the patches of a channels-first padded copy, one GEMM (bias included), u a view of it.

        Each channel of the padded batch is one flat run, so window offset (i, j) is the shift
        i·wp + j of that run and the patch matrix P (kh·kw·c + 1, n·oh·wp) is kh·kw·c contiguous
        slices (one copy at memory speed) and a row of ones that carries the bias through the GEMMs.
        Its wp − ow extra columns per output row see pixels of the next row: they are computed
        (a few % more GEMM), never read, and get a zero gradient. u = [W; b]ᵀ P is (f, n·oh·wp):
        returned as an (n, oh, ow, f) view, channels-first in memory, which NumPy's elementwise
        passes and the pooling below follow.
        """
        n, h, w, c = x.shape
        kh, kw = kernel.shape[:2]
        top, bottom, left, right = pads
        per_image = (kh * kw * c + 1) * (top + h + bottom) * (left + w + right) * x.itemsize
        rows = max(1, self.conv_patch_bytes // per_image)
        if not need_ctx and n > 2 * rows:  # inference on a large batch: slices, so the patch matrix stays small
            out = None
            for lo in range(0, n, rows):
                part = (
                    self._conv2d_wide(x[lo : lo + rows], kernel, bias, pads, False, rows)
                    if tuple(strides) == (1, 1)
                    else super().conv2d_forward(x[lo : lo + rows], kernel, bias, strides, pads)
                )[0]
                if out is None:
                    out = _empty_like_layout((n, *part.shape[1:]), part, part.dtype, zero=False)
                out[lo : lo + rows] = part
            return out, None
        if tuple(strides) != (1, 1):
            return super().conv2d_forward(x, kernel, bias, strides, pads)
        per_image = (kh * kw * c + 1) * (top + h + bottom - kh + 1) * (left + w + right) * x.itemsize
        # training: all the patches, kept for ∂W; a batch for inference: a few images' at a time,
        # each block still in cache when its GEMM reads it (slices of a larger one: whole)
        group = n if need_ctx else max(1, min(n, self.conv_block_bytes // per_image))
        return self._conv2d_wide(x, kernel, bias, pads, need_ctx, group)

    def _conv2d_wide(
        self, x: Array, kernel: Array, bias: Array | None, pads: tuple[int, int, int, int], need_ctx: bool, group: int
    ) -> tuple[Array, Any]:
        """The stride-1 convolution of `conv2d_forward`, its patches copied and multiplied `group` images at a time."""
        n, h, w, c = x.shape
        assert group == n or not need_ctx, "the backward pass needs every image's patches"
        kh, kw, _, f = kernel.shape
        top, bottom, left, right = pads
        g = _Wide(n, h, w, c, kh, kw, top, top + h + bottom, left, left + w + right)
        pad_key = ("pad", n, h, w, c, kh, kw, top, left, g.hp, g.wp)
        buf = self._zeroed(pad_key, (g.buffer_size,), x.dtype)  # the padding is never written: stays 0
        g.interior(buf)[...] = x.transpose(3, 0, 1, 2)
        e = buf.itemsize
        k = kh * kw * c
        per = g.oh * g.wp  # patch columns per image
        cols = self._patches((k + (bias is not None), group * per), x.dtype)
        weights = kernel.reshape(k, f)
        if bias is not None:
            cols[k] = 1.0
            weights = np.concatenate([weights, bias.reshape(1, f)])
        weights_t = np.ascontiguousarray(weights.T)
        u = np.empty((f, n * per), x.dtype)
        view = as_strided(buf, (kh, kw, c, n, per), (g.wp * e, e, g.span * e, g.hp * g.wp * e, e), writeable=False)
        dst = cols[:k].reshape(kh, kw, c, group, per)
        for lo in range(0, n, group):
            m = min(group, n - lo)
            np.copyto(dst[:, :, :, :m], view[:, :, :, lo : lo + m])
            # (the last group may be smaller: a row-strided view of the block, as BLAS takes)
            _matmul_by_columns(weights_t, cols[:, : m * per], u[:, lo * per : (lo + m) * per], self.cblas.matmul)
        self._give_back(pad_key, buf)
        ctx = _WideCtx(g, cols)
        if not need_ctx:
            self._release(ctx)
        return _nhwc(u.reshape(f, n, g.oh, g.wp)[:, :, :, : g.ow]), ctx if need_ctx else None

    def _zeroed(self, key: tuple[Any, ...], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A zero-filled buffer, or the one last given back under `key`, whose zeros its user kept.

        `key` names the role and every number that decides which elements get written, so a
        buffer only returns to a user that writes exactly the same elements. Skips the memset and
        the page faults of a fresh buffer each step (two in-process A/B runs on a LeNet fit: 0.92x
        and 0.96x the step, predict b32 1.10x and 0.98x); taken out while in use, so two threads
        never share one.
        """
        with self._buffers_lock:
            kept = self.__dict__.setdefault("_zeroed_bufs", {}).pop((key, shape, np.dtype(dtype)), None)
        return np.zeros(shape, dtype) if kept is None else kept

    def _give_back(self, key: tuple[Any, ...], buf: np.ndarray) -> None:
        with self._buffers_lock:
            bufs = self.__dict__.setdefault("_zeroed_bufs", {})
            bufs[(key, buf.shape, buf.dtype)] = buf
            for old in list(bufs)[:-8]:  # a few layers' worth; the oldest go
                del bufs[old]

    # patch matrices kept for reuse, at most this many bytes (the least recently let go leave first)
    spare_patch_bytes = 32 << 20

    def _patches(self, shape: tuple[int, int], dtype: Any) -> np.ndarray:
        """A patch matrix that a backward pass (or an inference call) let go, else a new one.

        Taking the same few MB each step instead of fresh memory took 0.7-0.8 ms off a 7 ms LeNet
        step on a 2-core machine: a fresh buffer is cold in every cache the copy writes through.
        The context it came from loses it (a later backward pass with that context raises).
        """
        dtype = np.dtype(dtype)
        with self._buffers_lock:
            spare: list[_WideCtx] = self.__dict__.setdefault("_spare_patches", [])
            for old in reversed(spare):
                cols = old.cols
                if cols is not None and cols.shape == shape and cols.dtype == dtype:
                    spare.remove(old)
                    old.cols = None
                    return cols
        return np.empty(shape, dtype)

    def _release(self, ctx: _WideCtx) -> None:
        """Let a later forward pass take ctx's patches; until one does, ctx stays usable."""
        with self._buffers_lock:
            spare: list[_WideCtx] = self.__dict__.setdefault("_spare_patches", [])
            if ctx.cols is None or any(c is ctx for c in spare):
                return
            spare.append(ctx)
            sizes = [c.cols.nbytes if c.cols is not None else 0 for c in spare]
            while spare and sum(sizes) > self.spare_patch_bytes:
                spare.pop(0)
                sizes.pop(0)

    def conv2d_backward(
        self,
        du: Array,
        ctx: Any,
        kernel: Array,
        x_shape: tuple[int, ...],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_input_grad: bool,
    ) -> tuple[Array, Array, Array | None]:
        if not isinstance(ctx, _WideCtx):
            return super().conv2d_backward(du, ctx, kernel, x_shape, strides, pads, need_input_grad)
        g, cols = ctx.g, ctx.cols
        if cols is None:
            raise RuntimeError("conv2d_backward: a later forward pass of the same shape reused this context's patches")
        f = kernel.shape[3]
        k = g.kh * g.kw * g.c
        dwide = _wide_base(du)
        if dwide is not None and dwide.shape == (f, g.n, g.oh, g.wp) and dwide.flags.writeable:
            # du already lies in this layout (the 2×2 pool's backward writes it so): no copy. The
            # extra columns, outside du's view, must be 0 (no gradient); the pool left them so, and
            # other arrays get them zeroed here (a strided pass as slow as the copy it saves)
            if _ZEROED_EXTRA.get(id(dwide.base)) is not dwide.base:
                dwide[:, :, :, g.ow :] = 0.0
        else:
            dwide = np.zeros((f, g.n, g.oh, g.wp), du.dtype)  # the extra columns: zero gradient
            dwide[:, :, :, : g.ow] = du.transpose(3, 0, 1, 2)
        d2 = dwide.reshape(f, -1)
        dweights = _matmul_nt_by_blocks(cols, d2, self.cblas.matmul)  # (k [+ 1], f), bias row from the ones
        dkernel = dweights[:k].reshape(kernel.shape)
        dbias = dweights[k] if cols.shape[0] > k else np.add.reduce(d2, axis=1)
        self._release(ctx)  # ∂W was the last use of the patches
        if not need_input_grad:
            return dkernel, dbias, None
        # δ over all hp rows of each padded image, the last hp − oh of them zero, so that window
        # offset (i, j) adds to each channel of the padded ∂x buffer as one shifted run
        tall_key = ("tall", g.oh, g.wp)
        tall = self._zeroed(tall_key, (f, g.n, g.hp * g.wp), du.dtype)  # rows below oh are never written
        tall[:, :, : g.oh * g.wp] = d2.reshape(f, g.n, g.oh * g.wp)
        dtall = tall.reshape(f, g.span)
        dbuf = np.zeros(g.buffer_size, du.dtype)
        e = dbuf.itemsize
        # the c channel runs of the padded buffer as rows (each with the slack the shifts need)
        rows = as_strided(dbuf, (g.c, g.buffer_size - (g.c - 1) * g.span), (g.span * e, e))
        neg = np.ascontiguousarray(-kernel.transpose(0, 1, 3, 2))  # (kh, kw, f, c): −W(i, j)ᵀ
        # ∂P and col2im in one: per window offset, dbuf[c, shift + q] += W(i, j) δ[:, q] as a GEMM
        # accumulating straight into the shifted rows (β = 1), instead of writing the whole
        # (kh·kw·c, span) ∂P and adding it back: 30 % faster for LeNet's second layer (one thread)
        offsets = [i * g.wp + j for i in range(g.kh) for j in range(g.kw)]
        if not self.cblas.shifted_gemm_sub(neg.reshape(-1, f, g.c), dtall, dbuf, g.span, offsets):
            for t, o in enumerate(offsets):
                self.gemm_sub(neg[divmod(t, g.kw)], dtall, rows[:, o : o + g.span])
        self._give_back(tall_key, tall)
        return dkernel, dbias, _nhwc(g.interior(dbuf))

    def max_pool_forward(
        self,
        x: Array,
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        need_arg: bool = True,
    ) -> tuple[Array, Array]:
        if _halving(size, strides, pads):
            wide = _wide_base(x)
            if wide is not None and x.shape[1] % 2 == 0 and wide.shape[-1] % 2 == 0:
                return _max_pool_2x2_wide(x, wide, need_arg, self.kernels if x.dtype in _jit.DTYPES else None)
            return _max_pool_2x2(x, need_arg)
        (kh, kw), (sh, sw) = size, strides
        xpad = self.pad2d(x, pads, -np.inf)
        oh, ow = (xpad.shape[1] - kh) // sh + 1, (xpad.shape[2] - kw) // sw + 1
        y = np.array(_window(xpad, 0, 0, oh, ow, sh, sw), copy=True)  # order "K": x's memory layout
        if not need_arg:
            for t in range(1, kh * kw):
                np.maximum(y, _window(xpad, *divmod(t, kw), oh, ow, sh, sw), out=y)
            return y, None
        arg = np.zeros_like(y, dtype=np.int8 if kh * kw <= 127 else np.int32)
        better = np.empty_like(y, dtype=bool)
        for t in range(1, kh * kw):
            v = _window(xpad, *divmod(t, kw), oh, ow, sh, sw)
            np.greater(v, y, out=better)
            np.copyto(arg, t, where=better, casting="unsafe")
            np.maximum(y, v, out=y)
        return y, arg

    def max_pool_relu_forward(
        self,
        x: Array,
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        relu: Any,
        need_arg: bool = True,
    ) -> tuple[Array, Any]:
        wide = _wide_base(x) if _halving(size, strides, pads) else None
        if wide is None or x.shape[1] % 2 or wide.shape[-1] % 2:
            return super().max_pool_relu_forward(x, size, strides, pads, relu, need_arg)
        kernels = self.kernels if x.dtype in _jit.DTYPES else None
        if kernels is not None:
            return _max_pool_2x2_wide(x, wide, need_arg, kernels, relu=True)
        # relu and its mask over the whole contiguous pooled buffer, not the strided NHWC view of it
        y, arg = _max_pool_2x2_wide(x, wide, need_arg, None)
        pooled = y.base
        assert isinstance(pooled, np.ndarray)
        np.maximum(pooled, 0.0, out=pooled)
        if arg is not None:
            arg.positive = np.greater(pooled, 0.0)
        return y, arg

    def max_pool_relu_backward(
        self,
        dy: Array,
        ctx: Any,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
        relu: Any,
    ) -> Array:
        if isinstance(ctx, _WideHalves):
            return _max_pool_2x2_wide_backward(dy, ctx, self.kernels)
        return super().max_pool_relu_backward(dy, ctx, x_shape, size, strides, pads, relu)

    def max_pool_backward(
        self,
        dy: Array,
        arg: Array,
        x_shape: tuple[int, ...],
        size: tuple[int, int],
        strides: tuple[int, int],
        pads: tuple[int, int, int, int],
    ) -> Array:
        if isinstance(arg, _WideHalves):
            return _max_pool_2x2_wide_backward(dy, arg, self.kernels)
        if isinstance(arg, _Halves):
            return _max_pool_2x2_backward(dy, arg, x_shape)
        (kh, kw), (sh, sw) = size, strides
        n, h, w, c = x_shape
        top, bottom, left, right = pads
        oh, ow = dy.shape[1], dy.shape[2]
        tiled = not any(pads) and (sh, sw) == (kh, kw)  # windows do not overlap: each pixel is written once
        full = tiled and oh * kh == h and ow * kw == w
        dxp = _empty_like_layout((n, top + h + bottom, left + w + right, c), arg, dy.dtype, zero=not full)
        hit = np.empty_like(arg, dtype=bool)
        for t in range(kh * kw):
            target = _window(dxp, *divmod(t, kw), oh, ow, sh, sw)
            np.equal(arg, t, out=hit)
            if tiled:
                np.multiply(dy, hit, out=target)
            else:
                target += dy * hit
        return dxp[:, top : top + h, left : left + w, :] if any(pads) else dxp
