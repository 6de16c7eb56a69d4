"""Model registry: a name maps to a class, and a model is rebuilt from the config in its model file.

Every model maps (tokens, lengths) to class logits and gives a sequence the same logits whatever it is
batched with, so models are interchangeable in training, prediction and evaluation.
"""

from __future__ import annotations

import inspect

from torch import nn

from genomix.errors import GenomixError

MODELS: dict[str, type[nn.Module]] = {}


def register(name: str):
    """Class decorator that adds a model to the registry under `name`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS[name] = cls
        cls.name = name
        return cls

    return add


def create_model(name: str, num_classes: int, **config) -> nn.Module:
    """Build a registered model, with its `config` attribute set; unknown names or options are user errors."""
    if name not in MODELS:
        raise GenomixError(f"unknown model '{name}' (choose from: {', '.join(sorted(MODELS))})")
    unknown = sorted(set(config) - model_options(name))
    if unknown:
        raise GenomixError(f"model '{name}' has no option {', '.join(unknown)}")
    cls = MODELS[name]
    model = cls(num_classes=num_classes, **config)
    # The full config, defaults included, is what the model file stores to rebuild the model.
    bound = inspect.signature(cls.__init__).bind(None, num_classes, **config)
    bound.apply_defaults()
    model.config = {k: v for k, v in bound.arguments.items() if k not in ("self", "num_classes")}
    return model


def model_options(name: str) -> set[str]:
    """The config options a registered model accepts."""
    return set(inspect.signature(MODELS[name].__init__).parameters) - {"self", "num_classes"}


# Importing the model modules fills the registry.
from genomix.models import cnn, kmer, paramixer, transformer  # noqa: E402, F401
