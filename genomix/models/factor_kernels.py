"""The sparse factor step  out = [V +] W D V  as index-free kernels: reference (torch), CPU (C) and CUDA (Triton).

Row i < L_b of sequence b reads row (i + s) mod L_b for each of the factor's K shifts s; padded rows read
themselves, so every shift is a permutation and its transpose is the opposite shift (the backward is gathers
too). The kernels compute that row from i, s and L_b: no (K, B·N) index tensor is built, stored or read.
D is the diagonal 1 / rms(V[j]) when `normalize` (factor_norm), the identity otherwise; with `residual` the
output is V + W D V. One pass over V serves all K taps, the scaling and the residual add, forward and backward.

Why a C kernel on the CPU: `torch.compile` fuses the taps into one loop, but its C++ recomputes (or reloads)
the K row indices for every 8-float vector of D and bounds-checks each, which caps the fused op at about a
fifth of a copy's bandwidth (docs/PERFORMANCE.md). The C loop below computes the K rows once per row and
streams D with FMA vectors. It is compiled once per machine with the C compiler that `torch.compile` needs
anyway, cached on disk, and called through ctypes (which releases the GIL, so rows are split over torch's
threads). Where no compiler is found, or for a dtype the kernels do not cover, the reference runs.

Both are `torch.library` custom ops with fake implementations, so a whole training step compiles around them
without graph breaks and replays as a CUDA graph.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from genomix.models import triton_factor

RMS_EPS = 1e-6
MIN_ROWS_PER_THREAD = 4096  # below this, splitting rows over threads costs more than it saves


# --- reference: torch ops, any device and dtype -------------------------------------------------------


def shift_rows(lengths: Tensor, n: int, shift: int) -> Tensor:
    """Flat row (B·N,) that each row reads for one shift; built per call and dropped, never cached."""
    lengths = lengths[:, None].clamp_min(1)
    positions = torch.arange(n, device=lengths.device)[None, :]
    rows = torch.where(positions < lengths, (positions + shift) % lengths, positions)
    return (rows + torch.arange(0, lengths.numel() * n, n, device=lengths.device)[:, None]).reshape(-1)


def inverse_rms(v: Tensor) -> Tensor:
    """1 / rms of each row of v (…, D), in at least fp32 (bf16 squares lose too much), as fp32 or wider."""
    precise = v.to(torch.promote_types(v.dtype, torch.float32))
    return torch.rsqrt(precise.pow(2).mean(-1) + RMS_EPS)


def reference_forward(v: Tensor, w: Tensor, lengths: Tensor, shifts: list[int], normalize: bool,
                      residual: bool) -> tuple[Tensor, Tensor]:
    """(out, r): out = [V +] W D V on (B, N, D) with values w (B, N, K); r = diag(D) as (B, N) fp32."""
    b, n, d = v.shape
    r = inverse_rms(v) if normalize else v.new_ones(b, n, dtype=torch.promote_types(v.dtype, torch.float32))
    rows, flat_r = v.reshape(b * n, d), r.reshape(-1).to(v.dtype)
    weights = w.reshape(b * n, -1)
    out = rows.clone() if residual else torch.zeros_like(rows)
    for k, shift in enumerate(shifts):
        read = shift_rows(lengths, n, shift)
        coef = weights[:, k] * flat_r.index_select(0, read) if normalize else weights[:, k]
        out.addcmul_(coef[:, None], rows.index_select(0, read))
    return out.view(b, n, d), r


def reference_backward(grad: Tensor, v: Tensor, w: Tensor, r: Tensor, lengths: Tensor, shifts: list[int],
                       normalize: bool, residual: bool) -> tuple[Tensor, Tensor]:
    """(grad_v, grad_w) of `reference_forward`; the transpose of shift s is shift -s."""
    b, n, d = v.shape
    rows, g, flat_r = v.reshape(b * n, d), grad.reshape(b * n, d), r.reshape(-1).to(v.dtype)
    weights = w.reshape(b * n, -1)
    grad_w = torch.empty_like(weights)
    grad_u = torch.zeros_like(rows)  # gradient of U = D V
    for k, shift in enumerate(shifts):
        read, back = shift_rows(lengths, n, shift), shift_rows(lengths, n, -shift)
        grad_w[:, k] = (g * rows.index_select(0, read)).sum(-1) * (flat_r.index_select(0, read) if normalize else 1)
        grad_u.addcmul_(weights[:, k].index_select(0, back)[:, None], g.index_select(0, back))
    if normalize:  # U = r V with r = rsqrt(mean(V²) + eps): dU/dV = r I - r³ V Vᵀ / D
        grad_v = flat_r[:, None] * grad_u - (flat_r.pow(3) * (grad_u * rows).sum(-1) / d)[:, None] * rows
    else:
        grad_v = grad_u
    if residual:
        grad_v = grad_v + g
    return grad_v.view(b, n, d), grad_w.view_as(w)


# --- CPU: C kernel through ctypes -----------------------------------------------------------------------

C_SOURCE = r"""
#include <stdint.h>
#include <math.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#define KMAX 128

