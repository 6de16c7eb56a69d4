"""Fitting a network, whatever it learns: the steps every run takes, in one order, with an objective's own
steps plugged in.

`fit_task` reads the data (a fixed set of records, or windows drawn afresh from genomes every epoch),
resolves the run's `Plan` once (max_len, the strands), opens the process group on the device, seeds, builds
the network, trains it with `genomix.fitting.loop.train_loop` under a checkpoint, keeps the best epoch's weights and
writes the training record. What an objective brings is a `Task`: how records become its examples, how a
new network starts, its `loop.Objective` and its model card. Classification (`genomix.fitting.training`) and
masked-base pretraining (`genomix.fitting.pretraining`) are the two; `FitSettings` are the settings they share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from genomix.console import console, resolve_device
from genomix.errors import GenomixError
from genomix.fitting import distributed
from genomix.fitting.loop import Checkpoint, LoopSettings, Objective, TrainState, train_loop
from genomix.fitting.strand import is_stranded, strand_signal
from genomix.io.files import check_writable
from genomix.io.genomes import GenomeSet
from genomix.io.reading import Record
from genomix.io.sources import RecordSource
from genomix.models import DEFAULT_MODEL, create_model, parse_options
from genomix.models.base import Model
from genomix.models.modelfile import ModelCard, TrainedModel, TrainingRecord, save_model

DEFAULT_MAX_LEN_CAP = 16384  # default max_len: the longest training sequence, at most this
MIN_LEN = 8
PLACE = ("device",)  # settings that say where a run runs, not what it computes: a run resumes with others


@dataclass
class FitSettings:
    """What every fit is set by, whatever it learns: the architecture, the data and the loop. Validated on creation,
    so that a mistake fails before any work is done.

    `options` are the model's own (`genomix.models.base.ModelOptions`: dim, layers, composition...), kept as
    parsed (typed); what is not given takes the model's default.
    """

    arch: str | None = None  # the architecture; None: DEFAULT_MODEL
    options: dict[str, Any] = field(default_factory=dict)
    max_len: int | None = None  # None: the genome window, else the longest training sequence, at most the cap
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    val_fraction: float = 0.1
    patience: int = 4
    rc_augment: bool | None = None  # None: on when the training sequences have no strand (genomix.fitting.strand)
    genome_window: int | None = None  # genomes only: bases per window cut from a genome
    holdout_fraction: float = 0.2  # genomes only: end of every contig kept for validation and test
    windows_per_epoch: int = 2000  # genomes only: fresh random windows per epoch, equal for every class
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.arch = self.arch or DEFAULT_MODEL
        parsed = parse_options(self.arch, self.options)
        self.options = {name: getattr(parsed, name) for name in self.options}
        for name in ("epochs", "batch_size", "patience", "windows_per_epoch"):
            if getattr(self, name) < 1:
                raise GenomixError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("max_len", "genome_window"):
            if getattr(self, name) is not None and getattr(self, name) < MIN_LEN:
                raise GenomixError(f"--{name.replace('_', '-')} must be at least {MIN_LEN}")
        if not 0 < self.holdout_fraction < 1:
            raise GenomixError("--holdout-fraction must be in (0, 1)")
        if not 0 <= self.val_fraction < 1:
            raise GenomixError("--val-fraction must be in [0, 1)")
        if not 0 < self.lr < math.inf:  # nan and inf fail too
            raise GenomixError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.seed < 2**32:
            raise GenomixError(f"--seed must be between 0 and {2**32 - 1}")

    def loop(self) -> LoopSettings:
        return LoopSettings(self.epochs, self.lr, self.weight_decay, self.patience, self.seed)


@dataclass(frozen=True)
class Plan:
    """What a run resolves once from its settings and its first epoch's training sequences. The run uses these
    values, and the model card records them as used."""

    settings: FitSettings
    max_len: int
    rc_augment: bool
    strand_signal: float | None = None  # where `rc_augment` was read from the sequences (genomix.fitting.strand)

    @classmethod
    def of(cls, settings: FitSettings, tokens: list[np.ndarray]) -> Plan:
        """max_len: as given, else the genome window, else the longest sequence up to the cap; the strands: as
        given, else trained and scored on both where the sequences have no strand."""
        max_len = settings.max_len or settings.genome_window or min(max(map(len, tokens)), DEFAULT_MAX_LEN_CAP)
        if settings.rc_augment is not None:
            return cls(settings, max_len, settings.rc_augment)
        strand = strand_signal(tokens, settings.seed)
        rc_augment = not is_stranded(strand)
        verdict = "too few sequences to tell" if strand is None else f"{strand:.3f} (0.5: none)"
        console.log(f"strand signal of the training sequences: {verdict}; reverse-complement augmentation and "
                    f"two-strand scoring {'on' if rc_augment else 'off'}")
        return cls(settings, max_len, rc_augment, strand)

    def recorded(self) -> dict[str, Any]:
        """The settings as the run used them: the model card's `training.settings`."""
        return asdict(self.settings) | {"max_len": self.max_len, "rc_augment": self.rc_augment}

    def identity(self) -> dict[str, Any]:
        """The settings a run must share to resume from this one's checkpoint: all but where it runs."""
        return {name: value for name, value in self.recorded().items() if name not in PLACE}


