"""Reading whole numbers: pendigits digits drawn side by side on one 800x300 canvas.

Each number is 2 to 6 digits by ONE writer (as a person writes a number), drawn with
`hwr.pendigits.render_number`: random sizes within the number (75-100 % of the tallest), baselines
jittered by up to 6 % of a digit's height, one brush of 6-14 % of the digit height, on a white canvas.
Two sets:

* **gaps**: the gap between neighbours' inks is uniform from -5 % (overlap) to 40 % of a nominal
  digit width (0.6 x its height). Most such numbers have no touching digits; those where slanted
  strokes touch anyway are reported apart.
* **touching**: every digit is pushed against its left neighbour until the inks touch, then 0-5 %
  of a digit width further: every neighbour pair is one connected blob of ink.

The digits come from pendigits writers 16-30 by default: the bundled digit model was fine-tuned
on writers 1-12, the digit verifier (hwr/verifier.py) trained on numbers of writers 1-12, and the
segmentation constants were tuned on writers 13-15, so every figure is on people none of it saw.

Each drawing goes through `Recognizer.read`. Reported per set and number length: exact match of the
whole number; segmentation right (as many digits as drawn, and each box overlapping its true digit
with IoU >= 0.5); exact match among those (recognition alone); per-digit accuracy (a drawn digit
counts as right when a box with IoU >= 0.5 covers it and its label is right); and per set, the
writers with most numbers read wrong (one person's style, or everyone's?).

    python bench/multidigit.py                      # bundled model and verifier, writers 16-30, seed 0
    python bench/multidigit.py --verifier none      # the hand-made rules instead of the verifier
    python bench/multidigit.py --checkpoint runs/new.safetensors --json out.json
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
from typing import Any, Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hwr.pendigits import NumberDrawing, PenDigit, load_pendigits, parse_writers, pools_by_writer, render_number  # noqa: E402

log = logging.getLogger("multidigit")

IOU_MATCH = 0.5  # a predicted box "is" a drawn digit when their IoU is at least this


def default_data_dir() -> Path:
    """$HWR_DATA_DIR, else ../shared/data next to the repository."""
    return Path(os.environ.get("HWR_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def score_number(truth_label: str, truth_boxes, text: str, boxes) -> dict[str, Any]:
    """Exact match, segmentation right, and digits right for one drawn number."""
    seg_ok = len(boxes) == len(truth_boxes) and all(
        iou(p, t) >= IOU_MATCH for p, t in zip(boxes, truth_boxes)
    )
    digits_right = 0
    for t_box, t_label in zip(truth_boxes, truth_label):
        matches = [(iou(p, t_box), lab) for p, lab in zip(boxes, text)]
        best = max(matches, default=(0.0, ""))
        digits_right += best[0] >= IOU_MATCH and best[1] == t_label
    return {"exact": text == truth_label, "seg_ok": seg_ok, "digits_right": digits_right}


def draw_numbers(pools: dict[int, list[PenDigit]], n: int, count: int, touching: bool, rng: np.random.Generator) -> Iterator[tuple[int, NumberDrawing]]:
    """`count` numbers of n digits, each by one writer picked at random from `pools`: (writer, drawing)."""
    writer_ids = sorted(pools)
    for _ in range(count):
        writer = writer_ids[int(rng.integers(len(writer_ids)))]
        pool = pools[writer]
        chosen = [pool[int(i)] for i in rng.integers(0, len(pool), n)]
        yield writer, render_number(chosen, rng, touching=touching)


def run_set(recognizer: Any, pools: dict[int, list[PenDigit]], counts: dict[int, int], touching: bool, seed: int) -> list[dict[str, Any]]:
    """Draw and read counts[n] numbers of n digits; one record per number."""
    rng = np.random.default_rng([seed, int(touching)])
    records = []
    for n, count in counts.items():
        t_start = time.perf_counter()
        for writer, drawing in draw_numbers(pools, n, count, touching, rng):
            t0 = time.perf_counter()
            reading = recognizer.read(drawing.image)
            seconds = time.perf_counter() - t0
            rec = score_number(drawing.label, drawing.boxes, reading.text, reading.boxes)
            rec.update(
                n=n, writer=writer, label=drawing.label, text=reading.text, any_touching=any(drawing.touching),
                seconds=seconds, candidates=reading.candidates,
            )
            records.append(rec)
        log.info("%s n=%d: %d numbers in %.1f s", "touching" if touching else "gaps", n, count, time.perf_counter() - t_start)
    return records


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    if n == 0:
        return {"n": 0}
    seg_ok = [r for r in records if r["seg_ok"]]
    digits = sum(r["n"] for r in records)
    return {
        "n": n,
        "exact": sum(r["exact"] for r in records) / n,
        "seg_ok": len(seg_ok) / n,
        "exact_given_seg_ok": (sum(r["exact"] for r in seg_ok) / len(seg_ok)) if seg_ok else float("nan"),
        "per_digit": sum(r["digits_right"] for r in records) / digits,
        "median_ms": 1000 * float(np.median([r["seconds"] for r in records])),
        "median_candidates": float(np.median([r["candidates"] for r in records])),
    }


def report(records_by_set: dict[str, list[dict[str, Any]]], lengths: list[int]) -> dict[str, Any]:
    """Summaries per (subset, length) and for all lengths together."""
    subsets = {
        "gaps, no digits touching": [r for r in records_by_set["gaps"] if not r["any_touching"]],
        "gaps, some digits touching": [r for r in records_by_set["gaps"] if r["any_touching"]],
        "touching (every neighbour)": records_by_set["touching"],
    }
    out: dict[str, Any] = {}
    for name, recs in subsets.items():
        out[name] = {str(n): summarise([r for r in recs if r["n"] == n]) for n in lengths}
        out[name]["all"] = summarise(recs)
    return out


def wrong_by_writer(records_by_set: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, int]]]:
    """Per set, the writers with most numbers read wrong (all lengths): is a miss one person's style?"""
    out = {}
    for name, recs in records_by_set.items():
        total = Counter(r["writer"] for r in recs)
        wrong = Counter(r["writer"] for r in recs if not r["exact"])
        out[name] = [{"writer": w, "numbers": total[w], "wrong": c} for w, c in wrong.most_common(5)]
    return out


