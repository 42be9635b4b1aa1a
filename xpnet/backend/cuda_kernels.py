"""CUDA C of the CuPy backend's fused kernels, and the builders that turn it into CuPy kernel objects.

Each builder takes the `cupy` namespace in use (the real one or the stand-in) and returns an
`ElementwiseKernel` (or the source of a `RawModule`); `CupyOps` keeps what they build. Nothing here
imports cupy.
"""

from __future__ import annotations

from typing import Any

_ROWS = r"""
#define T TYPE
extern "C" __global__ void xpnet_softmax_SUFFIX(T* u, const T* b, T* h, int n, int k) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    T* ur = u + (size_t)i * k;
    T* hr = h + (size_t)i * k;
    T m = ur[0] + b[0];
    for (int j = 0; j < k; ++j) { T v = ur[j] + b[j]; ur[j] = v; m = v > m ? v : m; }
    T s = 0;
    for (int j = 0; j < k; ++j) { T e = exp(ur[j] - m); hr[j] = e; s += e; }
    for (int j = 0; j < k; ++j) hr[j] = hr[j] / s;
}
// a row's maximum m and Σ exp(u − m), the softmax's shift and denominator
__device__ inline void xpnet_row_stats_SUFFIX(const T* ur, int k, T& m, T& s) {
    m = ur[0];
    for (int j = 1; j < k; ++j) m = ur[j] > m ? ur[j] : m;
    s = 0;
    for (int j = 0; j < k; ++j) s += exp(ur[j] - m);
}
// one row of sce: the loss of label c, the probabilities and (p − onehot(c)) · scale
__device__ inline void xpnet_sce_SUFFIX_row(const T* ur, int c, T* loss, T* dr, T* pr, int k, T scale) {
    T m, s;
    xpnet_row_stats_SUFFIX(ur, k, m, s);
    *loss = log(s) - (ur[c] - m);
    for (int j = 0; j < k; ++j) { T q = exp(ur[j] - m) / s; pr[j] = q; dr[j] = (q - (j == c ? (T)1 : (T)0)) * scale; }
}
extern "C" __global__ void xpnet_sce_SUFFIX(
        const T* u, const int* y, T* loss, T* du, T* p, int n, int k, const T* scale_ptr) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    xpnet_sce_SUFFIX_row(u + (size_t)i * k, y[i], loss + i, du + (size_t)i * k, p + (size_t)i * k, k, *scale_ptr);
}
// sce with the output layer's bias b added to each row of u as it is read (u keeps the logits). Each row's
// thread then draws a ticket, adding (1 << 32) | its hit (argmax of p, or of u where hits_on_p is 0, equal
// to the label: NumPy's argmax, the first NaN winning) to one 64-bit word; the thread drawing the last
// holds the whole count and, every row written, sums ∂L/∂b = Σ_rows du column by column (want_db 1: into db;
// 2: db −= the sum, plain SGD's bias update, db then being b, which every row has read before its ticket) and
// the losses (want_sums) in row order, the same bits whatever the threads' timing, and puts the word back to 0.
// With want_run the sums written are the fit's running sums plus the batch's (run + batch, as add_sums adds);
// with want_t the same thread moves the optimizer's device step count, t ← t + 1 (plain SGD inside backprop:
// no update pass is left to move it, and no thread of this launch reads t).
extern "C" __global__ void xpnet_sce_bias_SUFFIX(T* u, const T* b, const int* y, T* loss, T* du, T* p, int n,
        int k, const T* scale_ptr, int want_db, T* db, int want_sums, int hits_on_p, T* loss_sum, T* hits,
        int want_run, const T* run_loss, const T* run_hits, int want_t, double* t, unsigned long long* ticket) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    T* ur = u + (size_t)i * k;
    T* pr = p + (size_t)i * k;
    for (int j = 0; j < k; ++j) ur[j] = ur[j] + b[j];
    xpnet_sce_SUFFIX_row(ur, y[i], loss + i, du + (size_t)i * k, pr, k, *scale_ptr);
    if (!want_db && !want_sums && !want_t) return;
    unsigned long long hit = 0;
    if (want_sums) {
        const T* q = hits_on_p ? pr : ur;
        T best = q[0]; int at = 0;
        for (int j = 1; j < k && best == best; ++j) { const T v = q[j]; if (v > best || v != v) { best = v; at = j; } }
        hit = at == y[i] ? 1ULL : 0ULL;
    }
    __threadfence();
    const unsigned long long old = atomicAdd(ticket, (1ULL << 32) | hit);
    if ((long long)(old >> 32) != (long long)n - 1) return;
    __threadfence();
    if (want_db) {
        const volatile T* d = du;
        for (int j = 0; j < k; ++j) {
            T s = 0;
            for (int r = 0; r < n; ++r) s += d[(size_t)r * k + j];
            db[j] = want_db == 2 ? db[j] - s : s;
        }
    }
    if (want_sums) {
        const volatile T* v = loss;
        T s = 0;
        for (int r = 0; r < n; ++r) s += v[r];
        const T count = (T)((old & 0xFFFFFFFFULL) + hit);
        *loss_sum = want_run ? *run_loss + s : s;
        *hits = want_run ? *run_hits + count : count;
    }
    if (want_t) t[0] += 1.0;
    ticket[0] = 0;
}
extern "C" __global__ void xpnet_cce_SUFFIX(
        const T* u, const T* y, T* loss, T* du, T* p, int n, int k, const T* scale_ptr) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const T scale = *scale_ptr;
    const size_t at = (size_t)i * k;
    const T *ur = u + at, *yr = y + at;
    T *dr = du + at, *pr = p + at;
    T m, s;
    xpnet_row_stats_SUFFIX(ur, k, m, s);
    T ls = log(s), acc = 0;
    for (int j = 0; j < k; ++j) {
        T q = exp(ur[j] - m) / s;
        pr[j] = q;
        acc -= yr[j] * (ur[j] - m - ls);
        dr[j] = (q - yr[j]) * scale;
    }
    loss[i] = acc;
}
"""


