"""Data-parallel training under `torchrun`: one process per device, gradients averaged by PyTorch DDP.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them everything runs as one process and every
function here is a no-op. Every rank builds the same epoch (same seeds, same batches) and trains on its
own share of the batches; validation is split the same way and the scores gathered, so every rank sees
the same metrics and takes the same early-stopping decision. Only rank 0 prints and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from genomix.console import console

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Within: this rank's device, in the process group (gloo on CPU, nccl on CUDA) when under torchrun, with
    only rank 0 printing. The group is left on the way out, so a Python caller leaks nothing."""
    if world_size() == 1 or dist.is_initialized():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    quiet, console.quiet = console.quiet, not is_main()
    try:
        yield device
    finally:
        console.quiet = quiet
        dist.destroy_process_group()


def share(items: Sequence[T]) -> list[T]:
    """This rank's share: items rank, rank + world, ... cut to an equal count on every rank (DDP needs
    every rank to take the same number of steps)."""
    world = world_size()
    return list(items[rank() :: world][: len(items) // world])


def gather_rows(mine: np.ndarray, total: int) -> np.ndarray:
    """Reassemble rows split by `items[rank::world]` (no cut) from every rank, in the original order."""
    world = world_size()
    if world == 1:
        return mine
    parts: list[np.ndarray | None] = [None] * world
    dist.all_gather_object(parts, mine)
    rows = np.empty((total, *mine.shape[1:]), dtype=mine.dtype)
    for r, part in enumerate(parts):
        rows[r::world] = part
    return rows


def total(*values: float) -> list[float]:
    """Sums over the ranks (e.g. loss sums and counts of an epoch)."""
    if world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()
