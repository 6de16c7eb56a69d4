"""The model file: weights in safetensors plus a JSON header (safetensors metadata key "genomix").

The header is a `ModelCard`: the model name and config, the class names in logit order, the positive class,
which strands scoring averages, the temperature, what the model was trained on and its validation metrics.
A card's `kind` says whether the file is a classifier or a backbone (`genomix pretrain`: masked-base
modelling, whose "classes" are the four bases its head predicts at every position; `genomix train --init`
fine-tunes it).
Loading reads tensors and JSON only (nothing is ever unpickled), checks the header's types before using
any of it, and upgrades files written by older versions (`upgrade_header`, and each model's own
`upgrade`). Writing is atomic.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from genomix import __version__
from genomix.errors import GenomixError
from genomix.io.files import atomic_path
from genomix.io.reading import check_name
from genomix.models import rebuild
from genomix.models.base import Model
from genomix.sequences.tokens import ALPHABET

FORMAT = "genomix-model"
FORMAT_VERSION = 3  # the newest format this genomix reads (3: backbones, and models fine-tuned from one)
KINDS = ("classifier", "backbone")
TOKENIZER = f"dna-v1: PAD=0, {', '.join(f'{b}={i}' for i, b in enumerate(ALPHABET, 1))}"
METADATA_KEY = "genomix"


@dataclass
class TrainingRecord:
    """What a model was trained on and how (the `training` block of the header)."""

    records: int
    class_counts: dict[str, int]
    length_range: list[int]
    settings: dict[str, Any]  # the settings as the run used them (`genomix.fitting.skeleton.Plan.recorded`)
    epochs_run: int
    seconds: float
    device: str
    inputs: list[str] = field(default_factory=list)
    strand_signal: float | None = None
    composition_weight: float | None = None
    processes: int = 1
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    initialised_from: dict[str, Any] | None = None  # `train --init`: the backbone's file name and SHA-256

    @property
    def genome_window(self) -> int | None:
        """Bases per window where the model was trained on `--genome` windows."""
        return self.settings.get("genome_window", self.settings.get("window"))  # "window" before it was renamed

    @property
    def holdout_fraction(self) -> float | None:
        return self.settings.get("holdout_fraction") if self.genome_window else None


@dataclass
class ModelCard:
    """Everything a model file says beside its weights."""

    model: str
    config: dict[str, Any]
    classes: list[str]
    positive_class: str | None = None  # binary models: the class that thresholds, AUROC and scan call
    both_strands: bool = False  # whether scoring averages a sequence and its reverse complement
    temperature: float | None = None  # divides log-probabilities; fitted on validation (None: uncalibrated)
    training: TrainingRecord | None = None
    validation: dict[str, Any] | None = None
    genomix_version: str = __version__
    kind: str = "classifier"  # or "backbone" (see the module docstring)
    novelty: dict[str, Any] | None = None  # out-of-distribution statistics and thresholds (`applying.novelty`)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GenomixError(f"unknown model kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.positive_class is None and len(self.classes) == 2:
            self.positive_class = self.classes[1]
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise GenomixError(f"positive class '{self.positive_class}' is not one of {', '.join(self.classes)}")


@dataclass
class TrainedModel:
    """A network with its card: what is needed to apply it."""

    network: Model
    card: ModelCard

    @classmethod
    def of(cls, network: Model, classes: list[str], **card: Any) -> TrainedModel:
        return cls(network, ModelCard(network.name, network.config, list(classes), **card))

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    @property
    def max_len(self) -> int:
        return self.network.max_len

    @property
    def temperature(self) -> float:
        return self.card.temperature or 1.0

    @property
    def positive_class(self) -> str | None:
        return self.card.positive_class

    @property
    def positive_index(self) -> int | None:
        return None if self.positive_class is None else self.classes.index(self.positive_class)

    @property
    def both_strands(self) -> bool:
        return self.card.both_strands

    def scores_both_strands(self, rc: bool | None) -> bool:
        """Whether to average both strands: `rc` when the user said, else as the card says."""
        return self.both_strands if rc is None else rc


def save_model(model: TrainedModel, path: str | Path) -> None:
    """Write the model file atomically (a temporary file beside it, then a rename)."""
    card = dataclasses.replace(model.card, model=model.network.name, config=model.network.config,
                               genomix_version=__version__)
    header = {"format": FORMAT, "format_version": 2, "tokenizer": TOKENIZER, **dataclasses.asdict(card)}
    if card.kind == "backbone" or (card.training and card.training.initialised_from):
        header["format_version"] = 3  # what genomix from before backbones cannot read, it must refuse
    elif header["training"] is not None:
        del header["training"]["initialised_from"]  # a format-2 file as genomix from before backbones wrote it
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(header)})


def read_header(path: str | Path) -> dict[str, Any]:
    """The raw JSON header of a model file, checked to be a genomix model this version can read."""
    path = Path(path)
    if not path.is_file():
        raise GenomixError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as err:
        raise GenomixError(f"{path}: not a genomix model file ({err})") from None
    if raw is None:
        raise GenomixError(f"{path}: not a genomix model file (a safetensors file without genomix metadata)")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError:
        raise GenomixError(f"{path}: corrupt model file (unreadable metadata)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise GenomixError(f"{path}: not a genomix model file")
    version = header.get("format_version", 0)
    if not isinstance(version, int):
        raise GenomixError(f"{path}: corrupt model file (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise GenomixError(f"{path}: model file format {version} is newer than this genomix")
    if header.get("tokenizer") != TOKENIZER:
        raise GenomixError(f"{path}: model uses tokenizer {header.get('tokenizer')!r}, unknown to this genomix")
    return header


def upgrade_header(header: dict[str, Any]) -> dict[str, Any]:
    """A header of any format version in today's layout (models upgrade their own config on rebuild)."""
    header = dict(header)
    if header.get("format_version", 1) < 2:  # format 1 inferred the strands from a training setting
        training = header.get("training")
        settings = training.get("settings") if isinstance(training, dict) else None
        header["both_strands"] = isinstance(settings, dict) and bool(settings.get("rc_augment"))
    return header


