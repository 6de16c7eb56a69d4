"""Training a classifier: records → labelled set → crops and reverse complements → bucketed batches → the loop
(`genomix.loop`) → the finishing step (`genomix.finishing`) → a model with its card.

The records are a fixed labelled set, or windows drawn afresh every epoch from labelled genomes. Class
weights balance imbalanced sets; early stopping is on validation MCC (ties broken by validation loss).
With `init`, training fine-tunes a backbone (`genomix.pretraining`): its architecture, and every weight but
its base-predicting head.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomix import distributed
from genomix.batching import num_batches
from genomix.console import console, resolve_device
from genomix.dataset import LabelledSet, positive_class
from genomix.errors import GenomixError
from genomix.files import check_writable
from genomix.finishing import Scorer, finish, fit_direct, metrics
from genomix.genomes import GenomeSet
from genomix.loop import (
    Checkpoint,
    LoopSettings,
    TrainState,
    Validation,
    epoch_batches,
    epoch_crops,
    padded,
    train_loop,
)
from genomix.metrics import report_table
from genomix.modelfile import ModelCard, TrainedModel, TrainingRecord, load_model, read_card, save_model
from genomix.models import DEFAULT_MODEL, create_model, model_class, parse_options
from genomix.models.base import Model
from genomix.reading import Record
from genomix.sources import RecordSource
from genomix.strand import is_stranded, strand_signal

DEFAULT_MAX_LEN_CAP = 16384  # default max_len: the longest training sequence, at most this
MIN_LEN = 8
FINE_TUNED_OPTIONS = ("composition", "dropout")  # options a fine-tuned model may set; the rest are the backbone's


@dataclass
class TrainSettings:
    """Every training option, validated on creation so that a mistake fails before any work is done.

    `options` are the model's own (`genomix.models.base.ModelOptions`: dim, layers, composition...);
    what is not given takes the model's default, or with `init` the backbone's.
    """

    model: str | None = None  # None: DEFAULT_MODEL, or with `init` the backbone's
    options: dict[str, Any] = field(default_factory=dict)
    max_len: int | None = None  # None: the genome window, else the longest training sequence, at most the cap
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    val_fraction: float = 0.1
    patience: int = 4
    rc_augment: bool | None = None  # None: on when the training sequences have no strand (genomix.strand)
    window: int | None = None  # genomes only: bases per window cut from a genome
    holdout_fraction: float = 0.2  # genomes only: end of every contig kept for validation and test
    windows_per_epoch: int = 2000  # genomes only: fresh random windows per epoch, equal for every class
    positive_class: str | None = None  # binary models: None chooses by the class names (`dataset.positive_class`)
    seed: int = 0
    device: str = "auto"
    init: str | None = None  # a backbone file (`genomix pretrain`) to fine-tune
    freeze_backbone: bool = False  # with `init`: train the head only (the k-mer term is fitted as usual)

    def __post_init__(self) -> None:
        if self.init is not None:
            self._take_backbone_architecture()
        elif self.freeze_backbone:
            raise GenomixError("--freeze-backbone needs --init backbone.gmx")
        self.model = self.model or DEFAULT_MODEL
        parse_options(self.model, self.options)
        for name in ("epochs", "batch_size", "patience", "windows_per_epoch"):
            if getattr(self, name) < 1:
                raise GenomixError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("max_len", "window"):
            if getattr(self, name) is not None and getattr(self, name) < MIN_LEN:
                raise GenomixError(f"--{name.replace('_', '-')} must be at least {MIN_LEN}")
        if not 0 < self.holdout_fraction < 1:
            raise GenomixError("--holdout-fraction must be in (0, 1)")
        if not 0 <= self.val_fraction < 1:
            raise GenomixError("--val-fraction must be in [0, 1)")
        if not self.lr > 0:
            raise GenomixError("--lr must be positive")
        if not 0 <= self.seed < 2**32:
            raise GenomixError(f"--seed must be between 0 and {2**32 - 1}")

    def loop(self) -> LoopSettings:
        return LoopSettings(self.epochs, self.lr, self.weight_decay, self.patience, self.seed)

    def _take_backbone_architecture(self) -> None:
        """The model, max_len and architecture options of the `init` backbone; given ones must agree with it."""
        card = read_card(self.init)
        if card.kind != "backbone":
            raise GenomixError(f"--init {self.init}: a {card.kind}, not a backbone (write one with `genomix pretrain`)")
        if self.model not in (None, card.model):
            raise GenomixError(f"--init {self.init}: a {card.model} backbone, not --model {self.model}")
        config = model_class(card.model).upgrade(dict(card.config))
        backbone = {k: v for k, v in config.items() if k not in FINE_TUNED_OPTIONS}
        given = parse_options(card.model, self.options).as_dict() | {"max_len": self.max_len}
        for name, value in backbone.items():
            if (name in self.options or name == "max_len" and self.max_len is not None) and given[name] != value:
                flag = "--max-len" if name == "max_len" else f"option {name}"
                raise GenomixError(f"--init {self.init}: the backbone has {name} {value}; {flag} {given[name]} "
                                   "contradicts it (the architecture comes from the backbone)")
        self.model, self.max_len = card.model, backbone.pop("max_len")
        self.options = {**self.options, **backbone}


EpochData = Callable[[int], LabelledSet]  # epoch → the labelled set to train on in that epoch


@dataclass
class Classification:
    """The classification objective: a fresh crop (and strand) per sequence each epoch, class-weighted
    cross-entropy, validation by MCC then loss."""

    data: EpochData
    val: LabelledSet | None
    settings: TrainSettings
    max_len: int
    device: torch.device
    score: Scorer

    def __post_init__(self) -> None:
        first = self.data(0)
        self.current = (first.tokens, first.y)  # this epoch's crops and labels, replaced by `epoch`
        weights = len(first) / (len(first.classes) * first.counts)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32).to(self.device))
        self.size = len(first)

    def steps_per_epoch(self) -> int:
        return num_batches(self.size, self.settings.batch_size) // distributed.world_size()

    def epoch(self, epoch: int) -> tuple[list[np.ndarray], dict[str, float]]:
        labelled = self.data(epoch)
        rng = np.random.default_rng([self.settings.seed, epoch])
        tokens = epoch_crops(labelled.tokens, self.max_len, self.settings.rc_augment, rng)
        self.current = (tokens, labelled.y)
        return epoch_batches(tokens, self.settings.batch_size, rng)

    def loss(self, model: torch.nn.Module, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        tokens, y = self.current
        logits = model(*padded([tokens[i] for i in batch], self.max_len, self.device))
        return self.loss_fn(logits.float(), torch.from_numpy(y[batch]).to(self.device)), len(batch)

    def validate(self, network: torch.nn.Module) -> Validation | None:
        if not self.val:
            return None
        result = metrics(self.score(network, self.val.tokens), self.val.y, len(self.val.classes))
        return Validation(
            score=(round(result["mcc"], 4), -result["loss"]), metrics=result,
            history={"val_loss": result["loss"], "val_accuracy": result["accuracy"], "val_mcc": result["mcc"]},
            message=f"val loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f}, MCC {result['mcc']:.4f}")


def usable(records: Iterable[Record], what: str) -> list[Record]:
    """The records with bases; empty ones (zero-length reads) carry nothing to learn and are skipped."""
    records = list(records)
    kept = [r for r in records if r.seq]
    if len(kept) < len(records):
        console.log(f"skipped {len(records) - len(kept)} empty {what} records")
    return kept


def training_data(data: Iterable[Record] | GenomeSet, settings: TrainSettings,
                  val_records: Iterable[Record] | None) -> tuple[EpochData, LabelledSet | None]:
    """The epoch data and the validation set: `val_records`, else the genomes' validation regions, else a
    stratified split of the records."""
    if isinstance(data, GenomeSet):
        per_class = max(1, settings.windows_per_epoch // len(data.classes))
        records = data.sample(per_class, np.random.default_rng([settings.seed, 0]))
        val_records = val_records if val_records is not None else data.tiles("val", max(8, per_class // 4))
    else:
        records = usable(data, "training")
    if not records:
        raise GenomixError("no training records")
    train = LabelledSet.of(records)
    val = None
    if val_records is not None:
        val = LabelledSet.of(usable(val_records, "validation"), train.classes, "validation")
    elif settings.val_fraction > 0:
        train, val = train.split(settings.val_fraction, settings.seed)

    def epoch_data(epoch: int) -> LabelledSet:
        """The fixed set, or (genomes) the first epoch's windows then a fresh draw for every later epoch."""
        if epoch == 0 or not isinstance(data, GenomeSet):
            return train
        return LabelledSet.of(data.sample(per_class, np.random.default_rng([settings.seed, epoch])), train.classes)

    return epoch_data, (val if val else None)


