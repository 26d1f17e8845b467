"""Inference latency of Recognizer.predict on a 400x400 RGBA drawing, split into preprocessing and model,
and predict_batch throughput.

    python bench/inference_latency.py [--threads 1] [--calls 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hwr.pendigits import load_pendigits, render  # noqa: E402
from hwr.recognizer import DEFAULT_CHECKPOINT, Recognizer  # noqa: E402


def stats_ms(samples: list[float]) -> str:
    a = np.array(samples) * 1000
    return f"median {np.median(a):6.2f} ms   p95 {np.percentile(a, 95):6.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("HWR_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data"),
                    help="data root with pendigits/ (default: $HWR_DATA_DIR, else ../shared/data)")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model (default: the bundled one)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--calls", type=int, default=300, help="timed predict calls (default: 300)")
    ap.add_argument("--batch", type=int, default=64, help="predict_batch size for throughput (default: 64)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    r = Recognizer.load(args.checkpoint)
    digits = load_pendigits(args.data_dir)[:50]
    drawings = [render(d, (400, 400), 0.6, 0.04, background="white") for d in digits]  # (400, 400, 4) uint8
    for img in drawings[:10]:  # warm-up
        r.predict(img)
    total, pre, model = [], [], []
    for i in range(args.calls):
        img = drawings[i % len(drawings)]
        t0 = time.perf_counter()
        x = r.preprocess(img)
        t1 = time.perf_counter()
        r.predict_inputs(x[None])
        t2 = time.perf_counter()
        pre.append(t1 - t0)
        model.append(t2 - t1)
        t3 = time.perf_counter()
        r.predict(img)
        total.append(time.perf_counter() - t3)
    batch = (drawings * (args.batch // len(drawings) + 1))[: args.batch]
    r.predict_batch(batch)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        r.predict_batch(batch)
        runs.append(time.perf_counter() - t)
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, {args.threads} thread(s)")
    print(f"predict (400x400 RGBA), {args.calls} calls: {stats_ms(total)}")
    print(f"  preprocessing:                 {stats_ms(pre)}")
    print(f"  model (one 28x28 input):       {stats_ms(model)}")
    print(f"predict_batch({args.batch}): {args.batch / np.median(runs):.0f} drawings/s (median of 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
