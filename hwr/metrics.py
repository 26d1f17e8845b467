"""Classification metrics from predictions: pure functions, no I/O."""

from __future__ import annotations

import numpy as np


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts; rows are true classes, columns predicted classes."""
    idx = np.asarray(targets, np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(confusion: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and macro averages from a confusion matrix.

    A class that is never predicted has precision 0 (and one that never occurs, recall 0); macro
    averages are over classes that occur in the targets.
    """
    cm = np.asarray(confusion, np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "n": int(total),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion": cm.astype(np.int64).tolist(),
    }


def format_confusion(confusion: np.ndarray, classes: list[str]) -> str:
    """The confusion matrix as aligned text (rows: true, columns: predicted)."""
    cm = np.asarray(confusion)
    width = max(len(str(int(cm.max()))) if cm.size else 1, max(len(c) for c in classes)) + 1
    head = " " * width + " |" + "".join(c.rjust(width) for c in classes)
    lines = ["true \\ predicted", head, "-" * len(head)]
    for c, row in zip(classes, cm):
        lines.append(c.rjust(width) + " |" + "".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)