class Examples(Protocol):
    """An objective's training or validation set: token arrays, and the names of what its network predicts."""

    tokens: list[np.ndarray]
    classes: list[str]

    def __len__(self) -> int: ...


E = TypeVar("E", bound=Examples)
EpochData = Callable[[int], E]  # epoch → the examples to train on in that epoch


class Task(Protocol[E]):
    """What an objective plugs into `fit_task`."""

    settings: FitSettings
    purpose: str  # what the records are for, in messages: "training", "pretraining"

    def examples(self, records: list[Record], like: E | None, what: str) -> E:
        """`records` as examples; `like`: the training examples they must match (in their classes, say)."""

    def split(self, train: E, fraction: float, seed: int) -> tuple[E, E]:
        """Training and validation examples, `fraction` of `train` held out for validation."""

    def describe(self, train: E) -> str:
        """What the log says of the training examples after their number."""

    def initialise(self, network: Model, train: E) -> None:
        """Whatever comes before a new network trains: checks against the classes, weights to start from."""

    def objective(self, network: Model, data: EpochData[E], val: E | None, plan: Plan,
                  device: torch.device) -> tuple[nn.Module, Objective] | None:
        """What the loop trains (the network, or a module around it) and how; None where the network fits in
        closed form (done here)."""

    def card(self, network: Model, train: E, val: E | None, plan: Plan,
             state: TrainState) -> tuple[ModelCard, dict[str, Any]]:
        """The model card of the fitted network, and this objective's fields of its training record."""


def usable(records: Iterable[Record], what: str) -> list[Record]:
    """The records with bases; empty ones (zero-length reads) carry nothing to learn and are skipped."""
    records = list(records)
    kept = [r for r in records if r.seq]
    if len(kept) < len(records):
        console.log(f"skipped {len(records) - len(kept)} empty {what} records")
    return kept


def fit_data(task: Task[E], data: Iterable[Record] | GenomeSet,
             val_records: Iterable[Record] | None) -> tuple[EpochData[E], E | None]:
    """The epoch data and the validation set: `val_records`, else the genomes' validation regions, else a
    split of the records (`Task.split`)."""
    settings = task.settings
    if isinstance(data, GenomeSet):
        return _genome_data(task, data, val_records)
    records = usable(data, task.purpose)
    if not records:
        raise GenomixError(f"no {task.purpose} records")
    train = task.examples(records, None, task.purpose)
    val = None
    if val_records is not None:
        val = task.examples(usable(val_records, "validation"), train, "validation")
    elif settings.val_fraction > 0:
        train, val = task.split(train, settings.val_fraction, settings.seed)
    return (lambda epoch: train), (val if val else None)


