"""Write assets/examples/digit_<d>.png: one real pendigits trajectory per digit, drawn on a canvas.

Each is the first sample (lowest .COMMENT sample number) of writer 1 for that label, rendered with
`hwr.pendigits.render` on a white 400x400 canvas, brush 4 % of the canvas, digit 60 % of its height.

    python bench/make_assets.py [--data-dir DIR] [--out assets/examples]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from PIL import Image  # noqa: E402

from hwr.pendigits import load_pendigits, render  # noqa: E402

log = logging.getLogger("make_assets")

WRITER = 1
CANVAS = (400, 400)
HEIGHT_FRAC = 0.6
BRUSH_FRAC = 0.04


def default_data_dir() -> Path:
    """$HWR_DATA_DIR, else ../shared/data next to the repository."""
    return Path(os.environ.get("HWR_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="data root (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "assets" / "examples", help="output folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    digits = [d for d in load_pendigits(args.data_dir) if d.writer == WRITER]
    args.out.mkdir(parents=True, exist_ok=True)
    for label in "0123456789":
        candidates = sorted((d for d in digits if d.label == label), key=lambda d: d.sample)
        if not candidates:
            raise SystemExit(f"writer {WRITER} has no digit {label}")
        digit = candidates[0]
        rgba = render(digit, canvas_size=CANVAS, height_frac=HEIGHT_FRAC, brush_frac=BRUSH_FRAC, background="white")
        path = args.out / f"digit_{label}.png"
        Image.fromarray(rgba[..., :3], mode="RGB").save(path, optimize=True)
        log.info("%s: writer %d sample %d (file index %d)", path, digit.writer, digit.sample, digit.index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
