"""Training a classifier: records → labelled set → crops and reverse complements → bucketed batches → the loop
(`genomix.fitting.loop`) → the finishing step (`genomix.fitting.finishing`) → a model with its card.

The records are a fixed labelled set, or windows drawn afresh every epoch from labelled genomes. Class
weights balance imbalanced sets; early stopping is on validation MCC (ties broken by validation loss).
With `init`, training fine-tunes a backbone (`genomix.fitting.pretraining`): its architecture, and every weight but
its base-predicting head. The steps every fit shares are `genomix.fitting.skeleton`'s; `Classifying` plugs in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from genomix.applying.metrics import report_table
from genomix.applying.novelty import DEFAULT_KNOWN_RECALL, check_known_recall
from genomix.applying.scoring import Scorer
from genomix.console import console
from genomix.errors import GenomixError
from genomix.fitting import distributed
from genomix.fitting.finishing import every_rank, finish, fit_direct, metrics
from genomix.fitting.loop import TrainState, Validation, epoch_batches, epoch_crops, padded
from genomix.fitting.skeleton import DEFAULT_MAX_LEN_CAP as DEFAULT_MAX_LEN_CAP
from genomix.fitting.skeleton import EpochData, FitSettings, Plan, fit_task, fit_to_file
from genomix.io.genomes import GenomeSet
from genomix.io.reading import Record
from genomix.io.sources import RecordSource
from genomix.models import model_class
from genomix.models.base import Model
from genomix.models.modelfile import ModelCard, TrainedModel, load_model, read_card
from genomix.sequences.batching import num_batches
from genomix.sequences.dataset import LabelledSet, positive_class

FINE_TUNED_OPTIONS = ("composition", "dropout")  # options a fine-tuned model may set; the rest are the backbone's
DIGEST_CHUNK = 1 << 20  # bytes read at a time to hash a backbone file


@dataclass
class TrainSettings(FitSettings):
    """The settings every fit shares (`genomix.fitting.skeleton.FitSettings`) and the classifier's own: its positive
    class, and a backbone to start from. With `init` the model, max_len and architecture options are the
    backbone's; given ones must agree with it."""

    positive_class: str | None = None  # binary models: None chooses by the class names (`dataset.positive_class`)
    init: str | None = None  # a backbone file (`genomix pretrain`) to fine-tune
    freeze_backbone: bool = False  # with `init`: train the head only (the k-mer term is fitted as usual)
    known_recall: float = DEFAULT_KNOWN_RECALL  # share of validation records the novelty threshold keeps known

    def __post_init__(self) -> None:
        check_known_recall(self.known_recall)
        backbone = self._backbone() if self.init is not None else None
        if backbone is None and self.freeze_backbone:
            raise GenomixError("--freeze-backbone needs --init backbone.gmx")
        super().__post_init__()
        if backbone is not None:
            self._take_architecture(backbone)

    def _backbone(self) -> ModelCard:
        """The `init` file's card, which must be a backbone of the given model (if any); its model is taken."""
        card = read_card(self.init)
        if card.kind != "backbone":
            raise GenomixError(f"--init {self.init}: a {card.kind}, not a backbone (write one with `genomix pretrain`)")
        if self.arch not in (None, card.model):
            raise GenomixError(f"--init {self.init}: a {card.model} backbone, not --arch {self.arch}")
        self.arch = card.model
        return card

    def _take_architecture(self, backbone: ModelCard) -> None:
        """The max_len and architecture options of the backbone; given ones must agree with it."""
        config = model_class(backbone.model).upgrade(dict(backbone.config))
        architecture = {k: v for k, v in config.items() if k not in FINE_TUNED_OPTIONS}
        given = self.options | {"max_len": self.max_len}
        for name, value in architecture.items():
            if (name in self.options or name == "max_len" and self.max_len is not None) and given[name] != value:
                flag = "--max-len" if name == "max_len" else f"option {name}"
                raise GenomixError(f"--init {self.init}: the backbone has {name} {value}; {flag} {given[name]} "
                                   "contradicts it (the architecture comes from the backbone)")
        self.max_len = architecture.pop("max_len")
        self.options = {**self.options, **architecture}


