"""Classification metrics from true labels and predicted probabilities (scikit-learn underneath).

Binary AUROC/AUPRC are those of the positive class; multi-class ones are the macro
average of one-vs-rest. A metric that is undefined on the data (AUROC with one class present) is None.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.table import Table


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, num_classes: int, y_pred: np.ndarray | None = None,
                           positive: int | None = None) -> dict:
    """accuracy, balanced_accuracy, macro_f1, mcc, auroc, auprc, confusion (rows: true, cols: predicted).

    `y_pred` are the called classes (default: the most probable); `positive` is the class whose probability
    a binary model's AUROC and AUPRC rank by (default: the second).
    """
    from sklearn import metrics as skm  # imported here: loading sklearn costs ~1 s, which `genomix info` need not pay
    from sklearn.preprocessing import label_binarize

    y_pred = probs.argmax(1) if y_pred is None else y_pred
    labels = list(range(num_classes))
    result = {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "mcc": float(skm.matthews_corrcoef(y_true, y_pred)),
        "auroc": None,
        "auprc": None,
        "confusion": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    present = np.unique(y_true)
    if len(present) < 2:
        return result
    if num_classes == 2:
        positive = 1 if positive is None else positive
        result["auroc"] = float(skm.roc_auc_score(y_true == positive, probs[:, positive]))
        result["auprc"] = float(skm.average_precision_score(y_true == positive, probs[:, positive]))
    else:
        onehot = label_binarize(y_true, classes=labels)[:, present]
        scores = probs[:, present]
        result["auroc"] = float(skm.roc_auc_score(onehot, scores, average="macro"))
        result["auprc"] = float(skm.average_precision_score(onehot, scores, average="macro"))
    return result


def report_table(result: dict, classes: Sequence[str], title: str) -> Table:
    """Metrics and confusion matrix as a rich table."""
    table = Table(title=f"{title} ({result['n']} sequences)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "auroc", "auprc", "ece_uncalibrated", "ece"):
        if name.startswith("ece") and name not in result:
            continue
        value = result.get(name)
        table.add_row(name, "n/a" if value is None else f"{value:.4f}")
    for cls, row in zip(classes, result["confusion"]):
        table.add_row(f"true {cls}", " ".join(f"{c:>6d}" for c in row))
    for name, value in (result.get("open_set") or {}).items():
        table.add_row(f"open set {name}", value if isinstance(value, str) else f"{value:.4f}")
    return table
