"""Does one person's own corrections teach the model *their* handwriting?

The whole-number bench (bench/multidigit.py) misses mostly on a few writers' styles (long-flagged
1s read as 7, open 3s read as 9). The app's answer to a style it does not know is the person's own
corrections. This bench plays that out, one pendigits writer at a time (writers 16-30, whom the
bundled model never saw):

* the writer "corrects" K of their digits per class in the app: canvas renders
  (hwr.pendigits.random_render, white canvas) saved through the real CorrectionStore;
* the bundled model is fine-tuned on those only, with hwr.finetune.finetune's defaults (the code of
  the app's "Fine-tune" button and of `train.py --init-from`);
* measured on the writer's *other* digits (rendered with a fixed seed), on every digit of the other
  writers of --writers (does learning one person cost the others?), and on the MNIST test set.

    python bench/personal_finetune.py --data-dir ../shared/data [--writers 16-30] [--per-digit 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from multidigit import default_data_dir  # noqa: E402

from hwr.corrections import CorrectionStore  # noqa: E402
from hwr.data import MNIST_CLASSES, load_dataset  # noqa: E402
from hwr.finetune import FinetuneConfig, finetune  # noqa: E402
from hwr.pendigits import PenDigit, load_pendigits, parse_writers, random_render  # noqa: E402
from hwr.recognizer import DEFAULT_CHECKPOINT, Recognizer  # noqa: E402


def split_own_digits(digits: list[PenDigit], per_digit: int, seed: int) -> tuple[list[PenDigit], list[PenDigit]]:
    """One writer's digits -> (K of each class to correct, the rest to measure on)."""
    rng = np.random.default_rng(seed)
    corrected: list[PenDigit] = []
    rest: list[PenDigit] = []
    for label in MNIST_CLASSES:
        pool = [d for d in digits if d.label == label]
        order = rng.permutation(len(pool))
        corrected += [pool[i] for i in order[:per_digit]]
        rest += [pool[i] for i in order[per_digit:]]
    return corrected, rest


def model_inputs(recognizer: Recognizer, digits: list[PenDigit], seed: int) -> np.ndarray:
    """Each digit rendered once (fixed seed) and preprocessed: (N, 28, 28). Every model is measured
    on these same inputs (fine-tuning keeps the preprocessing recipe)."""
    rng = np.random.default_rng(seed)
    return np.stack([recognizer.preprocess(random_render(d, rng)) for d in digits])


def right(recognizer: Recognizer, inputs: np.ndarray, labels: list[str]) -> np.ndarray:
    """(N,) bool: which inputs the recognizer reads as their label."""
    probs = recognizer.predict_inputs(inputs)  # (N, C)
    return np.array([recognizer.classes[k] == y for k, y in zip(probs.argmax(1), labels)])


def save_corrections(root: Path, digits: list[PenDigit], seed: int) -> CorrectionStore:
    """Save each digit as the app would: one canvas render, labelled, through CorrectionStore."""
    store = CorrectionStore(root, classes=MNIST_CLASSES)
    rng = np.random.default_rng(seed)
    for d in digits:
        store.add(random_render(d, rng), d.label, source="pendigits", writer=d.writer)
    return store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", default="16-30", help="writers, each on their own (default: 16-30, unseen by the bundled model)")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data root (default: %(default)s)")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model to fine-tune (default: the bundled one)")
    ap.add_argument("--per-digit", type=int, default=3, help="corrections per digit class a writer makes (default: 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the choice and rendering of digits (default: 0)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON (default: none)")
    args = ap.parse_args(argv)
    if args.per_digit < 1:
        ap.error("--per-digit must be at least 1")

    everyone = load_pendigits(args.data_dir)
    writers = sorted(parse_writers(args.writers) or {d.writer for d in everyone})
    replay = load_dataset("mnist", args.data_dir, train=True)
    mnist_test = load_dataset("mnist", args.data_dir, train=False)
    parent = Recognizer.load(args.checkpoint)
    print(f"command: python {shlex.join(sys.argv if argv is None else [sys.argv[0], *argv])}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads default")
    print(f"each writer corrects {args.per_digit} digits per class; fine-tuned with hwr.finetune's defaults", flush=True)

    pool = [d for d in everyone if d.writer in writers]
    inputs = model_inputs(parent, pool, args.seed + 1)  # (N, 28, 28)
    labels = [d.label for d in pool]
    parent_right = right(parent, inputs, labels)
    rows: list[dict[str, Any]] = []
    for writer in writers:
        own = [d for d in pool if d.writer == writer]
        corrected, rest = split_own_digits(own, args.per_digit, args.seed)
        measured = {id(d) for d in rest}
        own_rest = np.array([id(d) in measured for d in pool])
        others = np.array([d.writer != writer for d in pool])
        with tempfile.TemporaryDirectory() as tmp:
            store = save_corrections(Path(tmp) / "corrections", corrected, args.seed)
            wall = time.perf_counter()
            result = finetune(args.checkpoint, store.root, args.data_dir, FinetuneConfig(seed=args.seed),
                              replay=replay, mnist_test=mnist_test)
            wall = time.perf_counter() - wall
        tuned_right = right(Recognizer(result.model, result.metadata), inputs, labels)
        row = {
            "writer": writer, "corrections": len(corrected), "own_digits": int(own_rest.sum()),
            "own_wrong_before": int((~parent_right[own_rest]).sum()), "own_wrong_after": int((~tuned_right[own_rest]).sum()),
            "others_digits": int(others.sum()),
            "others_wrong_before": int((~parent_right[others]).sum()), "others_wrong_after": int((~tuned_right[others]).sum()),
            "mnist_before": result.before["mnist_accuracy"], "mnist_after": result.after["mnist_accuracy"],
            "gate_passed": result.gate_passed, "wall_s": round(wall, 1),
        }
        rows.append(row)
        print(f"writer {writer:2d}: {row['corrections']} corrections; wrong among their other {row['own_digits']} digits "
              f"{row['own_wrong_before']} -> {row['own_wrong_after']}, among the other writers' {row['others_digits']} "
              f"{row['others_wrong_before']} -> {row['others_wrong_after']}; MNIST "
              f"{100 * row['mnist_before']:.2f} -> {100 * row['mnist_after']:.2f} %, "
              f"gate {'passed' if row['gate_passed'] else 'FAILED'}, {wall:.1f} s", flush=True)
    n_own = sum(r["own_digits"] for r in rows)
    before, after = sum(r["own_wrong_before"] for r in rows), sum(r["own_wrong_after"] for r in rows)
    print(f"all writers, each after their own corrections: {before} -> {after} of their {n_own} other digits wrong "
          f"({100 * (1 - before / n_own):.2f} -> {100 * (1 - after / n_own):.2f} % right)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
