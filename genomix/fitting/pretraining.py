"""Masked-base pretraining: a backbone learns DNA from unlabelled sequences or genomes, then
`genomix train --init` fine-tunes it on labels.

A share of the bases (`mask_fraction`, 15% as in BERT and Caduceus) is chosen in every training window;
of those, 80% become N, 10% a random base and 10% stay as they are, and the network predicts the true
base at each chosen position from its per-position features (`SequenceClassifier.position_features`)
through a linear head over A, C, G, T: cross-entropy in nats, ln 4 = 1.386 for a uniform guess. N is the
mask because every model already reads it as "no base here": the k-mer embedding drops every k-mer that
contains it, so no k-mer and no stem tap carries the hidden base (tests/test_pretrain.py checks that the
prediction does not depend on it). The random and unchanged 10% keep the network from learning that only
N positions matter, so that it also represents the bases it sees, as fine-tuning needs. Validation hides
every chosen base behind N (no random or unchanged ones), so its loss and accuracy measure prediction of
bases the network cannot see; its windows and masks are fixed for the run.

Paramixer mixes in both directions, so masking fits it better than next-token prediction. The k-mer
composition term is not part of a backbone: it has no classes to regress on.

The fit is `genomix.fitting.skeleton.fit_task` and its loop `genomix.fitting.loop.train_loop`, as for classification
(`Pretraining` plugs in): checkpoints and `--resume`, DDP under torchrun, bf16 on CUDA, the best epoch
(validation masked loss) kept. The backbone is a model file (`genomix.models.modelfile`, kind "backbone") whose
head predicts the four bases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from genomix.console import autocast
from genomix.errors import GenomixError
from genomix.fitting import distributed
from genomix.fitting.loop import TrainState, Validation, epoch_batches, epoch_crops, padded
from genomix.fitting.skeleton import EpochData, FitSettings, Plan, fit_task, fit_to_file
from genomix.io.genomes import Genome, GenomeSet
from genomix.io.reading import Record, split_input
from genomix.io.sources import RecordSource
from genomix.models import list_models, model_class
from genomix.models.base import Model, SequenceClassifier
from genomix.models.modelfile import ModelCard, TrainedModel
from genomix.sequences.batching import num_batches, random_crop
from genomix.sequences.tokens import ALPHABET, BASE_TOKENS, MASK_TOKEN, encode

BASES = list(ALPHABET[:4])  # the backbone head's "classes": A, C, G, T
IGNORED = -100  # the target of positions that are not predicted (cross_entropy's ignore_index)
RANDOM_SHARE, KEPT_SHARE = 0.1, 0.1  # of the chosen bases: a random base, or the base left as it is
GENOMES_LABEL = "pretraining"  # the one class a GenomeSet of unlabelled genomes is drawn as


@dataclass
class PretrainSettings(FitSettings):
    """The settings every fit shares (`genomix.fitting.skeleton.FitSettings`) and the share of bases masked.
    Reverse-complement augmentation is on unless switched off: both strands of a genome are DNA to learn from."""

    rc_augment: bool | None = True
    mask_fraction: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch not in neural_models():
            raise GenomixError(f"architecture {self.arch} has no network to pretrain (choose from: "
                               f"{', '.join(neural_models())})")
        if self.options.get("composition"):
            raise GenomixError("a backbone has no k-mer composition term (it has no classes): drop composition")
        self.options = {**self.options, "composition": False}
        if not 0 < self.mask_fraction < 1:
            raise GenomixError("--mask-fraction must be in (0, 1)")


def neural_models() -> list[str]:
    """The registered models that pretraining applies to: those with a network read at every position."""
    return [m for m in list_models() if issubclass(model_class(m), SequenceClassifier)]


def mask_bases(tokens: np.ndarray, fraction: float, rng: np.random.Generator,
               hide_all: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(input tokens, targets) for one sequence: targets are the base (0-3) at the chosen positions and IGNORED
    elsewhere. Each base (never an N) is chosen with probability `fraction`, at least one per sequence that has
    a base; a chosen base becomes N, or (10% each, unless `hide_all`) a random base or itself."""
    bases = tokens.astype(np.int64) - 1
    real = np.isin(tokens, BASE_TOKENS)
    chosen = real & (rng.random(len(tokens)) < fraction)
    if real.any() and not chosen.any():
        chosen[rng.choice(np.flatnonzero(real))] = True
    roll = rng.random(len(tokens))
    inputs = tokens.copy()
    hidden = chosen if hide_all else chosen & (roll < 1 - RANDOM_SHARE - KEPT_SHARE)
    inputs[hidden] = MASK_TOKEN
    if not hide_all:
        swapped = chosen & (roll >= 1 - RANDOM_SHARE - KEPT_SHARE) & (roll < 1 - KEPT_SHARE)
        inputs[swapped] = BASE_TOKENS[rng.integers(len(BASE_TOKENS), size=int(swapped.sum()))]
    return inputs, np.where(chosen, bases, IGNORED)