def _genome_data(task: Task[E], genomes: GenomeSet,
                 val_records: Iterable[Record] | None) -> tuple[EpochData[E], E | None]:
    """Windows of the genomes, the same number for every class: the first epoch's, then a fresh draw for every
    later epoch; validation on `val_records`, else tiles of the genomes' validation regions."""
    seed = task.settings.seed
    per_class = max(1, task.settings.windows_per_epoch // len(genomes.classes))
    first = task.examples(genomes.sample(per_class, np.random.default_rng([seed, 0])), None, task.purpose)
    val_records = val_records if val_records is not None else genomes.tiles("val", max(8, per_class // 4))
    val = task.examples(usable(val_records, "validation"), first, "validation")

    def epoch_data(epoch: int) -> E:
        if epoch == 0:
            return first
        return task.examples(genomes.sample(per_class, np.random.default_rng([seed, epoch])), first, task.purpose)

    return epoch_data, (val if val else None)


def fit_task(task: Task[E], data: Iterable[Record] | GenomeSet, val_records: Iterable[Record] | None = None,
             checkpoint: str | Path | None = None, resume: bool = False) -> TrainedModel:
    """Fit the task's network on records, or on windows drawn afresh every epoch from genomes."""
    settings, started = task.settings, time.perf_counter()
    epoch_data, val = fit_data(task, data, val_records)
    train = epoch_data(0)
    plan = Plan.of(settings, train.tokens)
    lengths = [len(t) for t in train.tokens]
    with distributed.process_group(resolve_device(settings.device)) as device:
        torch.manual_seed(settings.seed)
        network = create_model(settings.arch, len(train.classes), plan.max_len, **settings.options)
        task.initialise(network, train)
        network = network.to(device)
        console.log(f"{task.purpose} {settings.arch} on {len(train)} sequences{task.describe(train)}, "
                    f"{len(val) if val else 0} for validation; {sum(p.numel() for p in network.parameters()):,} "
                    f"parameters; max_len {plan.max_len} (longest sequence {max(lengths)}); device {device}")
        state = _fit_weights(task, network, epoch_data, val, plan, device, checkpoint, resume)
        card, fields = task.card(network, train, val, plan, state)
        processes = distributed.world_size()
    card.training = TrainingRecord(
        records=len(train), length_range=[min(lengths), max(lengths)], settings=plan.recorded(),
        epochs_run=state.epoch, seconds=round(time.perf_counter() - started, 1), device=str(device),
        strand_signal=plan.strand_signal, processes=processes, best_epoch=state.best_epoch, history=state.history,
        **fields)
    return TrainedModel(network.cpu(), card)


def _fit_weights(task: Task[E], network: Model, epoch_data: EpochData[E], val: E | None, plan: Plan,
                 device: torch.device, checkpoint: str | Path | None, resume: bool) -> TrainState:
    """The objective's gradient loop, under a checkpoint that resumes a run of the same plan, objective and
    classes, ending on the best epoch's weights; or the task's closed-form fit. The network ends in
    evaluation mode."""
    plugged = task.objective(network, epoch_data, val, plan, device)
    state = TrainState()
    if plugged is not None:
        trainable, objective = plugged
        identity = {"settings": plan.identity(), "objective": task.purpose, "classes": epoch_data(0).classes}
        saved = Checkpoint(Path(checkpoint), identity) if checkpoint is not None else None
        state = train_loop(trainable, objective, task.settings.loop(), device, saved, resume)
        trainable.load_state_dict(state.best_weights)
    network.eval()
    return state


def checkpoint_path(output: str | Path) -> Path:
    """Where a fit keeps its per-epoch checkpoint for an output model path."""
    return Path(f"{output}.ckpt")


def fit_to_file(source: RecordSource, output: str | Path, settings: FitSettings, resume: bool, what: str,
                fitter: Callable[..., TrainedModel], genomes: Callable[[], GenomeSet]) -> TrainedModel:
    """What `train` and `pretrain` share: check the inputs and the output, read the records (or the `genomes`),
    fit with a checkpoint beside the output, write the model file atomically (the main process only)."""
    source.require(what)
    check_writable(output, source.files)
    checkpoint = checkpoint_path(output)
    if resume and not checkpoint.is_file():
        raise GenomixError(f"--resume: no checkpoint at {checkpoint}")
    if source.genomes and settings.genome_window is None:
        raise GenomixError(f"--genome needs --genome-window, the length of the windows to {what}")
    if settings.genome_window is not None and not source.genomes:
        raise GenomixError("--genome-window applies to --genome inputs; use --max-len to crop sequence files")
    if source.genomes:
        data: Iterable[Record] | GenomeSet = genomes()
        val_records = None
    else:
        data, val_records = list(source.records()), (source.validation_records() if source.val_inputs else None)
    model = fitter(data, settings, val_records, checkpoint, resume)  # interrupted, it keeps the checkpoint
    model.card.training.inputs = source.names
    if distributed.is_main():
        save_model(model, output)
        checkpoint.unlink(missing_ok=True)
        console.log(f"wrote {output}")
    return model
