"""Evaluate a checkpoint on a test set: accuracy, per-class P/R/F1, confusion matrix, worst mistakes.

    python -m hwr.evaluate [--checkpoint PATH] --dataset mnist --data-dir DIR [--json] [--plot DIR]
    python -m hwr.evaluate --dataset emnist-byclass-digits --data-dir DIR [--preprocess]

By default a dataset's 28x28 images are the model input as they are (in the dataset's own framing);
`--preprocess` first passes each one through the checkpoint's preprocessing recipe, as a drawing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw

from hwr.inference import predict_probabilities
from hwr.metrics import classification_report, confusion_matrix, format_confusion
from hwr.model import inference_copy

log = logging.getLogger(__name__)


def report_from_probabilities(probs: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Metrics dict (see hwr.metrics.classification_report) plus `loss` (mean cross-entropy)."""
    y = labels.long().cpu()
    cm = confusion_matrix(y.numpy(), probs.argmax(dim=1).numpy(), len(classes))
    report = classification_report(cm, classes)
    report["loss"] = float(-torch.log(probs[torch.arange(len(y)), y].clamp_min(1e-12)).mean()) if len(y) else 0.0
    return report


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    normalization: dict[str, float],
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> dict:
    """Metrics dict (see hwr.metrics.classification_report) plus `loss` (mean cross-entropy)."""
    probs = predict_probabilities(inference_copy(model), images, normalization, batch_size, device)
    return report_from_probabilities(probs, labels, classes)


def labels_for_model(labels: torch.Tensor, data_classes: list[str], model_classes: list[str]) -> torch.Tensor:
    """Dataset labels -> the model's class indices, matched by class name.

    Raises ValueError naming the dataset classes the model does not have.
    """
    if data_classes == model_classes:
        return labels
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        raise ValueError(f"the model has no class for {', '.join(missing[:10])} (it knows {', '.join(model_classes)}).")
    index = torch.tensor([model_classes.index(c) for c in data_classes])
    return index[labels]


def repreprocess(images: torch.Tensor, preprocess_spec: dict) -> torch.Tensor:
    """(N, 28, 28) uint8 dataset images -> (N, 28, 28) float32 model inputs through a checkpoint's recipe.

    Each image is read as a drawing (white ink on black), as the app would read it.
    """
    from hwr.preprocess import EmptyDrawingError, preprocess_for

    out = torch.zeros(images.shape, dtype=torch.float32)
    for i, image in enumerate(images.numpy()):
        try:
            out[i] = torch.from_numpy(preprocess_for(image, preprocess_spec))
        except EmptyDrawingError:  # an image with no pixel above the ink threshold: left blank
            log.warning("image %d has no ink; left blank", i)
    return out


