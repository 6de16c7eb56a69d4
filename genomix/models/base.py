"""The model contract, every model's option set, and what the neural classifiers share.

Every model maps (tokens (B, N), lengths (B,)) to class logits and gives a sequence the same logits
whatever it is batched with, so models are interchangeable in training, scoring and evaluation. In place
of token ids a model also takes base weights (B, N, 4) (`genomix.sequences.tokens.one_hot`): its differentiable input,
which gives the same logits at one-hot input (`genomix.applying.explaining` takes gradients through it). A model
owns its options (a dataclass with defaults and checks) and the upgrades that rebuild older model files.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from genomix.errors import GenomixError
from genomix.models.registry import create_model
from genomix.sequences.tokens import BASE_TOKENS, N_TOKEN, VOCAB_SIZE, kmer_codes, kmer_embedding, padding_mask


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """A model's own options. Subclasses add fields (with defaults) and override `check`."""

    @classmethod
    def parse(cls, values: Mapping[str, Any], model: str) -> ModelOptions:
        """Options from a mapping whose values may be strings (`--set dim=32`); unknown names and bad
        values are user errors that name the model."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise GenomixError(f"model {model} has no option {', '.join(unknown)} "
                               f"(its options: {', '.join(fields) or 'none'})")
        types = typing.get_type_hints(cls)
        options = cls(**{name: _coerce(value, types[name], name, model) for name, value in values.items()})
        options.check(model)
        return options

    def check(self, model: str) -> None:
        """Raise GenomixError on a value outside the option's range."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, kind: Any, name: str, model: str) -> Any:
    """A value of the option's type; strings are parsed (`true`/`false` for booleans)."""
    kind = next((k for k in typing.get_args(kind) if k is not type(None)), kind)  # X | None → X
    if isinstance(value, str) and kind is not str:
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        try:
            value = words[value.lower()] if kind is bool else kind(value)
        except (KeyError, ValueError):
            raise GenomixError(f"model {model}: option {name} expects {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise GenomixError(f"model {model}: option {name} expects {kind.__name__}, got {value!r}")
    return value


def at_least(model: str, **values: tuple[float, float]) -> None:
    """Each `name=(value, minimum)` must reach its minimum."""
    for name, (value, minimum) in values.items():
        if value < minimum:
            raise GenomixError(f"model {model}: option {name} must be at least {minimum}, got {value}")


class Model(nn.Module):
    """What every registered model provides.

    - `forward(tokens, lengths)`: class logits (B, classes);
    - `embed(tokens, lengths)`: pooled features (B, F), the representation the head reads;
    - `fit_direct(...)` where `fits_directly`: a closed-form fit that replaces the gradient loop;
    - `composition`: a k-mer term the network's log-probabilities are blended with, or None;
    - `upgrade(config)` / `upgrade_state(state)`: rebuild a model file written by an older genomix.
    """

    name: ClassVar[str]
    Options: ClassVar[type[ModelOptions]] = ModelOptions
    fits_directly: ClassVar[bool] = False

    def __init__(self, num_classes: int, max_len: int, options: ModelOptions) -> None:
        super().__init__()
        self.num_classes, self.max_len, self.options = num_classes, max_len, options
        self.composition: Model | None = None

    @property
    def config(self) -> dict[str, Any]:
        """What the model file stores to rebuild this model: max_len and every option."""
        return {"max_len": self.max_len, **self.options.as_dict()}

    def embed(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        """F, the width of `embed`'s output."""
        raise NotImplementedError

    def fit_direct(self, train: tuple[list[np.ndarray], np.ndarray],
                   val: tuple[list[np.ndarray], np.ndarray] | None, seed: int) -> dict:
        raise NotImplementedError(f"{self.name} has no closed-form fit")

    @classmethod
    def upgrade(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The options of a file written by an older genomix, in today's names, with the values that
        rebuild it where the file predates an option."""
        return config

    @classmethod
    def upgrade_state(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Tensors of an older file under today's names."""
        return state


@dataclasses.dataclass(frozen=True)
class NeuralOptions(ModelOptions):
    """Options every neural classifier takes (the defaults are those the results in docs/ were measured with)."""

    dim: int = 64  # embedding width D
    hidden: int = 128  # hidden width H of the MLPs
    layers: int = 2  # mixing blocks
    dropout: float = 0.2
    kmer_embedding: int = 6  # k of the k-mer embedding; 0: none
    stem_kernel: int = 9  # width of the convolutional stem; 0: none
    pos_embedding: bool = True  # learned position embedding
    composition: bool = True  # hold a k-mer regression to blend in (weight chosen on validation by training)

    def check(self, model: str) -> None:
        at_least(model, dim=(self.dim, 1), hidden=(self.hidden, 1), layers=(self.layers, 1),
                 kmer_embedding=(self.kmer_embedding, 0), stem_kernel=(self.stem_kernel, 0))
        if not 0 <= self.dropout < 1:
            raise GenomixError(f"model {model}: option dropout must be in [0, 1), got {self.dropout}")


# Options added after model files were first written: a file without one predates it, and this value rebuilds it.
_ADDED_NEURAL = {"kmer_embedding": 0, "composition": False}


class SequenceClassifier(Model):
    """Token embedding (+ optional k-mer embedding, local convolution and learned positions) → mixing →
    mean pool → head. A subclass only supplies `mix`, the part that lets positions exchange information.

    Padding is handled here once: padded positions are zeroed before mixing and never enter the pooled
    summary, so a sequence gets the same logits alone or in a batch with longer ones.

    The k-mer embedding adds, at each position, a vector for the k-mer that starts there: mean pooling of
    those vectors is a learned linear read-out of k-mer frequencies, the composition signal that species
    and many regulatory tasks rest on. The stem gives each position a view of its wider context before
    long-range mixing; learned positions let a model use where a motif sits (e.g. relative to a TSS).

    With `composition`, the model also holds a k-mer logistic regression (`attach_composition`) and returns the blend
    (1 - a) · log_softmax(network) + a · log_softmax(k-mer), a log-probability up to a constant. Training
    fits the network as usual (a = 0), then the regression in closed form, then picks a by validation
    likelihood (`genomix.fitting.finishing`). Where composition carries the signal (species of origin) the convex
    regression is steadier than a network trained on a few thousand sequences; where it does not, a stays 0.
    """

    Options = NeuralOptions

    def __init__(self, num_classes: int, max_len: int, options: NeuralOptions) -> None:
        super().__init__(num_classes, max_len, options)
        dim, k = options.dim, options.kmer_embedding
        self.kmer = k
        self.token_embed = nn.Embedding(VOCAB_SIZE, dim)
        # Row 4^k stands for "no valid k-mer here" (N, padding, or too close to the end) and stays zero.
        self.kmer_embed = nn.Embedding(4**k + 1, dim, padding_idx=4**k) if k else None
        stem = options.stem_kernel
        self.stem = nn.Conv1d(dim, dim, stem, padding=stem // 2) if stem else None
        self.pos = nn.Embedding(max_len, dim) if options.pos_embedding else None
        self.dropout = nn.Dropout(options.dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        if options.composition:  # built here, so that the layers after it draw the same initial weights
            self.attach_composition(create_model("kmer", num_classes, max_len))
        self.blend = 0.0  # the composition weight as a Python number: a compiled step then needs no branch on data

    def attach_composition(self, term: Model) -> None:
        """Hold `term` (a k-mer regression, fitted in closed form) as the blend's second term, at weight 0.
        A model whose `composition` option is on attaches one when it is built."""
        self.composition = term.requires_grad_(False)
        self.register_buffer("composition_weight", torch.zeros(()))
        self.register_load_state_dict_post_hook(lambda module, _: module.set_composition_weight(
            float(module.composition_weight)))

    def set_composition_weight(self, weight: float) -> None:
        """The blend weight a of the k-mer term (0: the network alone)."""
        self.composition_weight.fill_(weight)
        self.blend = weight

    def embed_tokens(self, tokens: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        """(B, N, dim) embedded positions of token ids (B, N), or of base weights (B, N, 4) (`_embed_bases`)."""
        if tokens.is_floating_point():
            x = self._embed_bases(tokens * mask[..., None])
        else:
            x = self.token_embed(tokens)
            if self.kmer_embed is not None and tokens.shape[1] >= self.kmer:
                codes, valid = kmer_codes(tokens, lengths, self.kmer)
                codes = codes.masked_fill(~valid, 4**self.kmer)
                x = x + nn.functional.pad(self.kmer_embed(codes), (0, 0, 0, self.kmer - 1))  # last k-1: none
        x = x * mask[..., None]
        if self.stem is not None:
            x = x + nn.functional.gelu(self.stem(x.transpose(1, 2))).transpose(1, 2)
        if self.pos is not None:
            x = x + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        return self.dropout(x) * mask[..., None]

    def _embed_bases(self, bases: Tensor) -> Tensor:
        """The token and k-mer embeddings of base weights (`genomix.sequences.tokens.one_hot`): equal to those of the
        token ids at one-hot input, and differentiable, so that `genomix.applying.explaining` can take gradients. A
        base's embedding is its weights times the rows of A, C, G and T, plus the N row times what the weights leave
        (a zero row is an N); a k-mer's is the product of its bases' weights times its row (`kmer_embedding`)."""
        table = self.token_embed.weight
        x = bases @ table[BASE_TOKENS[0] : N_TOKEN] + (1 - bases.sum(-1, keepdim=True)) * table[N_TOKEN]
        if self.kmer_embed is not None and bases.shape[1] >= self.kmer:
            kmers = kmer_embedding(bases, self.kmer_embed.weight, self.kmer)
            x = x + nn.functional.pad(kmers, (0, 0, 0, self.kmer - 1))
        return x

    def mix(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        return self.options.dim

    def position_features(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The mixed, normalised positions (B, N, dim), zero at padding: what `embed` pools and what masked-base
        pretraining (`genomix.fitting.pretraining`) reads a base from at every position."""
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"input of length {tokens.shape[1]} exceeds the model's max_len {self.max_len}")
        mask = padding_mask(lengths, tokens.shape[1])
        x = self.embed_tokens(tokens, lengths, mask)
        return self.norm(self.mix(x, lengths, mask)) * mask[..., None]

    def embed(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The masked mean of the mixed, normalised positions: (B, dim)."""
        h = self.position_features(tokens, lengths)
        return h.sum(1) / lengths[:, None].to(h.dtype)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Logits (B, classes) for token ids (B, N) padded with 0 and true lengths (B,)."""
        logits = self.head(self.embed(tokens, lengths))
        if self.composition is None or not self.blend:
            return logits
        a = self.composition_weight
        with torch.autocast(tokens.device.type, enabled=False):  # 5,460 standardised features: keep fp32
            kmer = self.composition(tokens, lengths)
        return (1 - a) * logits.float().log_softmax(-1) + a * kmer.log_softmax(-1)

    @classmethod
    def upgrade(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = dict(config)
        if "kmer" in config:  # the k-mer embedding's k, renamed so that `kmer` names only the baseline model
            config["kmer_embedding"] = config.pop("kmer")
        return _ADDED_NEURAL | config

    @classmethod
    def upgrade_state(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {("token_embed.weight" if k == "embed.weight" else k): v for k, v in state.items()}