def row_source(suffix: str) -> str:
    return _FENCE + _ROWS.replace("TYPE", "float" if suffix == "f32" else "double").replace("SUFFIX", suffix)


# Adam with its step count: every thread reads t, updates its elements at t + 1, then draws a ticket;
# the thread that draws the last one (every other has read t by then) writes t + 1 and puts the word
# back to 0. Elementwise, the arithmetic of "adam_step".
# the CPU stand-in compiles these with a C++ compiler, where threads run one after another
_FENCE = r"""
#ifndef __CUDA_ARCH__
#define __threadfence()
#endif
"""
_ADAM_COUNTING = r"""
template <typename T>
__global__ void xpnet_adam_counting(const T* g, T* p, T* m, T* v, double* t, unsigned long long* ticket,
        const double* lr, long long n, double b1, double b2, T one_m_b1, T one_m_b2, T eps) {
    const double tt = t[0] + 1.0;
    const T lr_t = (T)(lr[0] * sqrt(1.0 - pow(b2, tt)) / (1.0 - pow(b1, tt)));
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T gi = g[i];
        T mi = m[i], vi = v[i];
        mi += one_m_b1 * (gi - mi); vi += one_m_b2 * (gi * gi - vi); p[i] -= lr_t * mi / (sqrt(vi) + eps);
        m[i] = mi; v[i] = vi;
    }
    __threadfence();
    if (atomicAdd(ticket, 1ULL) == (unsigned long long)stride - 1) { t[0] = tt; ticket[0] = 0; }
}
"""


# Dropout with its call count, the same way: the keys of "dropout_step" from the count every thread
# read, and the last thread to draw a ticket moves the count.
_DROPOUT_COUNTING = r"""
template <typename T>
__global__ void xpnet_dropout_counting(const T* x, T* y, T* mask, unsigned int* step, const unsigned int* offset,
        unsigned long long* ticket, long long n, unsigned int base, unsigned int threshold, T scale) {
    const unsigned int st = step[0], off = offset[0];
    const unsigned int k0 = xpnet_mix32(xpnet_mix32(st ^ 0x85EBCA6BU) ^ base);
    const unsigned int k1 = xpnet_mix32(k0 + 0x632BE5ABU);
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const unsigned int h = xpnet_mix32((((unsigned int)i + off) + k0) ^ k1);
        const T mk = h >= threshold ? scale : (T)0;
        mask[i] = mk; y[i] = x[i] * mk;
    }
    __threadfence();
    if (atomicAdd(ticket, 1ULL) == (unsigned long long)stride - 1) { step[0] = st + 1; ticket[0] = 0; }
}
"""


