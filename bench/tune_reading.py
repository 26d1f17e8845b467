"""Tune how `Recognizer.read` chooses and reads digits, on the tuning writers only.

Draws numbers exactly as `bench/multidigit.py` does (one writer each, gaps and every-neighbour-touching
sets; `--seeds` are its `--seed`s, one run of each), scores every candidate of every drawing once
(the digit model, the verifier), then replays the choice (`hwr.verifier.choose_digits`) for each
combination of a digit bonus (`hwr.segment.VERIFIED_DIGIT_BONUS`) and a naming weight
(`hwr.verifier.NAMING_WEIGHT`), and prints the exact-match rate of 4-digit numbers per set. The
defaults are how the bundled constants were chosen: writers 13-15 (never the writers 16-30 that
BENCHMARKS.md reports), 300 + 700 numbers of 4 digits per set.

    python bench/tune_reading.py                                    # the bundled models, the default grid
    python bench/tune_reading.py --bonus 1,1.5,2 --naming 0,0.5 --checkpoint runs/new.safetensors
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from multidigit import default_data_dir, draw_numbers  # noqa: E402

from hwr.pendigits import load_pendigits, parse_writers, pools_by_writer  # noqa: E402
from hwr.preprocess import as_array, to_ink  # noqa: E402
from hwr.segment import build_lattice  # noqa: E402

log = logging.getLogger("tune_reading")


def parse_floats(text: str) -> list[float]:
    """"1,1.5,2" -> [1.0, 1.5, 2.0]."""
    return [float(v) for v in text.split(",")]


def score_drawings(recognizer, verifier, pools, seed: int, four: int, per_length: int) -> list[dict]:
    """Draw multidigit's numbers for one seed; per drawing, what the choice needs (scored once)."""
    counts = {n: (four if n == 4 else per_length) for n in (2, 3, 4, 5, 6)}
    out = []
    for touching in (False, True):
        rng = np.random.default_rng([seed, int(touching)])  # as multidigit.run_set
        for n, count in counts.items():
            for _, drawing in draw_numbers(pools, n, count, touching, rng):
                ink = to_ink(as_array(drawing.image)).ink
                lattice = build_lattice(ink)
                _, probs, readable = recognizer.score_candidates(lattice)
                out.append({
                    "set": "touching" if touching else ("gaps, some touching" if any(drawing.touching) else "gaps"),
                    "n": n, "label": drawing.label, "lattice": lattice, "probs": probs, "readable": readable,
                    "verifier_probs": verifier.probabilities(ink, lattice),
                })
    return out


def exact_rates(items: list[dict], bonus: float, naming: float) -> dict[str, tuple[int, float]]:
    """Per set, (4-digit numbers, share read exactly) with this bonus and naming weight."""
    from hwr.verifier import choose_digits

    right: dict[str, list[bool]] = {}
    for it in items:
        if it["n"] != 4:
            continue
        chosen, probs = choose_digits(it["lattice"], it["probs"], it["readable"], it["verifier_probs"], naming, bonus)
        text = "".join(str(int(probs[k].argmax())) for k in chosen)
        right.setdefault(it["set"], []).append(text == it["label"])
    return {s: (len(v), float(np.mean(v))) for s, v in right.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data root (default: %(default)s)")
    ap.add_argument("--checkpoint", default=None, help="digit model (default: the bundled one)")
    ap.add_argument("--verifier", default=None, help="digit verifier (default: the bundled one)")
    ap.add_argument("--writers", default="13-15", help="pendigits writers (default: 13-15, the tuning writers)")
    ap.add_argument("--seeds", default="11,12", help="multidigit --seed of each run (default: 11,12)")
    ap.add_argument("--four", default="300,700", help="4-digit numbers per set, per seed (default: 300,700)")
    ap.add_argument("--per-length", type=int, default=1, help="numbers of 2, 3, 5, 6 digits per set (drawn, not scored; default: 1)")
    ap.add_argument("--bonus", type=parse_floats, default=[1.0, 1.5, 2.0], help="digit bonuses to try (default: 1,1.5,2)")
    ap.add_argument("--naming", type=parse_floats, default=[0.0, 0.5, 1.0], help="naming weights to try (default: 0,0.5,1)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    import torch

    from hwr import Recognizer
    from hwr.verifier import DigitVerifier

    torch.set_num_threads(args.threads)
    recognizer = Recognizer.load(args.checkpoint)
    verifier = DigitVerifier.load(args.verifier) if args.verifier else recognizer.verifier
    pools = pools_by_writer(load_pendigits(args.data_dir), parse_writers(args.writers))
    t0 = time.perf_counter()
    items = []
    for seed, four in zip((int(s) for s in args.seeds.split(",")), (int(f) for f in args.four.split(","))):
        items += score_drawings(recognizer, verifier, pools, seed, four, args.per_length)
        log.info("seed %d scored (%.0f s)", seed, time.perf_counter() - t0)
    print(f"command: python {shlex.join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; checkpoint {args.checkpoint or 'bundled'}, "
          f"verifier {args.verifier or 'bundled'}, writers {args.writers}; {time.perf_counter() - t0:.0f} s to score")
    print("4-digit numbers read exactly:")
    for bonus, naming in itertools.product(args.bonus, args.naming):
        rates = exact_rates(items, bonus, naming)
        print(f"  bonus {bonus:<4g} naming {naming:<4g} " + "   ".join(
            f"{name} {100 * rate:6.2f} % of {n}" for name, (n, rate) in sorted(rates.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
