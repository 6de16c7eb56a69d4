"""The models: their registry (`genomix.models.registry`) and the model modules that fill it.

`genomix.models.base.Model` is the contract every registered model implements.
"""

from genomix.models import cnn, kmer, paramixer, transformer  # noqa: F401  (importing a model module registers it)
from genomix.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    create_model,
    list_models,
    model_class,
    parse_options,
    rebuild,
    register,
    register_legacy,
)

__all__ = ["DEFAULT_MODEL", "MODELS", "create_model", "list_models", "model_class", "parse_options", "rebuild",
           "register", "register_legacy"]
