"""Training a classifier: records → tokens → crops/RC augmentation → bucketed batches → AdamW.

The records are a fixed labelled set, or windows drawn afresh every epoch from labelled genomes.

Warm-up then cosine learning-rate decay, gradient clipping, class weights for imbalanced sets, bf16
autocast on CUDA, early stopping on validation MCC (ties broken by validation loss) with the best epoch's
weights kept, and a checkpoint after every epoch so that `--resume` continues an interrupted run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sklearn.model_selection import train_test_split

from genomix import distributed
from genomix.batching import bucket_batches, num_batches, pad, padding_fraction, random_crop
from genomix.calibration import apply_temperature, expected_calibration_error, fit_temperature
from genomix.console import autocast, console, resolve_device
from genomix.errors import GenomixError
from genomix.files import atomic_path, check_writable
from genomix.genomes import GenomeSet, read_regions
from genomix.metrics import classification_metrics, report_table
from genomix.modelfile import TrainedModel, save_model
from genomix.models import MODELS, create_model, model_options
from genomix.models.paramixer import PROTOCOLS
from genomix.predicting import log_probs
from genomix.reading import LabelTable, Record, read_inputs
from genomix.strand import is_stranded, strand_signal
from genomix.tokens import encode, reverse_complement

DEFAULT_MAX_LEN_CAP = 16384  # default --max-len: the longest training sequence, at most this
WARMUP_FRACTION = 0.05
COMPOSITION_WEIGHTS = np.linspace(0, 1, 21)  # blend weights a of the k-mer term tried on validation
CLIP_NORM = 1.0


@dataclass
class TrainSettings:
    """Every training option, validated on creation so that a mistake fails before any work is done."""

    model: str = "paramixer"
    protocol: str | None = None  # paramixer only; None means the model's default (cdil)
    max_len: int | None = None  # None: the longest training sequence, at most DEFAULT_MAX_LEN_CAP
    dim: int = 64
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.2
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    val_fraction: float = 0.1
    patience: int = 4
    rc_augment: bool | None = None  # None: on when the training sequences have no strand (genomix.strand)
    composition: bool = True  # neural models: blend in a k-mer regression, weighted on validation
    window: int | None = None  # genomes only: bases per window (also the model's max_len)
    holdout_fraction: float = 0.2  # genomes only: end of every contig kept for validation and test
    windows_per_epoch: int = 2000  # genomes only: fresh random windows per epoch, equal for every class
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise GenomixError(f"--model {self.model}: choose from {', '.join(sorted(MODELS))}")
        if self.protocol is not None:
            if self.model != "paramixer":
                raise GenomixError(f"--protocol applies to paramixer only, not to {self.model}")
            if self.protocol not in PROTOCOLS:
                raise GenomixError(f"--protocol {self.protocol}: choose from {', '.join(PROTOCOLS)}")
        for name in ("dim", "hidden", "layers", "epochs", "batch_size", "patience", "windows_per_epoch"):
            if getattr(self, name) < 1:
                raise GenomixError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_len is not None and self.max_len < 8:
            raise GenomixError("--max-len must be at least 8")
        if self.window is not None and self.window < 8:
            raise GenomixError("--window must be at least 8")
        if not 0 < self.holdout_fraction < 1:
            raise GenomixError("--holdout-fraction must be in (0, 1)")
        if not 0 <= self.dropout < 1:
            raise GenomixError("--dropout must be in [0, 1)")
        if not 0 <= self.val_fraction < 1:
            raise GenomixError("--val-fraction must be in [0, 1)")
        if self.lr <= 0:
            raise GenomixError("--lr must be positive")

    def model_config(self, max_len: int) -> dict:
        """The architecture options that the chosen model takes (e.g. kmer has no width or depth)."""
        options = dict(max_len=max_len, dim=self.dim, hidden=self.hidden, layers=self.layers, dropout=self.dropout)
        options |= {"protocol": self.protocol} if self.protocol else {}
        options |= {"composition": self.composition}
        accepted = model_options(self.model)
        return {k: v for k, v in options.items() if k in accepted}


def _labels(records: Sequence[Record], classes: list[str] | None, what: str) -> tuple[np.ndarray, list[str]]:
    """Class indices of the records (and the sorted class names, when not given)."""
    missing = next((r for r in records if r.label is None), None)
    if missing is not None:
        raise GenomixError(f"{what} record '{missing.id}' has no label (give CLASS=file, --labels, or label= in "
                           "its header)")
    if classes is None:
        classes = sorted({r.label for r in records})
        if len(classes) < 2:
            raise GenomixError(f"training needs at least two classes; every record is labelled '{classes[0]}'")
    index = {c: i for i, c in enumerate(classes)}
    unknown = next((r for r in records if r.label not in index), None)
    if unknown is not None:
        raise GenomixError(f"{what} record '{unknown.id}' has label '{unknown.label}', not a training class "
                           f"({', '.join(classes)})")
    return np.array([index[r.label] for r in records]), classes


def _split(records: list[Record], y: np.ndarray, fraction: float, seed: int):
    """Stratified split into training and validation records."""
    counts = np.bincount(y)
    if counts.min() < 2 or round(fraction * len(y)) < len(counts):
        raise GenomixError("too few records for a stratified validation split: give --val FILE or more data")
    train_idx, val_idx = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed)
    return [records[i] for i in train_idx], y[train_idx], [records[i] for i in val_idx], y[val_idx]


def _lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first WARMUP_FRACTION of steps, then cosine decay to zero."""
    warmup = max(1, int(WARMUP_FRACTION * total))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:,.1f} seq/s"),
        TimeRemainingColumn(), console=console, transient=True,
    )