def most_confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, k: int = 25) -> list[int]:
    """Indices of the k wrong predictions with the highest predicted probability."""
    conf, pred = probs.max(dim=1)
    wrong = torch.nonzero(pred != labels.long()).flatten()
    order = torch.argsort(conf[wrong], descending=True)
    return wrong[order[:k]].tolist()


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path, cell: int = 40) -> Path:
    """A PNG of the confusion matrix (counts in cells; off-diagonal shaded by count)."""
    n = len(classes)
    margin = cell
    img = Image.new("RGB", (margin + n * cell + 4, margin + n * cell + 4), "white")
    d = ImageDraw.Draw(img)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    vmax = max(int(off.max()), 1)
    for i in range(n):
        d.text((margin + i * cell + cell // 3, margin // 3), classes[i], fill="black")
        d.text((margin // 3, margin + i * cell + cell // 3), classes[i], fill="black")
        for j in range(n):
            v = int(confusion[i, j])
            if i == j:
                colour = (200, 230, 200)
            else:
                t = min(v / vmax, 1.0)
                colour = (255, int(255 - 180 * t), int(255 - 180 * t))
            x0, y0 = margin + j * cell, margin + i * cell
            d.rectangle([x0, y0, x0 + cell, y0 + cell], fill=colour, outline=(200, 200, 200))
            d.text((x0 + 4, y0 + cell // 3), str(v), fill="black")
    d.text((2, 2), "true \u2193 / pred \u2192", fill="black")
    img.save(path)
    return path


def plot_mistakes(images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, classes: list[str], path: Path, k: int = 25) -> Path:
    """A 5x5 grid of the most confident mistakes, each captioned 'true->pred p'."""
    idx = most_confident_mistakes(probs, labels, k)
    scale, cols = 3, 5
    tile = 28 * scale
    rows = max(1, (len(idx) + cols - 1) // cols)
    img = Image.new("RGB", (cols * (tile + 8), rows * (tile + 22)), "white")
    d = ImageDraw.Draw(img)
    for n, i in enumerate(idx):
        x = images[i]
        arr = (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).numpy()
        pic = Image.fromarray((255 - arr * 255).astype(np.uint8)).resize((tile, tile), Image.NEAREST)
        x0, y0 = (n % cols) * (tile + 8) + 4, (n // cols) * (tile + 22) + 2
        img.paste(pic, (x0, y0))
        p, pred = probs[i].max(dim=0)
        d.text((x0, y0 + tile + 2), f"{classes[int(labels[i])]}->{classes[int(pred)]} {float(p):.2f}", fill="red")
    img.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    from hwr.checkpoint import CheckpointError, load_checkpoint
    from hwr.data import DATASETS, default_data_dir, load_dataset
    from hwr.recognizer import DEFAULT_CHECKPOINT

    ap = argparse.ArgumentParser(description="Evaluate a checkpoint on a test set.")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint (default: the bundled model)")
    ap.add_argument("--dataset", default="mnist", choices=DATASETS, help="test set: the dataset's test split (emnist-byclass-test-letters: its validation part) (default: mnist)")
    ap.add_argument("--data-dir", default=str(default_data_dir()), help="data root (default: $HWR_DATA_DIR, else ./data)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text (default: off)")
    ap.add_argument("--plot", metavar="DIR", help="write confusion.png and mistakes.png to DIR (default: none)")
    ap.add_argument("--preprocess", action="store_true", help="pass each image through the checkpoint's preprocessing recipe first, as a drawing (default: off: the images are the model input as they are)")
    ap.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size (default: 1000)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = ap.parse_args(argv)

    try:
        model, meta = load_checkpoint(args.checkpoint, args.device)
        data = load_dataset(args.dataset, args.data_dir, train=False)
        labels = labels_for_model(data.labels, data.classes, meta["classes"])
    except (CheckpointError, FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    norm = meta["normalization"]
    images = repreprocess(data.images, meta["preprocess"]) if args.preprocess else data.images
    probs = predict_probabilities(inference_copy(model), images, norm, args.batch_size, args.device)  # once, for report and plots
    report = report_from_probabilities(probs, labels, meta["classes"])
    report.update(checkpoint=str(args.checkpoint), model=meta["name"], dataset=data.name,
                  input="preprocessed" if args.preprocess else "as stored")
    if args.plot:
        out = Path(args.plot)
        out.mkdir(parents=True, exist_ok=True)
        report["plots"] = [
            str(plot_confusion(np.array(report["confusion"]), meta["classes"], out / "confusion.png")),
            str(plot_mistakes(images, labels, probs, meta["classes"], out / "mistakes.png")),
        ]
    if args.json:
        print(json.dumps(report))
        return 0
    how = f"through the {meta['preprocess'].get('recipe', 'mnist')} recipe" if args.preprocess else "as stored"
    print(f"{meta['name']} on {data.name} ({report['n']} images, {how})")
    print(f"accuracy {report['accuracy']:.4f}  macro P {report['macro_precision']:.4f}  R {report['macro_recall']:.4f}  F1 {report['macro_f1']:.4f}")
    print("class  precision  recall     f1  support")
    for c, m in report["per_class"].items():
        print(f"{c:>5}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    print(format_confusion(np.array(report["confusion"]), meta["classes"]))
    for p in report.get("plots", []):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