/* Row that row i < L reads for a shift t already reduced to [0, L); padded rows read themselves. */
static inline int64_t fwd_row(int64_t i, int64_t t, int64_t L) {
    if (i >= L) return i;
    int64_t j = i + t;
    return j >= L ? j - L : j;
}

/* The row that reads row j (the opposite shift). */
static inline int64_t back_row(int64_t j, int64_t t, int64_t L) {
    if (j >= L) return j;
    int64_t i = j - t;
    return i < 0 ? i + L : i;
}

/* out[0:D] = (base ? base : 0) + sum_k c[k] * src[k][0:D]. Eight accumulators per 64 floats: the K
   multiply-adds into one accumulator form a dependency chain, and eight chains keep both FMA units busy. */
static void axpy_f32(float* out, const float* base, const float* const* src, const float* c, int64_t K,
                     int64_t D) {
    int64_t d0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; d0 + 64 <= D; d0 += 64) {
        __m256 a[8];
        for (int u = 0; u < 8; u++) a[u] = base ? _mm256_loadu_ps(base + d0 + 8 * u) : _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            const __m256 ck = _mm256_set1_ps(c[k]);
            const float* s = src[k] + d0;
            for (int u = 0; u < 8; u++) a[u] = _mm256_fmadd_ps(ck, _mm256_loadu_ps(s + 8 * u), a[u]);
        }
        for (int u = 0; u < 8; u++) _mm256_storeu_ps(out + d0 + 8 * u, a[u]);
    }
    for (; d0 + 8 <= D; d0 += 8) {
        __m256 a = base ? _mm256_loadu_ps(base + d0) : _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) a = _mm256_fmadd_ps(_mm256_set1_ps(c[k]), _mm256_loadu_ps(src[k] + d0), a);
        _mm256_storeu_ps(out + d0, a);
    }
#endif
    for (; d0 < D; d0++) {
        float a = base ? base[d0] : 0.0f;
        for (int64_t k = 0; k < K; k++) a += c[k] * src[k][d0];
        out[d0] = a;
    }
}

static float dot_f32(const float* x, const float* y, int64_t D) {
    int64_t d0 = 0;
    float total = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; d0 + 16 <= D; d0 += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d0), _mm256_loadu_ps(y + d0), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d0 + 8), _mm256_loadu_ps(y + d0 + 8), a1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(a0, a1));
    for (int q = 0; q < 8; q++) total += lanes[q];
#endif
    for (; d0 < D; d0++) total += x[d0] * y[d0];
    return total;
}

static void axpy_f64(double* out, const double* base, const double* const* src, const double* c, int64_t K,
                     int64_t D) {
    for (int64_t d = 0; d < D; d++) {
        double a = base ? base[d] : 0.0;
        for (int64_t k = 0; k < K; k++) a += c[k] * src[k][d];
        out[d] = a;
    }
}

static double dot_f64(const double* x, const double* y, int64_t D) {
    double total = 0.0;
    for (int64_t d = 0; d < D; d++) total += x[d] * y[d];
    return total;
}

/* Each shift reduced to [0, L), once per sequence, so the row loops need no division. */
static void reduce_shifts(const int64_t* shifts, int64_t K, int64_t L, int64_t* t) {
    if (L < 1) L = 1;
    for (int64_t k = 0; k < K; k++) t[k] = ((shifts[k] % L) + L) % L;
}

