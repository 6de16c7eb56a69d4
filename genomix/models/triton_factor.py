"""Triton kernels for the factor step on CUDA (see `genomix.models.factor_kernels` for what they compute).

A program owns BLOCK_R rows of one sequence and all D columns; for each of the K shifts it computes the rows
it reads from the row number, the shift (already reduced modulo the sequence's length) and the length, and
accumulates in fp32. K is a runtime loop bound, so CHORD's K = log2 N + 1 taps cost no extra compile time.
Under TRITON_INTERPRET=1 (set before this module is imported) the same kernels run on CPU tensors, which is
how the tests check them without a GPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU and reference paths need no triton
    triton = None

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def available() -> bool:
    """Triton kernels can run here: on a CUDA device, or anywhere under the interpreter."""
    return triton is not None and (INTERPRET or torch.cuda.is_available())


def _block_d(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


if triton is not None:
    # Tuned per (D, K) on first use; the interpreter (tests) takes one small configuration.
    _CONFIGS = ([triton.Config({"BLOCK_R": 8}, num_warps=1)] if INTERPRET else
                [triton.Config({"BLOCK_R": r}, num_warps=w) for r in (16, 32, 64, 128) for w in (2, 4, 8)])

    @triton.jit
    def _rms_kernel(v_ptr, r_ptr, rows, D, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
        q = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        d = tl.arange(0, BLOCK_D)
        mask = (q < rows)[:, None] & (d < D)[None, :]
        x = tl.load(v_ptr + q[:, None] * D + d[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(r_ptr + q, tl.rsqrt(tl.sum(x * x, 1) / D + 1e-6), mask=q < rows)

    @triton.autotune(configs=_CONFIGS, key=["D", "K"])
    @triton.jit
    def _forward_kernel(v_ptr, w_ptr, r_ptr, len_ptr, shift_ptr, out_ptr, N, D, K, w_stride,
                        NORMALIZE: tl.constexpr, RESIDUAL: tl.constexpr, BLOCK_R: tl.constexpr,
                        BLOCK_D: tl.constexpr):
        b = tl.program_id(1).to(tl.int64)
        i = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        d = tl.arange(0, BLOCK_D)
        length = tl.load(len_ptr + b)
        row_ok = i < N
        mask = row_ok[:, None] & (d < D)[None, :]
        base = b * N
        if RESIDUAL:
            acc = tl.load(v_ptr + (base + i)[:, None] * D + d[None, :], mask=mask, other=0.0).to(tl.float32)
        else:
            acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
        for k in range(K):
            t = tl.load(shift_ptr + k) % length
            t = tl.where(t < 0, t + length, t)
            j = i + t
            j = tl.where(j >= length, j - length, j)
            j = tl.where(i < length, j, i)
            c = tl.load(w_ptr + (base + i) * w_stride + k, mask=row_ok, other=0.0).to(tl.float32)
            if NORMALIZE:
                c = c * tl.load(r_ptr + base + j, mask=row_ok, other=0.0)
            x = tl.load(v_ptr + (base + j)[:, None] * D + d[None, :], mask=mask, other=0.0).to(tl.float32)
            acc += c[:, None] * x
        tl.store(out_ptr + (base + i)[:, None] * D + d[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.autotune(configs=_CONFIGS, key=["D", "K"])
    @triton.jit
    def _backward_kernel(g_ptr, v_ptr, w_ptr, r_ptr, len_ptr, shift_ptr, grad_v_ptr, grad_w_ptr, N, D, K,
                         w_stride, NORMALIZE: tl.constexpr, RESIDUAL: tl.constexpr, BLOCK_R: tl.constexpr,
                         BLOCK_D: tl.constexpr):
        b = tl.program_id(1).to(tl.int64)
        j = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        d = tl.arange(0, BLOCK_D)
        length = tl.load(len_ptr + b)
        row_ok = j < N
        mask = row_ok[:, None] & (d < D)[None, :]
        base = b * N
        g_j = tl.load(g_ptr + (base + j)[:, None] * D + d[None, :], mask=mask, other=0.0).to(tl.float32)
        grad_u = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
        for k in range(K):
            t = tl.load(shift_ptr + k) % length
            t = tl.where(t < 0, t + length, t)
            i = j - t  # the row that reads row j: the opposite shift
            i = tl.where(i < 0, i + length, i)
            i = tl.where(j < length, i, j)
            c = tl.load(w_ptr + (base + i) * w_stride + k, mask=row_ok, other=0.0).to(tl.float32)
            g_i = tl.load(g_ptr + (base + i)[:, None] * D + d[None, :], mask=mask, other=0.0).to(tl.float32)
            grad_u += c[:, None] * g_i
            jj = j + t  # the row that row j reads
            jj = tl.where(jj >= length, jj - length, jj)
            jj = tl.where(j < length, jj, j)
            v_jj = tl.load(v_ptr + (base + jj)[:, None] * D + d[None, :], mask=mask, other=0.0).to(tl.float32)
            dot = tl.sum(g_j * v_jj, 1)
            if NORMALIZE:
                dot = dot * tl.load(r_ptr + base + jj, mask=row_ok, other=0.0)
            tl.store(grad_w_ptr + (base + j) * K + k, dot.to(grad_w_ptr.dtype.element_ty), mask=row_ok)
        if NORMALIZE:
            r_j = tl.load(r_ptr + base + j, mask=row_ok, other=0.0)
            v_j = tl.load(v_ptr + (base + j)[:, None] * D + d[None, :], mask=mask, other=0.0).to(tl.float32)
            correction = r_j * r_j * r_j * tl.sum(grad_u * v_j, 1) / D
            grad_u = r_j[:, None] * grad_u - correction[:, None] * v_j
        if RESIDUAL:
            grad_u += g_j
        tl.store(grad_v_ptr + (base + j)[:, None] * D + d[None, :], grad_u.to(grad_v_ptr.dtype.element_ty),
                 mask=mask)


def _grid(b: int, n: int):
    return lambda meta: (triton.cdiv(n, meta["BLOCK_R"]), b)


def w_rows(w: Tensor) -> tuple[Tensor, int]:
    """w (B, N, K) and its row stride, as the kernels step through it (a slice of the MLP's output is fine)."""
    if w.stride(-1) != 1 or w.stride(0) != w.shape[1] * w.stride(1):
        w = w.contiguous()
    return w, w.stride(1)


def forward(v: Tensor, w: Tensor, lengths: Tensor, shifts: Tensor, normalize: bool,
            residual: bool) -> tuple[Tensor, Tensor]:
    """(out, r) as `factor_kernels.reference_forward`; shifts is a (K,) int64 tensor on v's device."""
    b, n, d = v.shape
    v, lengths = v.contiguous(), lengths.to(torch.int64)
    w, w_stride = w_rows(w)
    r = torch.ones(b, n, device=v.device, dtype=torch.float32)
    if normalize:
        _rms_kernel[(triton.cdiv(b * n, 32),)](v, r, b * n, d, BLOCK_R=32, BLOCK_D=_block_d(d))
    out = torch.empty_like(v)
    _forward_kernel[_grid(b, n)](v, w, r, lengths, shifts, out, n, d, shifts.numel(), w_stride,
                                 NORMALIZE=normalize, RESIDUAL=residual, BLOCK_D=_block_d(d))
    return out, r


def backward(grad: Tensor, v: Tensor, w: Tensor, r: Tensor, lengths: Tensor, shifts: Tensor, normalize: bool,
             residual: bool) -> tuple[Tensor, Tensor]:
    """(grad_v, grad_w) as `factor_kernels.reference_backward`."""
    b, n, d = v.shape
    grad, v, r, lengths = grad.contiguous(), v.contiguous(), r.contiguous(), lengths.to(torch.int64)
    w, w_stride = w_rows(w)
    grad_v, grad_w = torch.empty_like(v), w.new_empty(b, n, shifts.numel())
    _backward_kernel[_grid(b, n)](grad, v, w, r, lengths, shifts, grad_v, grad_w, n, d, shifts.numel(), w_stride,
                                  NORMALIZE=normalize, RESIDUAL=residual, BLOCK_D=_block_d(d))
    return grad_v, grad_w
