"""The gradient loop, for any objective: AdamW with warm-up and cosine decay, gradient clipping, bf16 autocast
on CUDA, early stopping on validation with the best epoch's weights kept, and a checkpoint after every epoch
so that `--resume` continues an interrupted run exactly.

An `Objective` says what an epoch's batches are, what a batch's loss is and how validation scores the
network; classification (`genomix.fitting.training`) and masked-base pretraining
(`genomix.fitting.pretraining`) are the two, both run by `genomix.fitting.skeleton.fit_task`.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from genomix.console import autocast, console
from genomix.errors import GenomixError
from genomix.fitting import distributed
from genomix.io.files import atomic_path
from genomix.sequences.batching import bucket_batches, bucket_width, pad, padding_fraction, random_crop
from genomix.sequences.tokens import reverse_complement

WARMUP_FRACTION = 0.05
CLIP_NORM = 1.0



def epoch_crops(token_arrays: list[np.ndarray], max_len: int, rc_augment: bool | None,
                rng: np.random.Generator) -> list[np.ndarray]:
    """What an objective trains on in one epoch: a fresh random crop of each array, and with `rc_augment`
    half of them, at random, reverse-complemented."""
    tokens = [random_crop(t, max_len, rng) for t in token_arrays]
    if rc_augment:
        flips = rng.random(len(tokens)) < 0.5
        tokens = [reverse_complement(t) if f else t for t, f in zip(tokens, flips)]
    return tokens


def epoch_batches(tokens: list[np.ndarray], batch_size: int,
                  rng: np.random.Generator) -> tuple[list[np.ndarray], dict[str, float]]:
    """This process's share of length-bucketed batches of `tokens`, and the padding they carry (for the log)."""
    lengths = np.array([len(t) for t in tokens])
    batches = distributed.share(bucket_batches(lengths, batch_size, rng))
    return batches, {"padding": padding_fraction(lengths, batches)}