def counting_source() -> str:
    """The CUDA C of `xpnet_adam_counting<T>` and `xpnet_dropout_counting<T>` (a RawModule with name expressions)."""
    return _FENCE + _MIX + _ADAM_COUNTING + _DROPOUT_COUNTING


_MIX = """
__device__ inline unsigned int xpnet_mix32(unsigned int x) {
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16; return x;
}
"""


def build_activation_kernel(cp: Any, kind: str, name: str, body: str) -> Any:  # pragma: no cover - needs a CUDA device
    """An activation's fused kernel from its CUDA C `body` (`Activation.cuda_forward` or `.cuda_backward`).

    "fwd": bias + φ, u updated in place; "bwd": φ'; "bwdsum": φ' and its column sums (the bias gradient).
    """
    ek = cp.ElementwiseKernel
    if kind == "fwd":
        return ek("T b, T alpha", "T u, T h", "u = u + b; " + body, name)
    if kind == "bwd":
        return ek("T u, T h, T dh, T alpha", "T du", body, name)
    # over the units: each thread its column of ∂L/∂u, summed in row order
    return ek(
        "raw T u_, raw T h_, raw T dh_, T alpha, int32 n, int32 k, bool sub",
        "raw T du_, T out",
        "T acc = 0;"
        "for (int r = 0; r < n; ++r) {"
        "  const long long o = (long long)r * k + i; const T u = u_[o]; const T h = h_[o]; const T dh = dh_[o];"
        f"  T du; {body} du_[o] = du; acc += du;"
        "}"
        "out = sub ? out - acc : acc;",
        name,
    )


# Past a few hundred rows one thread per unit is a long serial loop: here a thread per (block of
# `chunk` rows, unit) writes ∂L/∂u and its block's sum, then draws a ticket on its unit's word; the
# thread drawing the last one adds the blocks' sums in block order (the same bits whatever the
# threads' timing) and puts the word back to 0 for the next launch.
_COLUMN_CHUNKS = r"""
template <typename T>
__global__ void xpnet_bwdchunks(const T* u_, const T* h_, const T* dh_, T alpha, int n, int k, int chunk,
        int sub, T* du_, T* part, unsigned int* tick, T* out) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int chunks = (n + chunk - 1) / chunk;
    if (i >= (long long)chunks * k) return;
    const int j = (int)(i % k), c = (int)(i / k);
    const int r1 = (c + 1) * chunk < n ? (c + 1) * chunk : n;
    T acc = 0;
    for (int r = c * chunk; r < r1; ++r) {
        const long long o = (long long)r * k + j;
        const T u = u_[o]; const T h = h_[o]; const T dh = dh_[o];
        T du; BODY du_[o] = du; acc += du;
    }
    part[i] = acc;
    __threadfence();
    if (atomicAdd(&tick[j], 1u) == (unsigned int)(chunks - 1)) {
        __threadfence();  // with the writers' fence before their tickets: their sums are visible here
        const volatile T* ps = part;
        T s = 0;
        for (int q = 0; q < chunks; ++q) s += ps[(long long)q * k + j];
        out[j] = sub ? out[j] - s : s;
        tick[j] = 0;
    }
}
"""


def column_chunks_source(body: str) -> str:
    """The CUDA C of `xpnet_bwdchunks<T>` (a RawModule with name expressions) for an activation's backward `body`
    (`Activation.cuda_backward`: reads u, h, dh, alpha, writes du)."""
    return _FENCE + _COLUMN_CHUNKS.replace("BODY", body)