def _scores(network, tokens, batch_size, device, rc) -> np.ndarray:
    """Log-probabilities of every sequence; under torchrun each rank scores its share and all gather."""
    mine = log_probs(network, tokens[distributed.rank() :: distributed.world_size()], batch_size, device, rc)
    return distributed.gather_rows(mine, len(tokens))


def _validate(network, tokens, y, batch_size, device, num_classes, rc) -> dict:
    """Validation metrics, scored as the model will be applied (both strands when trained on both)."""
    network.eval()
    scores = _scores(network, tokens, batch_size, device, rc)
    network.train()
    return _metrics(scores, y, num_classes)


def _metrics(scores: np.ndarray, y: np.ndarray, num_classes: int) -> dict:
    """Classification metrics and the mean negative log-likelihood of log-probabilities `scores`."""
    result = classification_metrics(y, np.exp(scores), num_classes)
    result["loss"] = float(-scores[np.arange(len(y)), y].mean())
    return result


def fit(
    data: Sequence[Record] | GenomeSet,
    settings: TrainSettings | None = None,
    val_records: Sequence[Record] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Train a model on labelled records, or on windows drawn afresh every epoch from labelled genomes.

    Validation is `val_records`, else the genomes' validation regions, else a stratified split of the records.
    """
    settings = settings or TrainSettings()
    started = time.perf_counter()
    if isinstance(data, GenomeSet):
        per_class = max(1, settings.windows_per_epoch // len(data.classes))
        records = data.sample(per_class, np.random.default_rng([settings.seed, 0]))
        val_records = val_records if val_records is not None else data.tiles("val", max(8, per_class // 4))
    else:
        records = list(data)
    if not records:
        raise GenomixError("no training records")
    y, classes = _labels(records, None, "training")
    if val_records is not None:
        val_records = list(val_records)
        val_y, _ = _labels(val_records, classes, "validation")
    elif settings.val_fraction > 0:
        records, y, val_records, val_y = _split(records, y, settings.val_fraction, settings.seed)
    tokens = [encode(r.seq) for r in records]
    val = ([encode(r.seq) for r in val_records], val_y) if val_records else None
    longest = max(len(t) for t in tokens)
    max_len = settings.max_len or min(longest, DEFAULT_MAX_LEN_CAP)
    strand = None
    if settings.rc_augment is None:
        strand = strand_signal(tokens, settings.seed)
        settings = replace(settings, rc_augment=not is_stranded(strand))
        verdict = "too few sequences to tell" if strand is None else f"{strand:.3f} (0.5: none)"
        console.log(f"strand signal of the training sequences: {verdict}; reverse-complement augmentation and "
                    f"two-strand scoring {'on' if settings.rc_augment else 'off'}")

    def epoch_data(epoch: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The fixed set, or (genomes) the first epoch's windows then a fresh draw for every later epoch."""
        if epoch == 0 or not isinstance(data, GenomeSet):
            return tokens, y
        drawn = data.sample(per_class, np.random.default_rng([settings.seed, epoch]))
        return [encode(r.seq) for r in drawn], _labels(drawn, classes, "training")[0]
    counts = np.bincount(y, minlength=len(classes))

    device = distributed.start(resolve_device(settings.device))
    torch.manual_seed(settings.seed)
    network = create_model(settings.model, len(classes), **settings.model_config(max_len)).to(device)
    console.log(f"training {settings.model} on {len(tokens)} sequences "
                f"({', '.join(f'{c}: {n}' for c, n in zip(classes, counts))}), "
                f"{len(val[0]) if val else 0} for validation; {sum(p.numel() for p in network.parameters()):,} "
                f"parameters; max_len {max_len} (longest sequence {longest}); device {device}")
    if hasattr(network, "fit_direct"):  # closed-form models (kmer) skip the gradient loop
        _fit_direct(network, tokens, y, val, settings, max_len)
        state = {"epoch": 0, "best_state": network.state_dict(), "history": []}
    else:
        state = _train_epochs(network, epoch_data, val, settings, max_len, device, checkpoint, resume, classes)

    network.load_state_dict(state["best_state"])
    network.eval()
    validation, temperature, weight = None, None, None
    if getattr(network, "composition", None) is not None:
        if val:
            weight = _add_composition(network, tokens, y, val, settings, max_len, device)
        else:
            console.log("no validation data to weigh the k-mer composition term: it is left out")
    if val:
        scores = _scores(network, val[0], settings.batch_size, device, settings.rc_augment)
        validation = _metrics(scores, val[1], len(classes))  # the final model's: k-mer term and all
        if weight is not None:
            console.log(f"k-mer composition term: weight {weight:.2f} (validation likelihood); validation MCC "
                        f"{state['best_val']['mcc']:.4f} without it, {validation['mcc']:.4f} with it")
        temperature = fit_temperature(scores, val[1])
        validation |= {"ece_uncalibrated": expected_calibration_error(val[1], np.exp(scores)),
                       "ece": expected_calibration_error(val[1], apply_temperature(scores, temperature))}
        console.log(f"temperature {temperature:.3f} fitted on validation: expected calibration error "
                    f"{validation['ece_uncalibrated']:.4f} → {validation['ece']:.4f}")
    metadata = {
        "temperature": temperature,
        "training": {
            "records": len(tokens),
            "class_counts": dict(zip(classes, counts.tolist())),
            "length_range": [min(len(t) for t in tokens), longest],
            "settings": asdict(settings),
            "strand_signal": strand,
            "composition_weight": weight,
            "device": str(device),
            "processes": distributed.world_size(),
            "epochs_run": state["epoch"],
            "best_epoch": state.get("best_epoch"),
            "seconds": round(time.perf_counter() - started, 1),
            "history": state["history"],
        },
        "validation": validation,
    }
    return TrainedModel(network.cpu(), classes, metadata)


def _fit_direct(network, tokens, y, val, settings: TrainSettings, max_len: int) -> None:
    """Closed-form fit (the k-mer regression) on one crop of every sequence, and its reverse complement too
    where the model will score both strands."""
    rng = np.random.default_rng(settings.seed)
    crops, labels = [random_crop(t, max_len, rng) for t in tokens], y
    if settings.rc_augment:
        crops, labels = crops + [reverse_complement(t) for t in crops], np.concatenate([y, y])
    chosen = network.fit_direct((crops, labels), val, settings.seed)
    console.log(f"k-mer regression: k up to {chosen['k']}, C {chosen['C']:g}"
                + (" (chosen on validation)" if val else ""))


def _add_composition(network, tokens, y, val, settings: TrainSettings, max_len: int, device) -> float:
    """Fit the trained network's k-mer term, and set and return the blend weight a (`SequenceClassifier`)
    with the highest validation likelihood."""
    _fit_direct(network.composition, tokens, y, val, settings, max_len)
    neural = _scores(network, val[0], settings.batch_size, device, settings.rc_augment)  # a = 0 so far
    kmer = _scores(network.composition, val[0], settings.batch_size, device, settings.rc_augment)
    rows = np.arange(len(val[1]))

    def nll(a: float) -> float:
        blend = torch.from_numpy((1 - a) * neural + a * kmer).log_softmax(1).numpy()
        return float(-blend[rows, val[1]].mean())

    weight = float(min(COMPOSITION_WEIGHTS, key=nll))
    network.composition_weight.fill_(weight)
    return weight


def _train_epochs(
    network, epoch_data: Callable[[int], tuple[list[np.ndarray], np.ndarray]], val, settings, max_len, device,
    checkpoint, resume, classes,
) -> dict:
    """The gradient loop: a fresh crop (and strand) per sequence each epoch; early stopping on validation."""
    tokens, y = epoch_data(0)
    model = network
    if distributed.world_size() > 1:
        device_ids = [device] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    decay = [p for p in network.parameters() if p.dim() >= 2]
    no_decay = [p for p in network.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    total_steps = num_batches(len(tokens), settings.batch_size) // distributed.world_size() * settings.epochs
    if total_steps == 0:
        raise GenomixError(f"too few training batches for {distributed.world_size()} processes")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps))
    weights = torch.tensor(len(y) / (len(classes) * np.bincount(y, minlength=len(classes))), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(device))
    state = {"epoch": 0, "best_score": None, "best_state": None, "bad_epochs": 0, "history": []}
    if resume:
        state = _load_checkpoint(checkpoint, network, optimizer, scheduler, settings, classes)

    network.train()
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = state["epoch"]
        tokens, y = epoch_data(epoch)
        rng = np.random.default_rng([settings.seed, epoch])
        torch.manual_seed((settings.seed * 100_003 + epoch) * 1009 + distributed.rank())  # own dropout per rank
        epoch_tokens = [random_crop(t, max_len, rng) for t in tokens]
        if settings.rc_augment:
            flips = rng.random(len(epoch_tokens)) < 0.5
            epoch_tokens = [reverse_complement(t) if f else t for t, f in zip(epoch_tokens, flips)]
        lengths = np.array([len(t) for t in epoch_tokens])
        batches = distributed.share(bucket_batches(lengths, settings.batch_size, rng))
        loss_sum, seen, tick = 0.0, 0, time.perf_counter()
        with _progress() as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{settings.epochs}", total=len(batches), loss=0.0, speed=0.0)
            for batch in batches:
                batch_tokens, batch_lengths = pad([epoch_tokens[i] for i in batch])
                target = torch.from_numpy(y[batch]).to(device)
                with autocast(device):
                    logits = model(batch_tokens.to(device), batch_lengths.to(device))
                loss = loss_fn(logits.float(), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), CLIP_NORM)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(batch)
                seen += len(batch)
                progress.update(task, advance=1, loss=loss_sum / seen, speed=seen / (time.perf_counter() - tick))
        loss_sum, seen = distributed.total(loss_sum, seen)
        entry = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "seq_per_s": seen / (time.perf_counter() - tick),
                 "padding": padding_fraction(lengths, batches)}
        message = f"epoch {epoch + 1}: train loss {entry['train_loss']:.4f}"
        result, score, improved = None, None, True
        if val:
            result = _validate(network, *val, settings.batch_size, device, len(classes), settings.rc_augment)
            entry |= {"val_loss": result["loss"], "val_accuracy": result["accuracy"], "val_mcc": result["mcc"]}
            score = (round(result["mcc"], 4), -result["loss"])
            improved = state["best_score"] is None or score > tuple(state["best_score"])
            message += f", val loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f}, MCC {result['mcc']:.4f}"
        if improved:
            state |= {"best_score": score, "best_state": copy.deepcopy(network.state_dict()), "bad_epochs": 0,
                      "best_epoch": epoch + 1, "best_val": result}
            message += " (best so far)" if val else ""
        else:
            state["bad_epochs"] += 1
        console.log(f"{message}; {entry['seq_per_s']:,.1f} seq/s, padding {100 * entry['padding']:.1f}%")
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        if checkpoint is not None and distributed.is_main():
            _save_checkpoint(checkpoint, network, optimizer, scheduler, settings, classes, state)
    if state["bad_epochs"] >= settings.patience:
        console.log(f"early stop: no validation improvement for {settings.patience} epochs")
    return state


