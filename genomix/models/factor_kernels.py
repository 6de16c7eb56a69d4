"""The sparse factor step  out = [V +] W D V  as index-free kernels: reference (torch), CPU (C) and CUDA (Triton).

Row i < L_b of sequence b reads row (i + s) mod L_b for each of the factor's K shifts s; padded rows read
themselves, so every shift is a permutation and its transpose is the opposite shift (the backward is gathers
too). The kernels compute that row from i, s and L_b: no (K, B·N) index tensor is built, stored or read.
D is the diagonal 1 / rms(V[j]) when `normalize` (factor_norm), the identity otherwise; with `residual` the
output is V + W D V. One pass over V serves all K taps, the scaling and the residual add, forward and backward.

Why a C kernel on the CPU: `torch.compile` fuses the taps into one loop, but its C++ recomputes (or reloads)
the K row indices for every 8-float vector of D and bounds-checks each, which caps the fused op at about a
fifth of a copy's bandwidth (docs/PERFORMANCE.md). The C loop (factor_kernels.c) computes the K rows once per row and
streams D with FMA vectors. It is compiled once per machine with the C compiler that `torch.compile` needs
anyway, cached on disk, and called through ctypes (which releases the GIL, so rows are split over torch's
threads). Where no compiler is found, or for a dtype the kernels do not cover, the reference runs. bf16 (inference
under autocast) has a C forward that reads bf16 and sums in fp32, so autocast converts nothing around the op.

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
from importlib import resources
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

C_TYPES = {torch.float32: "f32", torch.float64: "f64"}
C_FORWARD_TYPES = C_TYPES | {torch.bfloat16: "bf16"}  # bf16 is for inference: no C backward
C_MAX_TAPS = 128  # KMAX in factor_kernels.c


def _compiler_flags() -> list[str]:
    """-mavx2 -mfma where torch itself found AVX2 (the cached library is keyed by these flags)."""
    return ["-mavx2", "-mfma"] if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else []


@cache
def c_library() -> ctypes.CDLL | None:
    """The compiled C kernels, built on first use into the user's cache directory; None if no compiler works."""
    compiler = os.environ.get("CC", "cc")
    flags = ["-O3", "-shared", "-fPIC", *_compiler_flags()]
    code = resources.files(__package__).joinpath("factor_kernels.c").read_text()  # package data
    key = hashlib.sha256("\0".join([code, compiler, *flags]).encode()).hexdigest()[:16]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genomix"
    path = cache_dir / f"factor_kernels_{key}.so"
    try:
        if not path.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                source, built = Path(tmp) / "factor_kernels.c", Path(tmp) / "factor_kernels.so"
                source.write_text(code)
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


def _c_ready(v: Tensor, w: Tensor, types: dict[torch.dtype, str] = C_TYPES) -> ctypes.CDLL | None:
    if v.device.type != "cpu" or v.dtype not in types or w.dtype != v.dtype or w.shape[-1] > C_MAX_TAPS:
        return None
    return c_library()


# --- the custom ops -------------------------------------------------------------------------------------


@torch.library.custom_op("genomix::factor_forward", mutates_args=())
def fused_forward(v: Tensor, w: Tensor, lengths: Tensor, shifts: list[int], normalize: bool,
                  residual: bool) -> tuple[Tensor, Tensor]:
    """`reference_forward` in one pass: C on the CPU, Triton on CUDA, the reference elsewhere."""
    if v.device.type == "cuda" and triton_factor.available():
        return triton_factor.forward(v, w, lengths, shift_tensor(shifts, v.device), normalize, residual)
    lib = _c_ready(v, w, C_FORWARD_TYPES)
    if lib is None:
        return reference_forward(v, w, lengths, shifts, normalize, residual)
    b, n, d = v.shape
    v, lengths = v.contiguous(), lengths.to(torch.int64).contiguous()  # kept alive: C reads their memory
    w, w_stride = triton_factor.w_rows(w)
    suffix, rdtype = C_FORWARD_TYPES[v.dtype], torch.promote_types(v.dtype, torch.float32)
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