def build_kernel(cp: Any, name: str) -> Any:  # pragma: no cover - needs a CUDA device
    ek = cp.ElementwiseKernel
    if name == "dropout_mask":
        return ek(
            "uint32 k0, uint32 k1, uint32 threshold, T scale, uint32 offset",
            "T out",
            "unsigned int h = xpnet_mix32((((unsigned int)i + offset) + k0) ^ k1);out = h >= threshold ? scale : (T)0;",
            "xpnet_dropout_mask",
            preamble=_MIX,
        )
    if name == "dropout":
        return ek(
            "T x, uint32 k0, uint32 k1, uint32 threshold, T scale, uint32 offset",
            "T y, T mask",
            "unsigned int h = xpnet_mix32((((unsigned int)i + offset) + k0) ^ k1);"
            "mask = h >= threshold ? scale : (T)0; y = x * mask;",
            "xpnet_dropout",
            preamble=_MIX,
        )
    if name == "dropout_step":  # Ops.dropout_keys, then the mask of "dropout"
        return ek(
            "T x, uint32 base, uint32 step, uint32 threshold, T scale, uint32 offset",
            "T y, T mask",
            "unsigned int k0 = xpnet_mix32(xpnet_mix32(step ^ 0x85EBCA6BU) ^ base);"
            "unsigned int k1 = xpnet_mix32(k0 + 0x632BE5ABU);"
            "unsigned int h = xpnet_mix32((((unsigned int)i + offset) + k0) ^ k1);"
            "mask = h >= threshold ? scale : (T)0; y = x * mask;",
            "xpnet_dropout_step",
            preamble=_MIX,
        )
    if name == "take_rows_pair":  # out[r] = src[idx[r]] for two arrays, rows of `wide` and `narrow` elements
        return ek(
            "raw A a, raw B b, raw I idx, int64 wide, int64 narrow",
            "raw A ao, raw B bo",
            "const long long r = i / wide, c = i % wide, s = (long long)idx[r];"
            "ao[i] = a[s * wide + c]; if (c < narrow) bo[r * narrow + c] = b[s * narrow + c];",
            "xpnet_take_rows_pair",
        )
    if name == "sgd_momentum":
        return ek(
            "T g, T lr, T mu, bool nesterov",
            "T p, T m",
            "m = mu * m - lr * g; p += nesterov ? mu * m - lr * g : m;",
            "xpnet_sgd_momentum",
        )
    if name == "subtract_counting":
        return ek("T g", "T p, raw float64 t", "p -= g; if (i == 0) t[0] += 1.0;", "xpnet_subtract_counting")
    if name == "adam":
        return ek(
            "T g, T lr_t, T one_m_b1, T one_m_b2, T eps",
            "T p, T m, T v",
            "m += one_m_b1 * (g - m); v += one_m_b2 * (g * g - v); p -= lr_t * m / (sqrt(v) + eps);",
            "xpnet_adam",
        )
    if name == "adam_step":  # Ops.adam_step: the correction in double, as the generic code, then in T
        return ek(
            "T g, float64 lr, float64 t, float64 b1, float64 b2, T one_m_b1, T one_m_b2, T eps",
            "T p, T m, T v",
            "const T lr_t = (T)(lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t)));"
            "m += one_m_b1 * (g - m); v += one_m_b2 * (g * g - v); p -= lr_t * m / (sqrt(v) + eps);",
            "xpnet_adam_step",
        )
    if name == "rmsprop":
        return ek(
            "T g, T lr, T rho, T eps",
            "T p, T v",
            "v = rho * v + (1 - rho) * g * g; p -= lr * g / sqrt(v + eps);",
            "xpnet_rmsprop",
        )
    raise KeyError(name)


# Geometry arguments of the image kernels (see CupyOps._geometry_args); the image is (n, h, w, c) and
# `i` runs over the output's elements in C order.
_GEOMETRY = (
    "int32 h, int32 w, int32 c, int32 oh, int32 ow, int32 kh, int32 kw, int32 sh, int32 sw, int32 top, int32 left"
)
_PIXEL = (
    "const int ch = i % c; long long t = i / c; const int x = t % w; t /= w; const int y = t % h;"
    "const long long b = t / h;"
)
_WINDOW = (
    "const int ch = i % c; long long t = i / c; const int ox = t % ow; t /= ow; const int oy = t % oh;"
    "const long long b = t / oh;"
)
# every window (oy, ox) and position (ky, kx) that reads padded pixel (y + top, x + left)
_WINDOWS_OF_PIXEL = """
for (int ky = 0; ky < kh; ++ky) {
  const int ry = y + top - ky;
  if (ry < 0 || ry % sh != 0 || ry / sh >= oh) continue;
  const int oy = ry / sh;
  for (int kx = 0; kx < kw; ++kx) {
    const int rx = x + left - kx;
    if (rx < 0 || rx % sw != 0 || rx / sw >= ow) continue;
    const int ox = rx / sw;
    const long long o = ((b * oh + oy) * ow + ox);
    BODY
  }
}
"""