@dataclass
class Classification:
    """The classification objective: a fresh crop (and strand) per sequence each epoch, class-weighted
    cross-entropy, validation by MCC then loss."""

    data: EpochData[LabelledSet]
    val: LabelledSet | None
    plan: Plan
    device: torch.device
    score: Scorer

    def __post_init__(self) -> None:
        first = self.data(0)
        self.current = (first.tokens, first.y)  # this epoch's crops and labels, replaced by `epoch`
        weights = len(first) / (len(first.classes) * first.counts)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32).to(self.device))
        self.size = len(first)

    def steps_per_epoch(self) -> int:
        return num_batches(self.size, self.plan.settings.batch_size) // distributed.world_size()

    def epoch(self, epoch: int) -> tuple[list[np.ndarray], dict[str, float]]:
        labelled = self.data(epoch)
        rng = np.random.default_rng([self.plan.settings.seed, epoch])
        tokens = epoch_crops(labelled.tokens, self.plan.max_len, self.plan.rc_augment, rng)
        self.current = (tokens, labelled.y)
        return epoch_batches(tokens, self.plan.settings.batch_size, rng)

    def loss(self, model: torch.nn.Module, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        tokens, y = self.current
        logits = model(*padded([tokens[i] for i in batch], self.plan.max_len, self.device))
        return self.loss_fn(logits.float(), torch.from_numpy(y[batch]).to(self.device)), len(batch)

    def validate(self, network: torch.nn.Module) -> Validation | None:
        if not self.val:
            return None
        scores = every_rank(replace(self.score, network=network), self.val.tokens)
        result = metrics(scores, self.val.y, len(self.val.classes))
        return Validation(
            score=(round(result["mcc"], 4), -result["loss"]), metrics=result,
            history={"val_loss": result["loss"], "val_accuracy": result["accuracy"], "val_mcc": result["mcc"]},
            message=f"val loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f}, MCC {result['mcc']:.4f}")


@dataclass
class Classifying:
    """Classification as a `genomix.fitting.skeleton.Task`: labelled sets, a network started fresh or from a backbone,
    the `Classification` objective (or the model's closed-form fit), then the finishing steps: the k-mer
    term's blend, the validation report and the temperature. What the run settles is kept for its card."""

    settings: TrainSettings
    purpose: ClassVar[str] = "training"
    positive: str | None = field(init=False, default=None)  # the positive class, once the classes are known
    start: dict[str, Any] | None = field(init=False, default=None)  # with `init`: the backbone's name and SHA-256
    score: Scorer | None = field(init=False, default=None)  # how the run scores sequences, once on its device

    def examples(self, records: list[Record], like: LabelledSet | None, what: str) -> LabelledSet:
        return LabelledSet.of(records, None if like is None else like.classes, what)

    def split(self, train: LabelledSet, fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
        return train.split(fraction, seed)

    def describe(self, train: LabelledSet) -> str:
        return f" ({', '.join(f'{c}: {n}' for c, n in zip(train.classes, train.counts))})"

    def initialise(self, network: Model, train: LabelledSet) -> None:
        self.positive = positive_class(train.classes, self.settings.positive_class)
        if self.settings.init is not None:
            self.start = initialise_from_backbone(network, self.settings.init, self.settings.freeze_backbone)

    def objective(self, network: Model, data: EpochData[LabelledSet], val: LabelledSet | None, plan: Plan,
                  device: torch.device) -> tuple[Model, Classification] | None:
        self.score = score = Scorer(network, device, plan.rc_augment, batch_size=self.settings.batch_size)
        if network.fits_directly:  # closed-form models (kmer) skip the gradient loop
            fit_direct(network, data(0), val, plan.max_len, self.settings.seed, score.rc)
            return None
        return network, Classification(data, val, plan, device, score)

    def card(self, network: Model, train: LabelledSet, val: LabelledSet | None, plan: Plan,
             state: TrainState) -> tuple[ModelCard, dict[str, Any]]:
        done = finish(network, train, val, plan.max_len, self.settings.seed, self.score, state.best_metrics,
                      self.settings.known_recall)
        card = ModelCard(network.name, network.config, train.classes, self.positive, plan.rc_augment,
                         done.temperature, validation=done.validation, novelty=done.novelty)
        return card, {"class_counts": dict(zip(train.classes, train.counts.tolist())),
                      "composition_weight": done.composition_weight, "initialised_from": self.start}


def fit(
    data: Iterable[Record] | GenomeSet,
    settings: TrainSettings | None = None,
    val_records: Iterable[Record] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Train a model on labelled records, or on windows drawn afresh every epoch from labelled genomes."""
    return fit_task(Classifying(settings or TrainSettings()), data, val_records, checkpoint, resume)


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
    console.log(f"initialised from the backbone {path}: {len(weights)} tensors" + (", frozen" if freeze else ""))
    return {"file": Path(path).name, "sha256": sha256_of(path), "frozen": freeze}


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file, read a chunk at a time (`hashlib.file_digest` needs Python 3.11)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(DIGEST_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train(source: RecordSource, output: str | Path, settings: TrainSettings | None = None,
          resume: bool = False) -> TrainedModel:
    """`genomix train`: read the labelled records of `source`, fit, write the model file, show the validation
    report. A source of `CLASS=genome.fa` genomes is read as windows of `settings.genome_window` bases."""
    settings = settings or TrainSettings()
    model = fit_to_file(source, output, settings, resume, "train on", fit,
                        lambda: source.genome_set(settings.genome_window, settings.holdout_fraction))
    if model.card.validation:
        console.print(report_table(model.card.validation, model.classes, "validation"))
    return model
