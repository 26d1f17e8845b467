from __future__ import annotations

import numpy as np
import torch

from hwr.evaluate import evaluate, most_confident_mistakes
from hwr.metrics import classification_report, confusion_matrix, format_confusion


def test_confusion_and_report_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    r = classification_report(cm, ["a", "b", "c"])
    assert r["accuracy"] == 4 / 6
    assert r["per_class"]["b"]["precision"] == 2 / 3 and r["per_class"]["b"]["recall"] == 1.0
    assert abs(r["per_class"]["b"]["f1"] - 0.8) < 1e-9
    assert abs(r["macro_recall"] - (0.5 + 1 + 0.5) / 3) < 1e-9
    assert "true" in format_confusion(cm, ["a", "b", "c"])


def test_never_predicted_class_has_zero_precision_not_nan():
    r = classification_report(confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2), ["0", "1"])
    assert r["per_class"]["1"]["precision"] == 0.0 and r["macro_f1"] == r["macro_f1"]


class Constant(torch.nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        out = torch.zeros(x.shape[0], 10)
        out[:, self.k] = 5.0
        return out


def test_evaluate_returns_metrics():
    images = torch.zeros(20, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([3] * 10 + [4] * 10)
    r = evaluate(Constant(3), images, labels, [str(i) for i in range(10)], {"mean": 0.0, "std": 1.0}, batch_size=7)
    assert r["accuracy"] == 0.5 and r["n"] == 20
    for key in ("macro_precision", "macro_recall", "macro_f1", "per_class", "confusion", "loss"):
        assert key in r
    probs = torch.softmax(Constant(3)(images.float().unsqueeze(1)), 1)
    assert sorted(most_confident_mistakes(probs, labels, 5)) == list(range(10, 15))
