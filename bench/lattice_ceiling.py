"""How much of the whole-number error is the lattice's, and how much the choice's?

For 4-digit numbers drawn the way `bench/multidigit.py` draws them (one writer each, every neighbour
touching or with gaps; not the same drawings, since multidigit draws its 2- and 3-digit numbers
first), three figures per set:

* **split in the lattice**: some path of `hwr.segment.build_lattice`'s candidates has as many
  candidates as drawn digits, each box overlapping its digit with IoU >= 0.5 (multidigit's
  "segmentation right"): the ceiling of segmentation with these cuts;
* **read in the lattice**: such a path also exists with every candidate read right as `read` reads
  it (the digit model's top label; for a piece cut out of touching ink, the digit model together
  with the verifier's naming, `hwr.verifier.read_cut_pieces`): the ceiling of exact match with
  these cuts and these models;
* **read**: what `Recognizer.read` gets (exact match).

The gap between the last two is lost by the choice (`hwr.segment.choose` with the verifier); the
gap between 100 % and the second is the cuts' and the model's.

    python bench/lattice_ceiling.py --writers 13-15 --seed 11 --four 300   # the tuning writers
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from multidigit import IOU_MATCH, default_data_dir, draw_numbers, iou  # noqa: E402

from hwr.pendigits import load_pendigits, parse_writers, pools_by_writer  # noqa: E402
from hwr.preprocess import as_array, to_ink  # noqa: E402
from hwr.segment import Lattice, build_lattice  # noqa: E402
from hwr.verifier import choose_digits  # noqa: E402


def path_exists(lattice: Lattice, boxes, allowed) -> bool:
    """Is there a path of candidates covering every slice once, the i-th overlapping boxes[i]
    (IoU >= IOU_MATCH) and allowed(k, i) for candidate k as the i-th digit?"""
    by_first: dict[int, list[int]] = {}
    for k, c in enumerate(lattice.candidates):
        by_first.setdefault(c.first, []).append(k)
    goal = (len(lattice.slices), len(boxes))
    seen, frontier = {(0, 0)}, [(0, 0)]
    while frontier:
        j, i = frontier.pop()
        if (j, i) == goal:
            return True
        if i == len(boxes):
            continue
        for k in by_first.get(j, []):
            c = lattice.candidates[k]
            state = (c.last, i + 1)
            if state not in seen and iou(c.box, boxes[i]) >= IOU_MATCH and allowed(k, i):
                seen.add(state)
                frontier.append(state)
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data root (default: %(default)s)")
    ap.add_argument("--checkpoint", default=None, help="digit model (default: the bundled one)")
    ap.add_argument("--writers", default="13-15", help="pendigits writers (default: 13-15, the tuning writers)")
    ap.add_argument("--seed", type=int, default=11, help="seed of the digits and the layout (default: 11)")
    ap.add_argument("--four", type=int, default=300, help="4-digit numbers per set (default: 300)")
    args = ap.parse_args(argv)

    import torch

    from hwr import Recognizer

    torch.set_num_threads(1)
    recognizer = Recognizer.load(args.checkpoint)
    pools = pools_by_writer(load_pendigits(args.data_dir), parse_writers(args.writers))
    print(f"command: python {' '.join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; writers {args.writers}, seed {args.seed}")
    t0 = time.perf_counter()
    for touching in (False, True):
        rng = np.random.default_rng([args.seed, int(touching)])  # not multidigit's drawings: it draws 2 and 3 digits first
        split = read_ceiling = read = 0
        for _, drawing in draw_numbers(pools, 4, args.four, touching, rng):
            ink = to_ink(as_array(drawing.image)).ink
            lattice = build_lattice(ink)
            _, probs, readable = recognizer.score_candidates(lattice)
            verifier_probs = recognizer.verifier.probabilities(ink, lattice) if recognizer.verifier else None
            _, probs = choose_digits(lattice, probs, readable, verifier_probs)  # the probabilities read uses
            labels = [recognizer.classes[int(p.argmax())] for p in probs]
            split += path_exists(lattice, drawing.boxes, lambda k, i: True)
            read_ceiling += path_exists(lattice, drawing.boxes, lambda k, i: labels[k] == drawing.label[i])
            read += recognizer.read(drawing.image).text == drawing.label
        name = "touching (every neighbour)" if touching else "gaps (some may touch)"
        n = args.four
        print(f"{name:28s} {n} numbers: split in the lattice {100 * split / n:.2f} %, read in the lattice "
              f"{100 * read_ceiling / n:.2f} %, read {100 * read / n:.2f} %")
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
