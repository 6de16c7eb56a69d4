"""ROC, precision-recall and confusion-matrix figures for `genomix evaluate --plots DIR` (headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: figures go straight to PNG files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay  # noqa: E402

from genomix.io.files import atomic_path  # noqa: E402


def curve_classes(classes: Sequence[str], positive: int | None) -> list[int]:
    """The classes that get a curve: a binary model's positive class, every one (vs rest) otherwise."""
    return [positive] if positive is not None else list(range(len(classes)))


def write_plots(y: np.ndarray, probs: np.ndarray, calls: np.ndarray, classes: Sequence[str], positive: int | None,
                folder: str | Path) -> list[Path]:
    """Write roc.png, pr.png and confusion.png into `folder`; return their paths. The curves
    are of the `positive` class (see `curve_classes`), and the confusion matrix is of the `calls` the metrics
    count (`genomix.applying.scoring.decide`, with the threshold)."""
    folder = Path(folder)
    written = []
    for name, display in (("roc", RocCurveDisplay), ("pr", PrecisionRecallDisplay)):
        fig, ax = plt.subplots(figsize=(5, 5))
        for c in curve_classes(classes, positive):
            if 0 < (y == c).sum() < len(y):
                display.from_predictions(y == c, probs[:, c], name=classes[c], ax=ax)
        ax.set_title(f"{'ROC' if name == 'roc' else 'Precision-recall'} ({len(y)} sequences)")
        written.append(_save(fig, folder / f"{name}.png"))
    fig, ax = plt.subplots(figsize=(5, 5))
    ConfusionMatrixDisplay.from_predictions(y, calls, labels=range(len(classes)), display_labels=classes,
                                            ax=ax, colorbar=False, xticks_rotation=45)
    written.append(_save(fig, folder / "confusion.png"))
    return written


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
