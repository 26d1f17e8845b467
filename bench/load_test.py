"""Load test: many gradio_client users at once against one `python app.py`, predictions and
corrections mixed. Checks that no request fails, that every correction the server confirmed is
stored exactly once (and nothing else is), that the store verifies clean; reports latency.

    python bench/load_test.py [--clients 32] [--requests 50] [--save-share 0.3]

Each drawing is an example digit (assets/examples) with one near-white pixel in its corner that
encodes (client, request), so every saved PNG can be matched to the request that sent it. The app
runs with its own corrections folder in a temporary directory. tests/test_reliability.py runs a
small variant (8 clients x 6 requests) in CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script: the hwr package and bench.app_roundtrip
from hwr.app_logic import SAVED_MARK  # noqa: E402  (how every "saved" message starts)
from hwr.corrections import CorrectionStore  # noqa: E402

EXAMPLES = REPO_ROOT / "assets" / "examples"


def tagged_drawing(digit: int, tag: int) -> Image.Image:
    """Example drawing `digit` with pixel (0, 0) set to a near-white colour that encodes `tag`
    (0..4095); far below the ink threshold, so the model sees the same digit."""
    image = Image.open(EXAMPLES / f"digit_{digit}.png").convert("RGB")
    image.putpixel((0, 0), (255 - tag % 16, 255 - (tag // 16) % 16, 255 - (tag // 256) % 16))
    return image


def pixel_key(image: Image.Image) -> str:
    """A hash of the RGB pixels: the same for the drawing sent and the PNG the store keeps."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(image.convert("RGB"))).tobytes()).hexdigest()


@dataclass
class LoadReport:
    clients: int
    requests_per_client: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"predict": [], "save": []})
    errors: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)  # pixel keys of the saves the server confirmed
    wall_s: float = 0.0

    def percentile(self, kind: str, q: float) -> float:
        values = self.latencies[kind]
        return float(np.percentile(values, q)) if values else float("nan")


def run_load(url: str, clients: int, requests: int, save_share: float, workdir: Path, seed: int = 0) -> LoadReport:
    """`clients` threads, each its own gradio_client.Client, each sending `requests` requests:
    a save (the drawing labelled with its digit) with probability `save_share`, else a predict."""
    from gradio_client import Client, handle_file

    report = LoadReport(clients, requests)
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def user(index: int) -> None:
        rng = np.random.default_rng([seed, index])
        client = Client(url, verbose=False)
        start.wait()
        for i in range(requests):
            tag = index * requests + i
            digit = int(rng.integers(10))
            path = workdir / f"c{index}-{i}.png"
            drawing = tagged_drawing(digit, tag)
            drawing.save(path)
            payload = {"background": None, "layers": [], "composite": handle_file(str(path))}
            kind = "save" if rng.random() < save_share else "predict"
            t = time.perf_counter()
            try:
                if kind == "save":
                    message = client.predict(payload, str(digit), api_name="/save_correction")
                else:
                    label, _ = client.predict(payload, api_name="/predict")
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    report.errors.append(f"{kind}: {exc!r}"[:300])
                continue
            elapsed = time.perf_counter() - t
            with lock:
                report.latencies[kind].append(elapsed)
                if kind == "save":
                    if message.startswith(SAVED_MARK):
                        report.confirmed.append(pixel_key(drawing))
                    else:
                        report.errors.append(f"save not confirmed: {message[:200]}")
                elif not isinstance(label, dict) or label.get("label") is None:
                    report.errors.append(f"predict gave {label!r}"[:300])

    threads = [threading.Thread(target=user, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.wall_s = time.perf_counter() - t0
    return report


def stored_keys(corrections_dir: Path) -> list[str]:
    """The pixel keys of every correction in the store, one per metadata line."""
    store = CorrectionStore(corrections_dir)
    keys = []
    for sample in store.samples():
        with Image.open(sample.path) as image:
            keys.append(pixel_key(image))
    return keys


def check_stored_exactly_once(report: LoadReport, corrections_dir: Path) -> list[str]:
    """Problems with the store after a load run: confirmed saves missing or doubled, extra ones,
    and what `verify` reports. Empty when all is well."""
    from collections import Counter

    stored = Counter(stored_keys(corrections_dir))
    confirmed = Counter(report.confirmed)
    problems = [f"confirmed save stored {stored[k]} times" for k in confirmed if stored[k] != confirmed[k]]
    problems += [f"stored but never confirmed ({n}x)" for k, n in stored.items() if k not in confirmed]
    verdict = CorrectionStore(corrections_dir).verify()
    if not verdict.ok:
        problems.append("verify: " + verdict.summary().replace("\n", "; "))
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32, help="concurrent users (default: 32)")
    ap.add_argument("--requests", type=int, default=50, help="requests per user (default: 50)")
    ap.add_argument("--save-share", type=float, default=0.3, help="share of requests that save a correction (default: 0.3)")
    ap.add_argument("--seed", type=int, default=0, help="which requests save, which digits (default: 0)")
    args = ap.parse_args()

    from bench.app_roundtrip import start

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        corrections = workdir / "corrections"
        proc, url = start(REPO_ROOT / "app.py", {"HWR_CORRECTIONS_DIR": str(corrections),
                                                 "GRADIO_TEMP_DIR": str(workdir / "gradio-tmp")})
        try:
            report = run_load(url, args.clients, args.requests, args.save_share, workdir, args.seed)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        problems = check_stored_exactly_once(report, corrections)

    total = sum(len(v) for v in report.latencies.values()) + len(report.errors)
    print(f"# bench/load_test.py, {dt.date.today()}, {platform.machine()} {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}")
    print("command: python " + " ".join(shlex.quote(a) for a in ["bench/load_test.py", *sys.argv[1:]]))
    print(f"{args.clients} clients x {args.requests} requests = {total} requests in {report.wall_s:.1f} s "
          f"({total / report.wall_s:.1f} a second); server up at the end: {alive}")
    for kind in ("predict", "save"):
        n = len(report.latencies[kind])
        print(f"{kind:8s} {n:5d} ok   median {report.percentile(kind, 50) * 1000:7.0f} ms   "
              f"p95 {report.percentile(kind, 95) * 1000:7.0f} ms   max {max(report.latencies[kind], default=0) * 1000:7.0f} ms")
    print(f"errors: {len(report.errors)}" + "".join(f"\n  {e}" for e in report.errors[:10]))
    print(f"saves confirmed: {len(report.confirmed)}; store check: "
          + ("every confirmed save stored exactly once, nothing else; verify clean" if not problems else "; ".join(problems[:10])))
    sys.exit(1 if report.errors or problems or not alive else 0)


if __name__ == "__main__":
    main()
