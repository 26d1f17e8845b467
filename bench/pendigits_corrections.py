"""Fill a corrections folder with pendigits digits, as if those writers had corrected the app.

Stand-in corrections for fine-tuning (`python train.py --init-from ... --corrections DIR`), from the
writers given only (so that other writers stay unseen for measuring):

* **digits**: each of their digits rendered `--renders` times as a Digit-mode canvas
  (`random_render`, white: a new canvas size, position and brush each time);
* **number digits**: numbers of 2-6 of their digits drawn with `render_number` (half of them with
  every neighbour touching), split by `hwr.segment.build_lattice`; every candidate that is mostly
  one drawn digit (`hwr.verifier.whole_targets` >= MIN_TARGET: clean cuts, and cuts that keep a
  sliver of a neighbour or lose a bit of the digit, as the app's splits of touching digits do) is
  saved the way the app's Number mode saves a corrected digit (`hwr.number_app.digit_image` of the
  candidate's own ink), labelled with that digit.

    python bench/pendigits_corrections.py --writers 1-12 --renders 3 --numbers 1500 --out /tmp/pd-corrections
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hwr.corrections import CorrectionStore  # noqa: E402
from hwr.number_app import digit_image  # noqa: E402
from hwr.pendigits import load_pendigits, parse_writers, pools_by_writer, random_render, render_number  # noqa: E402
from hwr.preprocess import as_array, to_ink  # noqa: E402
from hwr.segment import build_lattice  # noqa: E402
from hwr.verifier import LENGTHS, whole_targets  # noqa: E402


MIN_TARGET = 0.5  # whole_targets >= this: at least ~72 % of the candidate is one digit, and vice versa, and it holds at most ~28 % of any other digit


def add_number_digits(store: CorrectionStore, digits, n_numbers: int, rng: np.random.Generator) -> int:
    """Save the cleanly cut digits of n_numbers drawn numbers; returns how many were saved."""
    by_writer = pools_by_writer(digits)
    writers = sorted(by_writer)
    saved = 0
    for k in range(n_numbers):
        pool = by_writer[writers[int(rng.integers(len(writers)))]]
        chosen = [pool[int(i)] for i in rng.integers(0, len(pool), int(rng.choice(LENGTHS[1:])))]
        drawing = render_number(chosen, rng, touching=bool(k % 2))
        ink = to_ink(as_array(drawing.image)).ink
        lattice = build_lattice(ink)
        targets, owners = whole_targets(lattice, drawing.owner, return_owner=True)
        for i in np.flatnonzero(targets >= MIN_TARGET):
            digit = chosen[owners[i] - 1]  # the drawn digit that gave most of the candidate's ink
            store.add(digit_image(lattice.candidates[i].ink), digit.label, source="pendigits-number", writer=digit.writer)
            saved += 1
    return saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("HWR_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data"),
                    help="data root (default: $HWR_DATA_DIR, else ../shared/data)")
    ap.add_argument("--writers", default="1-12", help="pendigits writers to take corrections from (default: 1-12)")
    ap.add_argument("--renders", type=int, default=1, help="canvas renders of each single digit (default: 1)")
    ap.add_argument("--numbers", type=int, default=1500, help="numbers to draw and split (default: 1500)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    ap.add_argument("--out", required=True, help="corrections folder to create or add to")
    args = ap.parse_args(argv)
    writers = parse_writers(args.writers)
    digits = [d for d in load_pendigits(args.data_dir) if writers is None or d.writer in writers]
    rng = np.random.default_rng(args.seed)
    store = CorrectionStore(args.out, classes=[str(d) for d in range(10)])
    t0 = time.perf_counter()
    for _ in range(args.renders):
        for d in digits:
            store.add(random_render(d, rng), d.label, source="pendigits", writer=d.writer)
    n_numbers = add_number_digits(store, digits, args.numbers, rng)
    print(f"{args.renders} x {len(digits)} digits + {n_numbers} number digits by writers {args.writers} -> {args.out} "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
