"""genomix: train and apply DNA sequence classifiers built on Paramixer.

The public face for Python users: every command is a function importable from here. Names are loaded on first
use, so that `import genomix` (and `genomix --help`) does not pay for torch until a model is needed.

    import genomix
    model = genomix.fit(genomix.read_inputs(["train.fa"]), genomix.TrainSettings(epochs=5))
    genomix.save_model(model, "m.gmx")
    for p in genomix.predict_records(genomix.load_model("m.gmx"), genomix.read_inputs(["test.fa"])):
        print(p.id, p.probs)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {  # name → the module that defines it, in the order records flow
    "GenomixError": "genomix.errors",
    "Record": "genomix.io.reading",
    "read_inputs": "genomix.io.reading",
    "read_records": "genomix.io.reading",
    "RecordSource": "genomix.io.sources",
    "GenomeSet": "genomix.io.genomes",
    "create_model": "genomix.models",
    "list_models": "genomix.models",
    "TrainedModel": "genomix.models.modelfile",
    "load_model": "genomix.models.modelfile",
    "save_model": "genomix.models.modelfile",
    "Scorer": "genomix.applying.scoring",
    "predict_records": "genomix.applying.scoring",
    "embeddings": "genomix.applying.scoring",
    "predict": "genomix.applying.predicting",
    "evaluate": "genomix.applying.evaluating",
    "scan": "genomix.applying.scanning",
    "embed": "genomix.applying.embedding",
    "score_variants": "genomix.applying.variants",
    "attribute": "genomix.applying.explaining",
    "explain": "genomix.applying.explaining",
    "TrainSettings": "genomix.fitting.training",
    "fit": "genomix.fitting.training",
    "train": "genomix.fitting.training",
    "PretrainSettings": "genomix.fitting.pretraining",
    "fit_backbone": "genomix.fitting.pretraining",
    "pretrain": "genomix.fitting.pretraining",
    "Classifier": "genomix.estimator",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'genomix' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