/* Kernels over flat rows [row0, row1) of the (B*N) rows. */
#define KERNELS(T, SUF, RT)                                                                                   \
void rms_##SUF(int64_t row0, int64_t row1, int64_t D, const T* v, RT* r) {                                  \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        RT s = (RT)dot_##SUF(v + q * D, v + q * D, D);                                                      \
        r[q] = (RT)1 / sqrt(s / (RT)D + (RT)1e-6);                                                          \
    }                                                                                                       \
}                                                                                                           \
void forward_##SUF(int64_t row0, int64_t row1, int64_t N, int64_t D, int64_t K, const T* v, const T* w,     \
                   int64_t w_stride, const RT* r, const int64_t* lengths, const int64_t* shifts, int residual,\
                   T* out) {                                                                                \
    const T* src[KMAX]; T c[KMAX]; int64_t t[KMAX]; int64_t tb = -1;                                        \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        const int64_t b = q / N, i = q - b * N, L = lengths[b];                                             \
        if (b != tb) { reduce_shifts(shifts, K, L, t); tb = b; }                                            \
        const T* vb = v + b * N * D;                                                                        \
        for (int64_t k = 0; k < K; k++) {                                                                   \
            const int64_t j = fwd_row(i, t[k], L);                                                          \
            c[k] = w[q * w_stride + k] * (r ? (T)r[b * N + j] : (T)1);                                      \
            src[k] = vb + j * D;                                                                            \
        }                                                                                                   \
        axpy_##SUF(out + q * D, residual ? v + q * D : 0, src, c, K, D);                                    \
    }                                                                                                       \
}                                                                                                           \
void backward_##SUF(int64_t row0, int64_t row1, int64_t N, int64_t D, int64_t K, const T* v, const T* w,    \
                    int64_t w_stride, const RT* r, const T* g, const int64_t* lengths, const int64_t* shifts, \
                    int residual, T* grad_v, T* grad_w) {                                                   \
    const T* src[KMAX]; T c[KMAX]; int64_t t[KMAX]; int64_t tb = -1;                                        \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        const int64_t b = q / N, j = q - b * N, L = lengths[b];                                             \
        if (b != tb) { reduce_shifts(shifts, K, L, t); tb = b; }                                            \
        const T* vb = v + b * N * D; const T* gb = g + b * N * D;                                           \
        for (int64_t k = 0; k < K; k++) {                                                                   \
            const int64_t i = back_row(j, t[k], L);                                                         \
            c[k] = w[(b * N + i) * w_stride + k];                                                           \
            src[k] = gb + i * D;                                                                            \
            const int64_t jj = fwd_row(j, t[k], L);                                                         \
            grad_w[q * K + k] = (T)dot_##SUF(gb + j * D, vb + jj * D, D) * (r ? (T)r[b * N + jj] : (T)1);   \
        }                                                                                                   \
        T* gv = grad_v + q * D;                                                                             \
        axpy_##SUF(gv, 0, src, c, K, D);                                                                    \
        const T* vj = vb + j * D; const T* gj = gb + j * D;                                                 \
        const T rj = r ? (T)r[q] : (T)1;                                                                    \
        const T corr = r ? rj * rj * rj * (T)dot_##SUF(gv, vj, D) / (T)D : (T)0;                            \
        for (int64_t d = 0; d < D; d++) gv[d] = rj * gv[d] - corr * vj[d] + (residual ? gj[d] : (T)0);      \
    }                                                                                                       \
}

KERNELS(float, f32, float)
KERNELS(double, f64, double)
"""

C_TYPES = {torch.float32: "f32", torch.float64: "f64"}
C_MAX_TAPS = 128  # KMAX above


def _compiler_flags() -> list[str]:
    """-mavx2 -mfma where torch itself found AVX2 (the cached library is keyed by these flags)."""
    return ["-mavx2", "-mfma"] if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else []


@cache
def c_library() -> ctypes.CDLL | None:
    """The compiled C kernels, built on first use into the user's cache directory; None if no compiler works."""
    compiler = os.environ.get("CC", "cc")
    flags = ["-O3", "-shared", "-fPIC", *_compiler_flags()]
    key = hashlib.sha256("\0".join([C_SOURCE, compiler, *flags]).encode()).hexdigest()[:16]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genomix"
    path = cache_dir / f"factor_kernels_{key}.so"
    try:
        if not path.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                source, built = Path(tmp) / "factor_kernels.c", Path(tmp) / "factor_kernels.so"
                source.write_text(C_SOURCE)
                subprocess.run([compiler, *flags, str(source), "-o", str(built), "-lm"], check=True,
                               capture_output=True, timeout=120)
                built.replace(path)  # atomic: a concurrent process sees the whole file or none
        return ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as err:
        warnings.warn(f"no C compiler for the CPU factor kernels ({err}); running the torch reference",
                      stacklevel=2)
        return None


@cache
def _pool(threads: int, pid: int) -> ThreadPoolExecutor:
    """One pool per thread count and process: a forked child has none of its parent's threads."""
    return ThreadPoolExecutor(threads, thread_name_prefix="genomix-factor")