class MaskedBaseModel(nn.Module):
    """A network read at every position: base logits (B, N, 4) from its per-position features and its head."""

    def __init__(self, backbone: SequenceClassifier) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.backbone.head(self.backbone.position_features(tokens, lengths))


Masked = tuple[list[np.ndarray], list[np.ndarray]]  # input token arrays and their targets


@dataclass
class Sequences:
    """Unlabelled token arrays, pretraining's examples; the "classes" a backbone predicts are the four bases."""

    tokens: list[np.ndarray]
    classes: ClassVar[list[str]] = BASES

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class MaskedBases:
    """The masked-base objective (`genomix.fitting.loop.Objective`): fresh crops, strands and masks every epoch;
    validation masked loss (nats) and accuracy on fixed windows and masks, the best epoch by that loss."""

    data: EpochData[Sequences]
    val: Sequences | None
    plan: Plan
    mask_fraction: float
    device: torch.device

    def __post_init__(self) -> None:
        self.size = len(self.data(0))
        self.current: Masked = ([], [])
        self.val_masked: Masked | None = None
        if self.val:
            rng = np.random.default_rng([self.plan.settings.seed, 2**31])  # one fixed mask per run
            crops = [random_crop(t, self.plan.max_len, rng) for t in self.val.tokens]
            self.val_masked = _unzip(mask_bases(t, self.mask_fraction, rng, hide_all=True) for t in crops)
            self.frequency_loss = _frequency_loss(np.concatenate(self.val_masked[1]))

    def steps_per_epoch(self) -> int:
        return num_batches(self.size, self.plan.settings.batch_size) // distributed.world_size()

    def epoch(self, epoch: int) -> tuple[list[np.ndarray], dict[str, float]]:
        rng = np.random.default_rng([self.plan.settings.seed, epoch])
        tokens = epoch_crops(self.data(epoch).tokens, self.plan.max_len, self.plan.rc_augment, rng)
        self.current = _unzip(mask_bases(t, self.mask_fraction, rng) for t in tokens)
        return epoch_batches(tokens, self.plan.settings.batch_size, rng)

    def _logits(self, model: nn.Module, masked: Masked, batch: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Base logits (positions, 4) and targets (positions,) of a batch, padding included (target IGNORED)."""
        tokens, lengths = padded([masked[0][i] for i in batch], self.plan.max_len, self.device)
        targets = np.full(tokens.shape, IGNORED, dtype=np.int64)
        for row, i in zip(targets, batch):
            row[: len(masked[1][i])] = masked[1][i]
        logits = model(tokens, lengths)
        return logits.float().flatten(0, 1), torch.from_numpy(targets).to(self.device).flatten()

    def loss(self, model: nn.Module, batch: np.ndarray) -> tuple[Tensor, int]:
        logits, targets = self._logits(model, self.current, batch)
        return nn.functional.cross_entropy(logits, targets, ignore_index=IGNORED), len(batch)

    def validate(self, network: nn.Module) -> Validation | None:
        if self.val_masked is None:
            return None
        mine = np.arange(len(self.val_masked[0]))[distributed.rank() :: distributed.world_size()]
        loss_sum = correct = count = 0.0
        with torch.no_grad(), autocast(self.device):
            for batch in np.array_split(mine, max(1, math.ceil(len(mine) / self.plan.settings.batch_size))):
                if not len(batch):
                    continue
                logits, targets = self._logits(network, self.val_masked, batch)
                kept = targets != IGNORED
                loss_sum += float(nn.functional.cross_entropy(logits[kept], targets[kept], reduction="sum"))
                correct += float((logits[kept].argmax(-1) == targets[kept]).sum())
                count += int(kept.sum())
        loss_sum, correct, count = distributed.total(loss_sum, correct, count)
        loss, accuracy = loss_sum / count, correct / count
        return Validation(
            score=(-loss,), metrics={"masked_loss": loss, "masked_accuracy": accuracy,
                                     "frequency_loss": self.frequency_loss, "masked_bases": int(count)},
            history={"val_masked_loss": loss, "val_masked_accuracy": accuracy},
            message=f"val masked-base loss {loss:.4f} nats (the bases' frequencies: {self.frequency_loss:.4f}), "
                    f"accuracy {accuracy:.4f}")


def _unzip(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Masked:
    inputs, targets = [], []
    for x, y in pairs:
        inputs.append(x)
        targets.append(y)
    return inputs, targets


def _frequency_loss(targets: np.ndarray) -> float:
    """The loss of guessing every masked base from the four bases' frequencies (their entropy, in nats): what a
    network must beat to have learnt more than composition."""
    counts = np.bincount(targets[targets != IGNORED], minlength=4).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def open_genomes(specs: Sequence[str], window: int, holdout_fraction: float) -> GenomeSet:
    """Unlabelled genomes as one GenomeSet (a `CLASS=` prefix is allowed, and ignored); each must have a contig
    with a window's worth of bases outside its held-out end."""
    genomes = []
    for spec in specs:
        genome = Genome(split_input(spec)[1])
        if not any(end - start >= window for _, start, end in genome.regions("train", holdout_fraction)):
            raise GenomixError(f"{genome.path}: no contig has {window:,} bases outside the held-out part; lower "
                               "--genome-window or --holdout-fraction")
        genomes.append((GENOMES_LABEL, genome))
    return GenomeSet(tuple(genomes), window, holdout_fraction)


@dataclass
class Pretraining:
    """Masked-base pretraining as a `genomix.fitting.skeleton.Task`: unlabelled sequences, a network read at every
    position (`MaskedBaseModel`), the `MaskedBases` objective, a backbone's card."""

    settings: PretrainSettings
    purpose: ClassVar[str] = "pretraining"

    def examples(self, records: list[Record], like: Sequences | None, what: str) -> Sequences:
        return Sequences([encode(r.seq) for r in records])

    def split(self, train: Sequences, fraction: float, seed: int) -> tuple[Sequences, Sequences]:
        """A random share of the sequences for validation."""
        order = np.random.default_rng(seed).permutation(len(train))
        cut = round(fraction * len(train))
        if not 0 < cut < len(train):
            raise GenomixError("too few records for a validation split: give --val FILE or more data")
        return Sequences([train.tokens[i] for i in order[cut:]]), Sequences([train.tokens[i] for i in order[:cut]])

    def describe(self, train: Sequences) -> str:
        return f" per epoch, {100 * self.settings.mask_fraction:g}% of bases masked"

    def initialise(self, network: Model, train: Sequences) -> None:
        """A backbone starts from scratch."""

    def objective(self, network: Model, data: EpochData[Sequences], val: Sequences | None, plan: Plan,
                  device: torch.device) -> tuple[MaskedBaseModel, MaskedBases]:
        return MaskedBaseModel(network), MaskedBases(data, val, plan, self.settings.mask_fraction, device)

    def card(self, network: Model, train: Sequences, val: Sequences | None, plan: Plan,
             state: TrainState) -> tuple[ModelCard, dict[str, Any]]:
        card = ModelCard(network.name, network.config, train.classes, both_strands=plan.rc_augment,
                         validation=state.best_metrics, kind="backbone")
        return card, {"class_counts": {}}


def fit_backbone(data: Iterable[Record] | GenomeSet, settings: PretrainSettings | None = None,
                 val_records: Iterable[Record] | None = None, checkpoint: str | Path | None = None,
                 resume: bool = False) -> TrainedModel:
    """Pretrain a backbone on records, or on windows drawn afresh every epoch from genomes."""
    return fit_task(Pretraining(settings or PretrainSettings()), data, val_records, checkpoint, resume)


def pretrain(source: RecordSource, output: str | Path, settings: PretrainSettings | None = None,
             resume: bool = False) -> TrainedModel:
    """`genomix pretrain`: read the records of `source` (or draw windows of its genomes), pretrain, write the
    backbone file."""
    settings = settings or PretrainSettings()
    return fit_to_file(source, output, settings, resume, "pretrain on", fit_backbone,
                       lambda: open_genomes(source.genomes, settings.genome_window, settings.holdout_fraction))