class _Validation(TypedDict, total=False):
    """What `describe` reads of the free-form validation block (a classifier's, or a backbone's)."""

    accuracy: float | None
    mcc: float | None
    auroc: float | None
    masked_loss: float
    frequency_loss: float
    masked_accuracy: float


class _Novelty(TypedDict, total=False):
    """What `describe` reads of the novelty block (`genomix.applying.novelty.Novelty.from_card` reads the rest)."""

    method: str
    known_recall: float
    thresholds: dict[str, float]
    length: float | None


class _Backbone(TypedDict):
    """A fine-tuned model's `training.initialised_from`."""

    file: str
    sha256: str


_BLOCKS: dict[str, Any] = {"validation": _Validation | None, "novelty": _Novelty | None,
                           "training.initialised_from": _Backbone | None}  # free-form blocks: what of them is read


def _type_error(value: Any, kind: Any, name: str) -> str | None:
    """Why a JSON value is not of a type (str, int, float, bool, Any, X | None, list[X], dict[str, X], a dataclass or
    a TypedDict, field by field), or None when it is; `name` says where it is, for the message."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, UnionType):
        reasons = {k: _type_error(value, k, name) for k in args}
        return None if None in reasons.values() else next(r for k, r in reasons.items() if k is not type(None))
    if kind is Any or kind is type(None) and value is None:
        return None
    if dataclasses.is_dataclass(kind) or is_typeddict(kind):
        return _fields_error(value, kind, name)
    if origin in (list, dict) and isinstance(value, origin):
        items = enumerate(value) if origin is list else value.items()
        return next(filter(None, (_type_error(v, args[-1], f"{name}[{k!r}]") for k, v in items)), None)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):  # JSON writes 1.0 as 1
        return None
    if isinstance(kind, type) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return None
    return f"{name} is {_json_type(value)}"


def _fields_error(value: Any, kind: Any, name: str) -> str | None:
    """`_type_error` of a dataclass or TypedDict: an object with its required fields, and no unknown one for a
    dataclass; a free-form block takes its type from `_BLOCKS`."""
    if not isinstance(value, dict):
        return f"{name} is {_json_type(value)}"
    hints = get_type_hints(kind)
    if dataclasses.is_dataclass(kind):
        required = {f.name for f in dataclasses.fields(kind)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        unknown = sorted(set(value) - set(hints))
        if unknown:
            return f"{name} has an unknown field {unknown[0]!r}"
    else:
        required = kind.__required_keys__
    missing = sorted(set(required) - set(value))
    if missing:
        return f"{name} has no {missing[0]}"
    fields = ((v, _BLOCKS.get(f"{name}.{k}", hints[k]), f"{name}.{k}") for k, v in value.items() if k in hints)
    return next(filter(None, (_type_error(*field) for field in fields)), None)


def _json_type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def read_card(path: str | Path) -> ModelCard:
    """The model card of a file, its fields (and the parts of the free-form blocks that are read) checked for type
    before any is used."""
    header = upgrade_header(read_header(path))
    hints = get_type_hints(ModelCard)
    fields = {k: header[k] for k in hints if k in header}
    for key in ("model", "config", "classes"):
        if key not in fields:
            raise GenomixError(f"{path}: corrupt model file (no {key})")
    for key, value in fields.items():
        reason = _type_error(value, _BLOCKS.get(key, hints[key]), key)
        if reason is not None:
            raise GenomixError(f"{path}: corrupt model file ({reason})")
    training, temperature = fields.get("training"), fields.get("temperature")
    problems = {"classes must be two or more names": len(fields["classes"]) < 2,
                "training.length_range must be [shortest, longest]":
                    training is not None and len(training["length_range"]) != 2,
                f"temperature {temperature} is not a positive number":  # scores are divided by it
                    temperature is not None and not 0 < temperature < math.inf}
    problem = next((p for p, found in problems.items() if found), None)
    if problem is not None:
        raise GenomixError(f"{path}: corrupt model file ({problem})")
    for name in fields["classes"]:
        check_name(name, "class", f"{path}: corrupt model file")
    if training is not None:
        fields["training"] = TrainingRecord(**training)
    try:
        return ModelCard(**fields)
    except GenomixError as err:  # an unknown kind, a positive class that is not a class
        raise GenomixError(f"{path}: corrupt model file ({err})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu", kinds: tuple[str, ...] = ("classifier",)
               ) -> TrainedModel:
    """Rebuild the network from the card's config and load its weights, in evaluation mode. A file of
    another kind than `kinds` (a backbone given to predict, say) is a user error."""
    card = read_card(path)
    if card.kind not in kinds:
        raise GenomixError(f"{path}: a {card.kind}, not a {' or '.join(kinds)}" + (
            " (a backbone predicts masked bases, not classes: fine-tune it with `genomix train --init`)"
            if card.kind == "backbone" else ""))
    try:
        network = rebuild(card.model, len(card.classes), card.config)
        state = _checked_tensors(path, network)
        network.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise GenomixError(f"{path}: corrupt model file ({str(err).splitlines()[0]})") from None
    card = dataclasses.replace(card, model=network.name, config=network.config)
    return TrainedModel(network.to(device).eval(), card)


def _checked_tensors(path: str | Path, network: Model) -> dict[str, torch.Tensor]:
    """The file's tensors under today's names, each checked against the rebuilt network for shape (before it is
    read, so a hostile header cannot ask for any amount of memory), dtype and finite values."""
    expected = network.state_dict()
    with safe_open(str(path), framework="pt", device="cpu") as f:
        names = type(network).upgrade_state(dict.fromkeys(f.keys()))  # today's name → None, in file order
        stored = dict(zip(names, f.keys()))  # noqa: SIM118 - safe_open has no iterator
        missing = sorted(set(expected) - set(stored))
        if missing or len(stored) != len(expected):
            extra = sorted(set(stored) - set(expected))
            raise GenomixError(f"{path}: corrupt model file (tensors missing: {missing[:3]}, unexpected: {extra[:3]})")
        state = {}
        for name, key in stored.items():
            shape = tuple(f.get_slice(key).get_shape())
            if shape != tuple(expected[name].shape):
                raise GenomixError(f"{path}: corrupt model file (tensor {key} has shape {list(shape)}, the config "
                                   f"needs {list(expected[name].shape)})")
            tensor = f.get_tensor(key)
            if tensor.dtype != expected[name].dtype:
                raise GenomixError(f"{path}: corrupt model file (tensor {key} is {tensor.dtype}, not "
                                   f"{expected[name].dtype})")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise GenomixError(f"{path}: corrupt model file (tensor {key} holds NaN or infinite values)")
            state[name] = tensor
    return state


def describe(card: ModelCard) -> str:
    """A few readable lines about a model file (`genomix info --json` has everything)."""
    backbone = card.kind == "backbone"
    lines = [
        f"model      {card.model} " + " ".join(f"{k}={v}" for k, v in card.config.items()),
        "kind       backbone: masked-base pretraining, predicts the base at masked positions; fine-tune it with "
        "`genomix train --init`" if backbone else
        f"classes    {', '.join(card.classes)}" + (f" (positive: {card.positive_class})" * bool(card.positive_class)),
        f"genomix    {card.genomix_version}, tokenizer {TOKENIZER}",
    ]
    training = card.training
    if training is not None:
        lines += _describe_training(training)
    signal = training.strand_signal if training is not None else None
    strands = "both (trained on reverse complements too, scored on both)" if card.both_strands else "as given"
    lines.append(f"strands    {strands}" + (f"; strand signal {signal:.3f} (0.5: none)" if signal is not None else ""))
    if card.validation and backbone and {"masked_loss", "frequency_loss", "masked_accuracy"} <= set(card.validation):
        v = card.validation
        lines.append(f"validation masked-base loss {v['masked_loss']:.4f} nats (uniform guess {math.log(4):.4f}, "
                     f"the bases' frequencies {v['frequency_loss']:.4f}), accuracy {v['masked_accuracy']:.4f}")
    elif card.validation and not backbone:
        lines.append("validation " + ", ".join(f"{k} {card.validation[k]:.4f}" for k in ("accuracy", "mcc", "auroc")
                                               if card.validation.get(k) is not None))
    if card.novelty is not None:
        lines.append(_describe_novelty(card.novelty))
    return "\n".join(lines)


def _describe_novelty(block: dict[str, Any]) -> str:
    method = block.get("method")
    threshold = (block.get("thresholds") or {}).get(method, math.nan)
    length = f" of about {block['length']:,.0f} bases" if block.get("length") is not None else ""
    return (f"novelty    {method} score, threshold {threshold:.4g}: `predict --unknown` calls a record past it "
            f"unknown (keeps {block.get('known_recall', math.nan):.1%} of validation records{length} known)")


def _describe_training(training: TrainingRecord) -> list[str]:
    counts = ", ".join(f"{c}: {n}" for c, n in training.class_counts.items())  # none for a backbone
    data = (f"{training.records} fresh windows of {training.genome_window} bp per epoch ({counts}{', ' * bool(counts)}"
            f"held-out fraction {training.holdout_fraction})" if training.genome_window else
            f"{training.records} sequences{f' ({counts})' * bool(counts)}, lengths {training.length_range[0]}"
            f"-{training.length_range[1]}")
    lines = [
        f"trained on {data}, from {', '.join(training.inputs) or 'Python'}",
        f"training   {training.epochs_run} epochs (best {training.best_epoch}), "
        f"{training.seconds} s on {training.device}",
    ]
    if training.initialised_from:
        start = training.initialised_from
        lines.append(f"initialised from the backbone {start['file']} (SHA-256 {start['sha256'][:16]}…)"
                     + (", backbone frozen" if start.get("frozen") else ""))
    if training.composition_weight is not None:
        lines.append(f"k-mer term weight {training.composition_weight:.2f} in the blend with the network "
                     "(chosen on validation)")
    return lines