def report_text(result: dict[str, Any]) -> str:
    lines = [
        f"command: {result['command']}",
        f"date:    {result['date']}",
        f"machine: {result['machine']}",
        f"checkpoint: {result['checkpoint']}   verifier: {result['verifier']}   seed: {result['seed']}   writers: {result['writers']}   "
        f"threads: {result['threads']}   total {result['seconds']} s",
        "",
        f"{'set':<28} {'digits':>6} {'numbers':>7} {'exact':>8} {'seg right':>9} {'exact|seg':>9} {'per digit':>9} {'ms':>6}",
    ]
    for name, per_len in result["summary"].items():
        for key, s in per_len.items():
            if s["n"] == 0:
                continue
            lines.append(
                f"{name:<28} {key:>6} {s['n']:>7} {100 * s['exact']:7.2f}% {100 * s['seg_ok']:8.2f}% "
                f"{100 * s['exact_given_seg_ok']:8.2f}% {100 * s['per_digit']:8.2f}% {s['median_ms']:6.0f}"
            )
    lines.append("")
    for name, worst in result["wrong_by_writer"].items():
        most = ", ".join(f"writer {w['writer']}: {w['wrong']} of {w['numbers']}" for w in worst) or "none"
        lines.append(f"{name}: most numbers wrong by writer: {most}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data root (default: %(default)s)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint file (default: the bundled model)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the digits and the layout (default: 0)")
    ap.add_argument("--per-length", type=int, default=200, help="numbers of 2, 3, 5 and 6 digits per set (default: 200)")
    ap.add_argument("--four", type=int, default=1000, help="numbers of 4 digits per set (default: 1000)")
    ap.add_argument("--verifier", default=None, metavar="PATH",
                    help="digit-verifier checkpoint, or 'none' for the hand-made rules (default: the bundled one)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, as one app request)")
    ap.add_argument("--writers", default="16-30",
                    help="pendigits writers: 'all' or a range (default: 16-30, whom neither the bundled model "
                         "nor the verifier saw; 13-15 tuned hwr.segment's constants)")
    ap.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="PATH",
        help="also write the results as JSON to PATH (bare --json: JSON on stdout instead of the table)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    pools = pools_by_writer(load_pendigits(args.data_dir), parse_writers(args.writers))
    lengths = [2, 3, 4, 5, 6]
    counts = {n: (args.four if n == 4 else args.per_length) for n in lengths}

    import torch

    from hwr import Recognizer  # lazy: rendering works without the model code

    torch.set_num_threads(args.threads)

    recognizer = Recognizer.load(args.checkpoint)
    if args.verifier == "none":
        recognizer.verifier = None
    elif args.verifier:
        from hwr.verifier import DigitVerifier

        recognizer.verifier = DigitVerifier.load(args.verifier)
    t0 = time.perf_counter()
    records = {
        "gaps": run_set(recognizer, pools, counts, touching=False, seed=args.seed),
        "touching": run_set(recognizer, pools, counts, touching=True, seed=args.seed),
    }
    result: dict[str, Any] = {
        "command": shlex.join([sys.executable, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "checkpoint": args.checkpoint or "bundled",
        "verifier": args.verifier or ("bundled" if recognizer.verifier is not None else "none"),
        "seed": args.seed,
        "writers": args.writers,
        "threads": args.threads,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": report(records, lengths),
        "wrong_by_writer": wrong_by_writer(records),
        "mistakes": [
            {"set": s, "writer": r["writer"], "label": r["label"], "text": r["text"], "seg_ok": r["seg_ok"]}
            for s, recs in records.items() for r in recs if not r["exact"]
        ][:200],
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
