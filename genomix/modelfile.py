"""The model file: weights in safetensors plus a JSON block that describes everything else.

The JSON (safetensors metadata key "genomix") holds the model name and config, the class names in order,
the tokenizer, the genomix version, a summary of the training data and settings, and validation metrics.
Loading reads tensors and JSON only: nothing is ever unpickled. Writing is atomic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from genomix import __version__
from genomix.errors import GenomixError
from genomix.files import atomic_path
from genomix.models import MODELS, create_model, model_options
from genomix.tokens import ALPHABET

FORMAT = "genomix-model"
FORMAT_VERSION = 1
TOKENIZER = f"dna-v1: PAD=0, {', '.join(f'{b}={i}' for i, b in enumerate(ALPHABET, 1))}"
METADATA_KEY = "genomix"


@dataclass
class TrainedModel:
    """A network with what is needed to apply it: its class names (in logit order) and its metadata."""

    network: nn.Module
    classes: list[str]
    metadata: dict = field(default_factory=dict)

    @property
    def max_len(self) -> int:
        return self.network.max_len

    @property
    def temperature(self) -> float:
        """Divides log-probabilities before the softmax; fitted on validation (1.0: uncalibrated)."""
        return self.metadata.get("temperature") or 1.0

    @property
    def both_strands(self) -> bool:
        """Whether scoring averages a sequence and its reverse complement by default."""
        return trained_on_both_strands(self.metadata)

    def scores_both_strands(self, rc: bool | None) -> bool:
        """Whether to average both strands: `rc` when the user said, else as the model was trained."""
        return self.both_strands if rc is None else rc

    @property
    def positive_class(self) -> str | None:
        """For a binary model, the class that `--threshold` calls: the second, as classes are sorted."""
        return self.classes[1] if len(self.classes) == 2 else None


def trained_on_both_strands(metadata: dict) -> bool:
    """Whether a model was trained on both strands (`rc_augment`), because its task has no strand; such a
    model is scored on both by default."""
    settings = (metadata.get("training") or {}).get("settings") or {}
    return bool(settings.get("rc_augment"))


def save_model(model: TrainedModel, path: str | Path) -> None:
    """Write the model file atomically (a temporary file beside it, then a rename)."""
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "genomix_version": __version__,
        "tokenizer": TOKENIZER,
        "model": model.network.name,
        "config": model.network.config,
        "classes": model.classes,
        "positive_class": model.positive_class,
        **model.metadata,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(header)})


def read_header(path: str | Path) -> dict:
    """The JSON description of a model file, checked to be a genomix model this version can read."""
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
    if header.get("format") != FORMAT:
        raise GenomixError(f"{path}: not a genomix model file")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise GenomixError(f"{path}: model file format {header['format_version']} is newer than this genomix")
    if header.get("tokenizer") != TOKENIZER:
        raise GenomixError(f"{path}: model uses tokenizer {header.get('tokenizer')!r}, unknown to this genomix")
    return header


# Model options added after model files were first written, with the value that rebuilds those older files
# (a file stores every option, so a missing one means the file predates it).
ADDED_OPTIONS = {"kmer": 0, "factor_norm": False, "factor_mlp": "factor"}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild the network from the file's config and load its weights, in evaluation mode."""
    header = read_header(path)
    try:
        accepted = model_options(header["model"]) if header["model"] in MODELS else set()
        older = {k: v for k, v in ADDED_OPTIONS.items() if k in accepted}
        network = create_model(header["model"], len(header["classes"]), **older | header["config"])
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
        network.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise GenomixError(f"{path}: corrupt model file ({str(err).splitlines()[0]})") from None
    metadata = {k: v for k, v in header.items()
                if k not in {"format", "format_version", "tokenizer", "model", "config", "classes", "positive_class"}}
    return TrainedModel(network.to(device).eval(), list(header["classes"]), metadata)


def describe(header: dict) -> str:
    """A few readable lines about a model file (the JSON has everything)."""
    training = header.get("training") or {}
    lines = [
        f"model      {header['model']} " + " ".join(f"{k}={v}" for k, v in header["config"].items()),
        f"classes    {', '.join(header['classes'])}"
        + (f" (positive: {header['positive_class']})" if header.get("positive_class") else ""),
        f"genomix    {header['genomix_version']}, tokenizer {header['tokenizer']}",
    ]
    if training:
        counts = ", ".join(f"{c}: {n}" for c, n in training["class_counts"].items())
        window = (training.get("settings") or {}).get("window")
        data = (f"{training['records']} fresh windows of {window} bp per epoch ({counts}, held-out fraction "
                f"{training['settings']['holdout_fraction']})" if window else
                f"{training['records']} sequences ({counts}), lengths {training['length_range'][0]}"
                f"-{training['length_range'][1]}")
        lines += [
            f"trained on {data}, from {', '.join(training.get('inputs', [])) or 'Python'}",
            f"training   {training['epochs_run']} epochs (best {training['best_epoch']}), "
            f"{training['seconds']} s on {training['device']}",
        ]
        if training.get("composition_weight") is not None:
            lines.append(f"k-mer term weight {training['composition_weight']:.2f} in the blend with the network "
                         "(chosen on validation)")
        signal = training.get("strand_signal")
        lines.append("strands    " + ("both (trained on reverse complements too, scored on both)"
                                      if trained_on_both_strands(header) else "as given")
                     + (f"; strand signal {signal:.3f} (0.5: none)" if signal is not None else ""))
    validation = header.get("validation")
    if validation:
        lines.append("validation " + ", ".join(
            f"{k} {validation[k]:.4f}" for k in ("accuracy", "mcc", "auroc") if validation.get(k) is not None))
    return "\n".join(lines)