def padded(arrays: list[np.ndarray], max_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """A batch padded and on `device`; on CUDA to one of a few bucket widths, so compiled steps are reused."""
    width = bucket_width(max(map(len, arrays)), max_len) if device.type == "cuda" else None
    tokens, lengths = pad(arrays, width)
    return tokens.to(device), lengths.to(device)

@dataclass
class Validation:
    """One validation: a score to maximise (compared as a tuple), the metrics, and what goes in the history."""

    score: tuple[float, ...]
    metrics: dict[str, Any]
    history: dict[str, float]
    message: str


class Objective(Protocol):
    def steps_per_epoch(self) -> int:
        """Optimizer steps this process takes per epoch (the same on every rank)."""

    def epoch(self, epoch: int) -> tuple[list[Any], dict[str, float]]:
        """This rank's batches for `epoch` (deterministic in the seed and epoch) and figures for the history."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        """The mean loss of a batch and the number of examples it averages."""

    def validate(self, network: nn.Module) -> Validation | None:
        """Score the network (in eval mode) on validation data; None where there is none."""


@dataclass
class LoopSettings:
    epochs: int
    lr: float
    weight_decay: float
    patience: int
    seed: int


@dataclass
class TrainState:
    """Where a run stands after its last finished epoch: everything `--resume` needs besides the optimizer."""

    epoch: int = 0
    bad_epochs: int = 0
    best_score: tuple[float, ...] | None = None
    best_epoch: int | None = None
    best_weights: dict[str, Tensor] | None = None
    best_metrics: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Checkpoint:
    """The checkpoint file, and what a run must match to resume from it (settings and classes, say; not the
    device: `genomix.fitting.skeleton.Plan.identity`)."""

    path: Path
    identity: dict[str, Any]

    def save(self, network: nn.Module, optimizer, scheduler, state: TrainState) -> None:
        payload = {"network": network.state_dict(), "optimizer": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "identity": self.identity, "state": asdict(state)}
        with atomic_path(self.path) as tmp:
            torch.save(payload, tmp)

    def load(self, network: nn.Module, optimizer, scheduler) -> TrainState:
        if not self.path.is_file():
            raise GenomixError(f"--resume: no checkpoint at {self.path}")
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            same = payload["identity"] == self.identity
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is the user's file, not our bug
            raise GenomixError(f"{self.path}: unreadable checkpoint ({str(err).splitlines()[0]})") from None
        if not same:
            raise GenomixError(f"{self.path}: checkpoint was made with other settings or classes; resume with the "
                               "same ones")
        network.load_state_dict(payload["network"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        console.log(f"resuming after epoch {payload['state']['epoch']} from {self.path}")
        return TrainState(**payload["state"])


def save_checkpoint(checkpoint: Checkpoint, network: nn.Module, optimizer, scheduler, state: TrainState) -> None:
    """After every epoch, on the main process only."""
    if distributed.is_main():
        checkpoint.save(network, optimizer, scheduler, state)


class Step:
    """The model a training step runs: on CUDA compiled as CUDA graphs (`mode="reduce-overhead"`, one graph per
    padded shape; `GENOMIX_COMPILE=0` turns it off), eager elsewhere, and eager for the rest of the run where
    compilation fails."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.captured = model, None
        if device.type == "cuda" and os.environ.get("GENOMIX_COMPILE", "1") != "0":
            self.captured = torch.compile(model, mode="reduce-overhead")

    def loss(self, objective: Objective, batch: Any) -> tuple[Tensor, int]:
        if self.captured is None:
            return objective.loss(self.model, batch)
        try:
            torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are no longer needed
            return objective.loss(self.captured, batch)
        except Exception as err:  # noqa: BLE001 - any compiler problem means: train eager
            warnings.warn(f"the compiled training step failed, training continues eager: {err}", stacklevel=2)
            self.captured = None
            return objective.loss(self.model, batch)


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first WARMUP_FRACTION of steps, then cosine decay to zero."""
    warmup = max(1, int(WARMUP_FRACTION * total))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _optimizer(network: nn.Module, settings: LoopSettings, total_steps: int):
    """AdamW with weight decay on matrices only, and the warm-up + cosine schedule."""
    decay = [p for p in network.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in network.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:,.1f} seq/s"),
        TimeRemainingColumn(), console=console, transient=True,
    )


def train_loop(network: nn.Module, objective: Objective, settings: LoopSettings, device: torch.device,
               checkpoint: Checkpoint | None = None, resume: bool = False) -> TrainState:
    """Train until `settings.epochs` or `settings.patience` epochs without a better validation score."""
    model = network
    if distributed.world_size() > 1:
        model = nn.parallel.DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)
    total_steps = objective.steps_per_epoch() * settings.epochs
    if total_steps == 0:
        raise GenomixError(f"too few training batches for {distributed.world_size()} processes")
    optimizer, scheduler = _optimizer(network, settings, total_steps)
    state = checkpoint.load(network, optimizer, scheduler) if resume and checkpoint else TrainState()
    step = Step(model, device)

    network.train()
    while state.epoch < settings.epochs and state.bad_epochs < settings.patience:
        epoch = state.epoch
        torch.manual_seed((settings.seed * 100_003 + epoch) * 1009 + distributed.rank())  # own dropout per rank
        batches, figures = objective.epoch(epoch)
        loss_sum, seen, tick = 0.0, 0, time.perf_counter()
        with _progress() as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{settings.epochs}", total=len(batches), loss=0.0, speed=0.0)
            for batch in batches:
                with autocast(device):
                    loss, count = step.loss(objective, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), CLIP_NORM)
                optimizer.step()
                scheduler.step()
                loss_sum, seen = loss_sum + loss.item() * count, seen + count
                progress.update(task, advance=1, loss=loss_sum / seen, speed=seen / (time.perf_counter() - tick))
        loss_sum, seen = distributed.total(loss_sum, seen)
        entry = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "seq_per_s": seen / (time.perf_counter() - tick),
                 **figures}
        _end_epoch(network, objective, state, entry)
        if checkpoint is not None:
            save_checkpoint(checkpoint, network, optimizer, scheduler, state)
    if state.bad_epochs >= settings.patience:
        console.log(f"early stop: no validation improvement for {settings.patience} epochs")
    return state


def _end_epoch(network: nn.Module, objective: Objective, state: TrainState, entry: dict[str, float]) -> None:
    """Validate, keep the best weights, log the epoch and add it to the history."""
    network.eval()
    validation = objective.validate(network)
    network.train()
    message = f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}"
    improved = validation is None or state.best_score is None or validation.score > tuple(state.best_score)
    if validation is not None:
        entry |= validation.history
        message += ", " + validation.message
    if improved:
        state.best_score = validation.score if validation else None
        state.best_weights = copy.deepcopy(network.state_dict())
        state.best_epoch, state.best_metrics, state.bad_epochs = entry["epoch"], validation and validation.metrics, 0
        message += " (best so far)" if validation else ""
    else:
        state.bad_epochs += 1
    extra = f", padding {100 * entry['padding']:.1f}%" if "padding" in entry else ""
    console.log(f"{message}; {entry['seq_per_s']:,.1f} seq/s{extra}")
    state.history.append(entry)
    state.epoch = entry["epoch"]
