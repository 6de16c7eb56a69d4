"""One rich console on stderr for logs, tables and progress bars: stdout is reserved for data."""

from contextlib import nullcontext

import torch
from rich.console import Console

from genomix.errors import GenomixError

console = Console(stderr=True, highlight=False, log_path=False)


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; asking for CUDA without one is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenomixError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise GenomixError(f"--device {device}: expected auto, cpu or cuda")
    return torch.device(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on the CPU, where bf16 buys little and costs accuracy."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