def _over_rows(fn, total: int, *args) -> None:
    """fn(row0, row1, *args) over [0, total), split over torch's CPU threads (ctypes drops the GIL)."""
    threads = min(torch.get_num_threads(), max(1, total // MIN_ROWS_PER_THREAD))
    bounds = [ctypes.c_int64(total * t // threads) for t in range(threads + 1)]
    if threads == 1:
        fn(*bounds, *args)
        return
    for job in [_pool(threads, os.getpid()).submit(fn, lo, hi, *args) for lo, hi in zip(bounds, bounds[1:])]:
        job.result()


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


_SHIFTS: dict[tuple[tuple[int, ...], torch.device], Tensor] = {}


def shift_tensor(shifts: list[int], device: torch.device) -> Tensor:
    """The shifts as an int64 tensor on the device, made once: no host-to-device copy inside a CUDA graph."""
    key = (tuple(shifts), device)
    if key not in _SHIFTS:
        _SHIFTS[key] = torch.tensor(shifts, dtype=torch.int64, device=device)
    return _SHIFTS[key]


def _c_ready(v: Tensor, w: Tensor) -> ctypes.CDLL | None:
    if v.device.type != "cpu" or v.dtype not in C_TYPES or w.dtype != v.dtype or w.shape[-1] > C_MAX_TAPS:
        return None
    return c_library()


# --- the custom ops -------------------------------------------------------------------------------------


@torch.library.custom_op("genomix::factor_forward", mutates_args=())
def fused_forward(v: Tensor, w: Tensor, lengths: Tensor, shifts: list[int], normalize: bool,
                  residual: bool) -> tuple[Tensor, Tensor]:
    """`reference_forward` in one pass: C on the CPU, Triton on CUDA, the reference elsewhere."""
    if v.device.type == "cuda" and triton_factor.available():
        return triton_factor.forward(v, w, lengths, shift_tensor(shifts, v.device), normalize, residual)
    lib = _c_ready(v, w)
    if lib is None:
        return reference_forward(v, w, lengths, shifts, normalize, residual)
    b, n, d = v.shape
    v, lengths = v.contiguous(), lengths.to(torch.int64).contiguous()  # kept alive: C reads their memory
    w, w_stride = triton_factor.w_rows(w)
    suffix, rdtype = C_TYPES[v.dtype], torch.promote_types(v.dtype, torch.float32)
    r = torch.empty(b, n, dtype=rdtype)
    if normalize:
        _over_rows(getattr(lib, f"rms_{suffix}"), b * n, ctypes.c_int64(d), _ptr(v), _ptr(r))
    else:
        r.fill_(1)
    out, shift_t = torch.empty_like(v), shift_tensor(shifts, v.device)
    _over_rows(getattr(lib, f"forward_{suffix}"), b * n, ctypes.c_int64(n), ctypes.c_int64(d),
               ctypes.c_int64(len(shifts)), _ptr(v), _ptr(w), ctypes.c_int64(w_stride),
               _ptr(r) if normalize else _ptr(None), _ptr(lengths), _ptr(shift_t), ctypes.c_int(residual), _ptr(out))
    return out, r


@fused_forward.register_fake
def _(v, w, lengths, shifts, normalize, residual):
    return torch.empty_like(v), v.new_empty(v.shape[:2], dtype=torch.promote_types(v.dtype, torch.float32))


@torch.library.custom_op("genomix::factor_backward", mutates_args=())
def fused_backward(grad: Tensor, v: Tensor, w: Tensor, r: Tensor, lengths: Tensor, shifts: list[int],
                   normalize: bool, residual: bool) -> tuple[Tensor, Tensor]:
    """`reference_backward` in one pass: C on the CPU, Triton on CUDA, the reference elsewhere."""
    if v.device.type == "cuda" and triton_factor.available():
        return triton_factor.backward(grad, v, w, r, lengths, shift_tensor(shifts, v.device), normalize, residual)
    lib = _c_ready(v, w)
    if lib is None or grad.dtype != v.dtype:
        return reference_backward(grad, v, w, r, lengths, shifts, normalize, residual)
    b, n, d = v.shape
    v, grad, r, lengths = v.contiguous(), grad.contiguous(), r.contiguous(), lengths.to(torch.int64).contiguous()
    w, w_stride = triton_factor.w_rows(w)
    grad_v, grad_w = torch.empty_like(v), w.new_empty(b, n, len(shifts))
    shift_t = shift_tensor(shifts, v.device)
    _over_rows(getattr(lib, f"backward_{C_TYPES[v.dtype]}"), b * n, ctypes.c_int64(n), ctypes.c_int64(d),
               ctypes.c_int64(len(shifts)), _ptr(v), _ptr(w), ctypes.c_int64(w_stride),
               _ptr(r) if normalize else _ptr(None), _ptr(grad), _ptr(lengths), _ptr(shift_t), ctypes.c_int(residual),
               _ptr(grad_v), _ptr(grad_w))
    return grad_v, grad_w


@fused_backward.register_fake
def _(grad, v, w, r, lengths, shifts, normalize, residual):
    return torch.empty_like(v), w.new_empty(*v.shape[:2], len(shifts))