def _choose_strands(settings: TrainSettings, train: LabelledSet) -> tuple[TrainSettings, float | None]:
    """Resolve `rc_augment` from the data when not given (`genomix.strand`)."""
    if settings.rc_augment is not None:
        return settings, None
    strand = strand_signal(train.tokens, settings.seed)
    settings = replace(settings, rc_augment=not is_stranded(strand))
    verdict = "too few sequences to tell" if strand is None else f"{strand:.3f} (0.5: none)"
    console.log(f"strand signal of the training sequences: {verdict}; reverse-complement augmentation and "
                f"two-strand scoring {'on' if settings.rc_augment else 'off'}")
    return settings, strand


def fit(
    data: Iterable[Record] | GenomeSet,
    settings: TrainSettings | None = None,
    val_records: Iterable[Record] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Train a model on labelled records, or on windows drawn afresh every epoch from labelled genomes."""
    settings, started = settings or TrainSettings(), time.perf_counter()
    epoch_data, val = training_data(data, settings, val_records)
    train = epoch_data(0)
    positive = positive_class(train.classes, settings.positive_class)
    longest = int(train.lengths.max())
    max_len = settings.max_len or settings.window or min(longest, DEFAULT_MAX_LEN_CAP)
    settings, strand = _choose_strands(settings, train)
    with distributed.process_group(resolve_device(settings.device)) as device:
        torch.manual_seed(settings.seed)
        network = create_model(settings.model, len(train.classes), max_len, **settings.options)
        start = initialise_from_backbone(network, settings.init, settings.freeze_backbone) if settings.init else None
        network = network.to(device)
        console.log(f"training {settings.model} on {len(train)} sequences "
                    f"({', '.join(f'{c}: {n}' for c, n in zip(train.classes, train.counts))}), "
                    f"{len(val) if val else 0} for validation; {sum(p.numel() for p in network.parameters()):,} "
                    f"parameters; max_len {max_len} (longest sequence {longest}); device {device}")
        score = Scorer(settings.batch_size, device, bool(settings.rc_augment))
        state = _fit_weights(network, epoch_data, val, settings, max_len, device, score, checkpoint, resume)
        done = finish(network, train, val, max_len, settings.seed, score, state.best_metrics)
        processes = distributed.world_size()
    record = TrainingRecord(
        records=len(train), class_counts=dict(zip(train.classes, train.counts.tolist())),
        length_range=[int(train.lengths.min()), longest], settings=asdict(settings), epochs_run=state.epoch,
        seconds=round(time.perf_counter() - started, 1), device=str(device), strand_signal=strand,
        composition_weight=done.composition_weight, processes=processes, best_epoch=state.best_epoch,
        history=state.history, initialised_from=start)
    card = ModelCard(network.name, network.config, train.classes, positive, bool(settings.rc_augment),
                     done.temperature, record, done.validation)
    return TrainedModel(network.cpu(), card)


def initialise_from_backbone(network: Model, path: str | Path, freeze: bool = False) -> dict[str, Any]:
    """Load every weight of the backbone at `path` into `network` but its head, which predicts bases, not
    classes (and `network`'s k-mer term, which the backbone has none of); with `freeze`, only the head trains.
    Returns what the model card records: the backbone's file name and SHA-256."""
    backbone = load_model(path, kinds=("backbone",)).network
    if type(backbone) is not type(network) or backbone.max_len != network.max_len:
        raise GenomixError(f"--init {path}: a {backbone.name} backbone of max_len {backbone.max_len}, not "
                           f"{network.name} of max_len {network.max_len}")
    weights = {k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}
    try:
        missing, unexpected = network.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # tensors of other shapes: another architecture
        raise GenomixError(f"--init {path}: the backbone has another architecture than the model "
                           f"({str(err).splitlines()[1].strip()})") from None
    left = [k for k in missing if not k.startswith(("head.", "composition"))]
    if left or unexpected:
        raise GenomixError(f"--init {path}: the backbone does not fit the model (tensors missing: {left[:3]}, "
                           f"unexpected: {unexpected[:3]})")
    if freeze:
        for name, parameter in network.named_parameters():
            parameter.requires_grad_(name.startswith("head."))
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    console.log(f"initialised from the backbone {path}: {len(weights)} tensors" + (", frozen" if freeze else ""))
    return {"file": Path(path).name, "sha256": digest, "frozen": freeze}


def _fit_weights(network: Model, epoch_data: EpochData, val: LabelledSet | None, settings: TrainSettings,
                 max_len: int, device: torch.device, score: Scorer, checkpoint: str | Path | None,
                 resume: bool) -> TrainState:
    """The closed-form fit where the model has one, else the gradient loop; the network ends with its best
    weights, in evaluation mode."""
    if network.fits_directly:  # closed-form models (kmer) skip the gradient loop
        fit_direct(network, epoch_data(0), val, max_len, settings.seed, score.rc)
        network.eval()
        return TrainState()
    objective = Classification(epoch_data, val, settings, max_len, device, score)
    identity = {"settings": asdict(settings), "classes": epoch_data(0).classes}
    saved = Checkpoint(Path(checkpoint), identity) if checkpoint is not None else None
    state = train_loop(network, objective, settings.loop(), device, saved, resume)
    network.load_state_dict(state.best_weights)
    network.eval()
    return state


def checkpoint_path(output: str | Path) -> Path:
    """Where training keeps its per-epoch checkpoint for an output model path."""
    return Path(f"{output}.ckpt")


def train(source: RecordSource, output: str | Path, settings: TrainSettings | None = None,
          resume: bool = False) -> TrainedModel:
    """`genomix train`: read the labelled records of `source`, fit, write the model file, show the validation
    report. A source of `CLASS=genome.fa` genomes is read as windows of `settings.window` bases."""
    settings = settings or TrainSettings()
    model = fit_to_file(source, output, settings, resume, "train on", fit,
                        lambda: source.genome_set(settings.window, settings.holdout_fraction))
    if model.card.validation:
        console.print(report_table(model.card.validation, model.classes, "validation"))
    return model


def fit_to_file(source: RecordSource, output: str | Path, settings: TrainSettings, resume: bool, what: str,
                fitter: Callable[..., TrainedModel], genomes: Callable[[], GenomeSet]) -> TrainedModel:
    """What `train` and `pretrain` share: check the inputs and the output, read the records (or the `genomes`),
    fit with a checkpoint beside the output, write the model file atomically (the main process only)."""
    source.require(what)
    check_writable(output, source.files)
    checkpoint = checkpoint_path(output)
    if resume and not checkpoint.is_file():
        raise GenomixError(f"--resume: no checkpoint at {checkpoint}")
    if source.genomes and settings.window is None:
        raise GenomixError(f"--genome needs --genome-window, the length of the windows to {what}")
    if settings.window is not None and not source.genomes:
        raise GenomixError("--genome-window applies to --genome inputs; use --max-len to crop sequence files")
    if source.genomes:
        data: Iterable[Record] | GenomeSet = genomes()
        val_records = None
    else:
        data, val_records = list(source.records()), (source.validation_records() if source.val_inputs else None)
    try:
        model = fitter(data, settings, val_records, checkpoint, resume)
    except KeyboardInterrupt:
        if checkpoint.is_file():
            console.log(f"interrupted: {checkpoint} holds the last finished epoch; run the same command with "
                        "--resume to continue")
        raise
    model.card.training.inputs = source.names
    if distributed.is_main():
        save_model(model, output)
        checkpoint.unlink(missing_ok=True)
        console.log(f"wrote {output}")
    return model
