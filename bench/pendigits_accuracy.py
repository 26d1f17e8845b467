"""Accuracy of a Recognizer on real pen trajectories (UCI pendigits) drawn as browser canvases.

Every digit of pendigits-orig.tra (7,494 digits, 30 writers) is rendered with
`hwr.pendigits.random_render`: a black round brush on a white, then on a transparent canvas of
280-800 px, the digit 35-85 % of the canvas height anywhere on it, brush 2-6 % of the canvas.
Both backgrounds use the same seed, hence the same geometry per digit: they differ only in the
background. Reports accuracy per background and per digit, the most frequent confusions, and the
writers with most errors.

    python bench/pendigits_accuracy.py                     # bundled model, all 7,494 digits
    python bench/pendigits_accuracy.py --writers 13-30     # only writers the bundled model never saw
    python bench/pendigits_accuracy.py --n 500 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hwr.pendigits import BACKGROUNDS, PenDigit, load_pendigits, parse_writers, random_render  # noqa: E402

log = logging.getLogger("pendigits_accuracy")

LABELS = "0123456789"


def default_data_dir() -> Path:
    """$HWR_DATA_DIR, else ../shared/data next to the repository."""
    return Path(os.environ.get("HWR_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


def select(digits: list[PenDigit], n: int | None, seed: int) -> list[PenDigit]:
    """All digits, or a seeded random subset of n of them (in file order)."""
    if n is None or n >= len(digits):
        return digits
    keep = np.sort(np.random.default_rng(seed).permutation(len(digits))[:n])
    return [digits[i] for i in keep]


def evaluate(recognizer: Any, digits: list[PenDigit], background: str, seed: int, batch_size: int) -> dict[str, Any]:
    """Render every digit on `background` and predict; accuracy overall and per digit, and the
    writers with most errors (a style one person has, e.g. a long-flagged 1, shows up there)."""
    rng = np.random.default_rng(seed)
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    confusions: Counter[tuple[str, str]] = Counter()
    by_writer: Counter[int] = Counter()
    wrong_by_writer: Counter[int] = Counter()
    render_s = predict_s = 0.0
    for start in range(0, len(digits), batch_size):
        chunk = digits[start : start + batch_size]
        t0 = time.perf_counter()
        images = [random_render(d, rng, background=background) for d in chunk]
        t1 = time.perf_counter()
        preds = recognizer.predict_batch(images)
        t2 = time.perf_counter()
        render_s += t1 - t0
        predict_s += t2 - t1
        for d, p in zip(chunk, preds):
            total[d.label] += 1
            by_writer[d.writer] += 1
            if p.label == d.label:
                correct[d.label] += 1
            else:
                confusions[(d.label, p.label)] += 1
                wrong_by_writer[d.writer] += 1
        log.info("%s: %d/%d", background, min(start + batch_size, len(digits)), len(digits))
    n = sum(total.values())
    return {
        "background": background,
        "n": n,
        "accuracy": sum(correct.values()) / n if n else float("nan"),
        "per_digit": {k: {"n": total[k], "accuracy": correct[k] / total[k]} for k in LABELS if total[k]},
        "top_confusions": [
            {"true": t, "predicted": p, "count": c} for (t, p), c in confusions.most_common(10)
        ],
        "writers_most_wrong": [
            {"writer": w, "n": by_writer[w], "wrong": c} for w, c in wrong_by_writer.most_common(5)
        ],
        "render_seconds": round(render_s, 2),
        "predict_seconds": round(predict_s, 2),
    }


def report_text(result: dict[str, Any]) -> str:
    lines = [
        f"command: {result['command']}",
        f"date:    {result['date']}",
        f"machine: {result['machine']}",
        f"checkpoint: {result['checkpoint']}   seed: {result['seed']}   samples per background: {result['n']}",
        "",
        "background    accuracy   " + " ".join(f"{k:>6}" for k in LABELS),
    ]
    for r in result["backgrounds"]:
        per = " ".join(
            f"{100 * r['per_digit'][k]['accuracy']:6.1f}" if k in r["per_digit"] else f"{'-':>6}" for k in LABELS
        )
        lines.append(f"{r['background']:<12} {100 * r['accuracy']:8.2f} %  {per}")
    lines.append("")
    for r in result["backgrounds"]:
        conf = ", ".join(f"{c['true']}->{c['predicted']} x{c['count']}" for c in r["top_confusions"]) or "none"
        lines.append(
            f"{r['background']}: top confusions (true->predicted): {conf}; "
            f"render {r['render_seconds']} s, predict {r['predict_seconds']} s"
        )
        most = ", ".join(f"writer {w['writer']}: {w['wrong']} of {w['n']}" for w in r["writers_most_wrong"]) or "none"
        lines.append(f"{r['background']}: most errors by writer: {most}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data root (default: %(default)s)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint file (default: the bundled model)")
    ap.add_argument("--n", type=int, default=None, help="samples per background (default: all 7,494)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset and of the render geometry")
    ap.add_argument("--writers", default="all",
                    help="pendigits writers: 'all' or a range such as 13-30 (default: all; the bundled model "
                         "was fine-tuned on writers 1-12, so 13-30 are the unseen ones)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="PATH",
        help="also write the results as JSON to PATH (bare --json: JSON on stdout instead of the table)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.n is not None and args.n < 1:
        ap.error("--n must be positive")

    digits = load_pendigits(args.data_dir)
    writers = parse_writers(args.writers)
    if writers is not None:
        digits = [d for d in digits if d.writer in writers]
    digits = select(digits, args.n, args.seed)

    from hwr import Recognizer  # lazy: rendering works without the model code

    recognizer = Recognizer.load(args.checkpoint)
    result: dict[str, Any] = {
        "command": shlex.join([sys.executable, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "checkpoint": args.checkpoint or "bundled",
        "seed": args.seed,
        "writers": args.writers,
        "n": len(digits),
        "backgrounds": [evaluate(recognizer, digits, bg, args.seed, args.batch_size) for bg in BACKGROUNDS],
    }
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    print(report_text(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
