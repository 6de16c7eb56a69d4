"""The run-time environment: one rich console on stderr (stdout is for data), the device, allocation."""

import ctypes
import time
from contextlib import nullcontext

import torch
from rich.console import Console

from genomix.errors import GenomixError


class _Console(Console):
    """rich's console, but log lines are plain (one line each, no padding) where stderr is not a terminal, so
    that pipeline logs stay readable and greppable."""

    def log(self, *objects: object, **kwargs: object) -> None:
        if self.is_terminal:
            super().log(*objects, **kwargs)
        elif not self.quiet:
            self.file.write(f"[{time.strftime('%X')}] {' '.join(map(str, objects))}\n")
            self.file.flush()


console = _Console(stderr=True, highlight=False, log_path=False)


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; asking for CUDA without one is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenomixError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise GenomixError(f"--device {device}: expected auto, cpu or cuda")
    return torch.device(device)


def use_threads(threads: int | None) -> None:
    """Keep torch to `threads` CPU threads (a pipeline's share of the cores); None leaves torch's choice."""
    if threads is not None:
        if threads < 1:
            raise GenomixError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


PRECISIONS = ("auto", "fp32", "bf16")
# What `auto` means on the CPU: fp32 (bench/inference.py checks bf16 against fp32; docs/PERFORMANCE.md).
AUTO_CPU_BF16 = False


def fast_cpu_bf16() -> bool:
    """The processor multiplies bf16 in hardware (AVX-512 BF16 or AMX), so oneDNN's bf16 GEMMs beat fp32."""
    return torch.backends.mkldnn.is_available() and (torch.cpu._is_avx512_bf16_supported()
                                                     or torch.cpu._is_amx_tile_supported())


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise GenomixError(f"--precision {precision}: expected {', '.join(PRECISIONS)}")


def compute_dtype(precision: str | None, device: torch.device) -> torch.dtype:
    """The dtype a model's matrix products run in: `auto` is bf16 on CUDA, and on the CPU bf16 only where
    AUTO_CPU_BF16 and the processor has bf16 units; fp32 otherwise. None is training's choice: bf16 on CUDA,
    full precision on the CPU, where bf16 costs gradients accuracy."""
    if precision is None:
        precision = "bf16" if device.type == "cuda" else "fp32"
    check_precision(precision)
    if precision == "auto":
        bf16 = device.type == "cuda" or (AUTO_CPU_BF16 and fast_cpu_bf16())
        precision = "bf16" if bf16 else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


def precision_name(device: str | torch.device, precision: str) -> str:
    """What scoring in `precision` runs in on `device`, for log lines: `fp32 (auto)`, say."""
    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    name = "bf16" if compute_dtype(precision, torch_device) == torch.bfloat16 else "fp32"
    return f"{name} (auto)" if precision == "auto" else name


def autocast(device: torch.device, precision: str | None = None):
    """Autocast to `compute_dtype(precision, device)`."""
    dtype = compute_dtype(precision, device)
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


def reuse_large_allocations() -> None:
    """Let glibc's malloc reuse freed blocks of up to 1 GiB instead of returning them to the system.

    By default blocks over 32 MiB are mmap'ed afresh at each allocation, so every batch of long inputs pays
    millions of page faults (docs/PERFORMANCE.md, "glibc's mmap threshold"). Called by the CLI and the
    benchmarks; other C libraries are left alone.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep freed memory for the next batch
    except (OSError, AttributeError):
        pass
