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


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on the CPU, where bf16 buys little and costs accuracy."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


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
