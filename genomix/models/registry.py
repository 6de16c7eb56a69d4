"""The model registry: a name maps to a model class, and a model is built from its name, class count, max_len and
options (`genomix.models.base.Model` is the contract every registered model implements).

A model name once written to model files and later renamed stays readable through `register_legacy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from genomix.errors import GenomixError

if TYPE_CHECKING:  # the registry holds model classes; it needs none of their code
    from genomix.models.base import Model, ModelOptions

MODELS: dict[str, type[Model]] = {}
DEFAULT_MODEL = "paramixer-cdil"
_LEGACY: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]] = {}


def register(name: str) -> Callable[[type[Model]], type[Model]]:
    """Class decorator that adds a model to the registry under `name`."""

    def add(cls: type[Model]) -> type[Model]:
        MODELS[name] = cls
        cls.name = name
        return cls

    return add


def register_legacy(name: str, resolve: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]) -> None:
    """Let files that name a model `name` load: `resolve(config)` gives today's name and config."""
    _LEGACY[name] = resolve


def list_models() -> list[str]:
    return sorted(MODELS)


def model_class(name: str) -> type[Model]:
    if name not in MODELS:
        raise GenomixError(f"unknown model '{name}' (choose from: {', '.join(list_models())})")
    return MODELS[name]


def parse_options(name: str, options: dict[str, Any]) -> ModelOptions:
    """The model's validated options; what is not given takes the model's default."""
    return model_class(name).Options.parse(options, name)


def create_model(name: str, num_classes: int, max_len: int, **options: Any) -> Model:
    """Build a registered model; unknown names, unknown options and bad values are user errors."""
    if max_len < 1:
        raise GenomixError(f"max_len must be at least 1, got {max_len}")
    cls, parsed = model_class(name), parse_options(name, options)
    try:
        return cls(num_classes, max_len, parsed)
    except (RuntimeError, MemoryError, OverflowError) as err:  # a size no memory holds (max_len 10^12, say)
        raise GenomixError(f"model {name} with max_len {max_len:,} cannot be built: {str(err).splitlines()[0]}") \
            from None


def rebuild(name: str, num_classes: int, config: dict[str, Any]) -> Model:
    """The model a file describes (name and config as stored, from any genomix version)."""
    if name in _LEGACY:
        name, config = _LEGACY[name](dict(config))
    cls = model_class(name)
    config = cls.upgrade(dict(config))
    if not isinstance(config.get("max_len"), int):
        raise GenomixError(f"model {name}: the stored config has no max_len")
    max_len = config.pop("max_len")
    return create_model(name, num_classes, max_len, **config)
