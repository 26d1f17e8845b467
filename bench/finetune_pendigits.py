"""Does fine-tuning on corrections help on *new* people's drawings, without hurting MNIST?

Stand-in corrections: canvas renders (hwr.pendigits.random_render, white canvas) of pendigits digits
by writers 1-15, N per digit, saved through the real CorrectionStore. Measured on: every digit of
writers 16-30 (people the model never saw corrections from), rendered the same way with a fixed
seed, and on the MNIST test set. Fine-tuning is hwr.finetune.finetune with its defaults (the same
code `train.py --init-from` runs).

    python bench/finetune_pendigits.py --data-dir ../shared/data [--per-digit 10 50 100 200]
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

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hwr.corrections import CorrectionStore  # noqa: E402
from hwr.data import load_dataset  # noqa: E402
from hwr.finetune import FinetuneConfig, finetune  # noqa: E402
from hwr.pendigits import load_pendigits, random_render, split_by_writer  # noqa: E402
from hwr.recognizer import DEFAULT_CHECKPOINT, Recognizer  # noqa: E402

CORRECTION_WRITERS = range(1, 16)
TEST_WRITERS = range(16, 31)


def accuracy_on(recognizer: Recognizer, digits, seed: int, batch: int = 256) -> float:
    rng = np.random.default_rng(seed)
    correct = 0
    for i in range(0, len(digits), batch):
        part = digits[i : i + batch]
        preds = recognizer.predict_batch([random_render(d, rng) for d in part])
        correct += sum(p.label == d.label for p, d in zip(preds, part))
    return correct / len(digits)


def build_store(path: Path, digits, per_digit: int, seed: int) -> CorrectionStore:
    store = CorrectionStore(path, classes=[str(d) for d in range(10)])
    rng = np.random.default_rng(seed)
    for label in "0123456789":
        pool = [d for d in digits if d.label == label]
        for i in rng.permutation(len(pool))[:per_digit]:
            store.add(random_render(pool[i], rng), label, source="pendigits", writer=pool[i].writer)
    return store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("HWR_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data"),
                    help="data root (default: $HWR_DATA_DIR, else ../shared/data)")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model to fine-tune (default: the bundled one)")
    ap.add_argument("--per-digit", type=int, nargs="+", default=[10, 50, 100, 200], help="corrections per digit (default: 10 50 100 200)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the choice and rendering of digits (default: 0)")
    ap.add_argument("--replay-ratio", type=float, default=FinetuneConfig.replay_ratio, help=f"(default: {FinetuneConfig.replay_ratio})")
    ap.add_argument("--oversample", type=int, default=FinetuneConfig.oversample, help=f"(default: {FinetuneConfig.oversample})")
    ap.add_argument("--lr", type=float, default=FinetuneConfig.lr, help=f"(default: {FinetuneConfig.lr})")
    ap.add_argument("--epochs", type=int, default=FinetuneConfig.epochs, help=f"(default: {FinetuneConfig.epochs})")
    ap.add_argument("--train-batchnorm", action="store_true", help="update BatchNorm statistics (default: frozen)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON (default: none)")
    args = ap.parse_args(argv)

    digits = load_pendigits(args.data_dir)
    _, correction_pool = split_by_writer(digits, CORRECTION_WRITERS)
    _, test_digits = split_by_writer(digits, TEST_WRITERS)
    replay = load_dataset("mnist", args.data_dir, train=True)
    mnist_test = load_dataset("mnist", args.data_dir, train=False)
    parent = Recognizer.load(args.checkpoint)
    base = accuracy_on(parent, test_digits, args.seed + 1)
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads default")
    print(f"test: {len(test_digits)} digits by writers {TEST_WRITERS.start}-{TEST_WRITERS.stop - 1}; "
          f"corrections from writers {CORRECTION_WRITERS.start}-{CORRECTION_WRITERS.stop - 1}")
    print(f"before: other writers {100 * base:.2f} %", flush=True)
    rows = []
    for n in args.per_digit:
        with tempfile.TemporaryDirectory() as tmp:
            store = build_store(Path(tmp) / "corrections", correction_pool, n, args.seed)
            wall, cpu = time.perf_counter(), time.process_time()
            result = finetune(args.checkpoint, store.root, args.data_dir, FinetuneConfig(
                seed=args.seed, replay_ratio=args.replay_ratio, oversample=args.oversample, lr=args.lr, epochs=args.epochs,
                freeze_batchnorm=not args.train_batchnorm),
                              replay=replay, mnist_test=mnist_test)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = accuracy_on(Recognizer(result.model, result.metadata), test_digits, args.seed + 1)
        row = {
            "corrections": 10 * n, "other_writers_before": base, "other_writers_after": after,
            "mnist_before": result.before["mnist_accuracy"], "mnist_after": result.after["mnist_accuracy"],
            "holdout_before": result.before["holdout_accuracy"], "holdout_after": result.after["holdout_accuracy"],
            "gate_passed": result.gate_passed, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        }
        rows.append(row)
        print(f"{10 * n:5d} corrections: other writers {100 * base:.2f} -> {100 * after:.2f} %, "
              f"MNIST {100 * row['mnist_before']:.2f} -> {100 * row['mnist_after']:.2f} %, "
              f"held-out corrections {100 * row['holdout_before']:.1f} -> {100 * row['holdout_after']:.1f} %, "
              f"gate {'passed' if row['gate_passed'] else 'FAILED'}, {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