def build_image_kernel(cp: Any, name: str) -> Any:  # pragma: no cover - needs a CUDA device
    ek = cp.ElementwiseKernel
    if name == "im2col":  # cols (n, oh, ow, kh, kw, c) from img (n, h, w, c); zeros outside the image
        return ek(
            f"raw T img, {_GEOMETRY}",
            "T col",
            "const int ch = i % c; long long t = i / c; const int kx = t % kw; t /= kw; const int ky = t % kh; t /= kh;"
            "const int ox = t % ow; t /= ow; const int oy = t % oh; const long long b = t / oh;"
            "const int y = oy * sh + ky - top; const int x = ox * sw + kx - left;"
            "col = (y >= 0 && y < h && x >= 0 && x < w) ? img[((b * h + y) * w + x) * c + ch] : (T)0;",
            "xpnet_im2col",
        )
    if name == "im2col_one":  # im2col's patches and a last column of ones: P·[kernel; bias] adds the bias
        return ek(
            f"raw T img, {_GEOMETRY}",
            "T col",
            "const long long k1 = (long long)kh * kw * c + 1; const long long q = i % k1; long long t = i / k1;"
            "if (q == k1 - 1) { col = (T)1; } else {"
            "  const int ch = q % c; const int kx = (q / c) % kw; const int ky = q / c / kw;"
            "  const int ox = t % ow; t /= ow; const int oy = t % oh; const long long b = t / oh;"
            "  const int y = oy * sh + ky - top; const int x = ox * sw + kx - left;"
            "  col = (y >= 0 && y < h && x >= 0 && x < w) ? img[((b * h + y) * w + x) * c + ch] : (T)0;"
            "}",
            "xpnet_im2col_one",
        )
    if name == "col2im":  # each pixel gathers its windows' entries: no atomics, deterministic
        body = "acc += col[(o * kh * kw + ky * kw + kx) * c + ch];"
        return ek(
            f"raw T col, {_GEOMETRY}",
            "T img",
            _PIXEL + "T acc = 0;" + _WINDOWS_OF_PIXEL.replace("BODY", body) + "img = acc;",
            "xpnet_col2im",
        )
    if name == "max_pool":
        # the order and comparisons of Ops.max_pool_forward: position 0 first, then `v > best` moves the
        # argmax and best = maximum(best, v), which turns NaN at the first NaN and stays NaN (no later
        # value beats it), so a NaN window's argmax is the generic code's
        return ek(
            f"raw T img, {_GEOMETRY}, T neg_inf, bool relu",
            "T out, S arg",
            _WINDOW + "T best = 0; int at = 0;"
            "for (int t2 = 0; t2 < kh * kw; ++t2) {"
            "  const int y = oy * sh + t2 / kw - top; const int x = ox * sw + t2 % kw - left;"
            "  const T v = (y >= 0 && y < h && x >= 0 && x < w) ? img[((b * h + y) * w + x) * c + ch] : neg_inf;"
            "  if (t2 == 0) { best = v; } else { if (v > best) at = t2; if (v > best || v != v) best = v; }"
            "}"
            "out = (relu && best <= (T)0) ? (T)0 : best; arg = (S)at;",  # NaN stays NaN, as NumPy's maximum
            "xpnet_max_pool",
        )
    if name == "max_pool_grad":  # each pixel sums ∂L/∂y of the windows whose argmax it is (× relu'(y))
        body = (
            "if ((int)arg[o * c + ch] == ky * kw + kx)"
            " acc += relu ? dy[o * c + ch] * (y_[o * c + ch] > (T)0 ? (T)1 : (T)0) : dy[o * c + ch];"
        )
        return ek(
            f"raw T dy, raw S arg, raw T y_, {_GEOMETRY}, bool relu",
            "T dx",
            _PIXEL + "T acc = 0;" + _WINDOWS_OF_PIXEL.replace("BODY", body) + "dx = acc;",
            "xpnet_max_pool_grad",
        )
    raise KeyError(name)