def _save_checkpoint(path, network, optimizer, scheduler, settings, classes, state) -> None:
    """Everything needed to continue after the last finished epoch (tensors and plain data only)."""
    payload = {"network": network.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "settings": asdict(settings), "classes": classes, "state": state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path, network, optimizer, scheduler, settings, classes) -> dict:
    if path is None or not Path(path).is_file():
        raise GenomixError(f"--resume: no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is the user's file, not our bug
        raise GenomixError(f"{path}: unreadable checkpoint ({err})") from None
    if payload["settings"] != asdict(settings) or payload["classes"] != classes:
        raise GenomixError(f"{path}: checkpoint was made with other settings or classes; resume with the same ones")
    network.load_state_dict(payload["network"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    console.log(f"resuming after epoch {payload['state']['epoch']} from {path}")
    return payload["state"]


def checkpoint_path(output: str | Path) -> Path:
    """Where training keeps its per-epoch checkpoint for an output model path."""
    return Path(f"{output}.ckpt")


def train(
    inputs: Sequence[str],
    output: str | Path,
    settings: TrainSettings | None = None,
    labels: str | None = None,
    val_inputs: Sequence[str] | None = None,
    resume: bool = False,
    genomes: Sequence[str] = (),
    bed: Sequence[str] = (),
    reference: str | None = None,
) -> TrainedModel:
    """`genomix train`: read labelled inputs, fit, write the model file, and show the validation report.

    The inputs are sequence files and BED regions of a reference, or `CLASS=genome.fa` genomes to draw
    windows of `settings.window` bases from.
    """
    settings = settings or TrainSettings()
    check_writable(output)
    checkpoint = checkpoint_path(output)
    if resume and not checkpoint.is_file():
        raise GenomixError(f"--resume: no checkpoint at {checkpoint}")
    if genomes and (inputs or bed):
        raise GenomixError("--genome trains on windows of whole genomes: give it without sequence files or --bed")
    if not (genomes or inputs or bed):
        raise GenomixError("nothing to train on: give sequence files, --bed regions or --genome CLASS=genome.fa")
    if genomes and settings.window is None:
        raise GenomixError("--genome needs --window, the length of the windows to train on")
    if settings.window is not None and not genomes:
        raise GenomixError("--window applies to --genome training; use --max-len to crop sequence files")
    table = LabelTable(labels) if labels else None
    val_records = list(read_inputs(val_inputs, table)) if val_inputs else None
    if genomes:
        data = GenomeSet.open(genomes, settings.window, settings.holdout_fraction)
        settings = replace(settings, max_len=settings.max_len or settings.window)
    else:
        data = list(chain(read_inputs(inputs, table), read_regions(bed, reference)))
    if table is not None:
        table.check_all_matched()
    model = fit(data, settings, val_records, checkpoint, resume)
    model.metadata["training"]["inputs"] = [str(i) for i in chain(inputs, bed, genomes)]
    if distributed.is_main():
        save_model(model, output)
        checkpoint.unlink(missing_ok=True)
        console.log(f"wrote {output}")
    distributed.stop()
    if model.metadata["validation"]:
        console.print(report_table(model.metadata["validation"], model.classes, "validation"))
    return model
