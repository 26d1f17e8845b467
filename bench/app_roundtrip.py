"""App round trip: gradio_client /predict against a local app.py, beside the same call against
bench/floor_app.py (a handler that returns a constant: Gradio's own floor), for 1 client and for
16 concurrent clients. Both servers run at the same time, on loopback, and are stopped at the end.

    python bench/app_roundtrip.py [--requests 100] [--clients 16]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(1.0)
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{script} did not start")


def timed_calls(url: str, drawing_path: str, n: int, errors: list[str]) -> list[float]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    payload = {"background": None, "layers": [], "composite": handle_file(drawing_path)}
    client.predict(payload, api_name="/predict")  # warm-up (and upload path)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        try:
            client.predict(payload, api_name="/predict")
        except Exception as exc:  # counted and reported, never hidden
            errors.append(repr(exc))
            continue
        out.append(time.perf_counter() - t)
    return out


def run_clients(url: str, drawing: str, clients: int, per_client: int) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        lat = timed_calls(url, drawing, per_client, errors)
        with lock:
            latencies.extend(lat)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, errors, time.perf_counter() - t


def summary(lat: list[float]) -> tuple[float, float]:
    a = np.array(lat) * 1000
    return float(np.median(a)), float(np.percentile(a, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100, help="requests for the 1-client run (default: 100)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    ap.add_argument("--per-client", type=int, default=20, help="requests per concurrent client (default: 20)")
    args = ap.parse_args(argv)

    drawing = str(REPO_ROOT / "assets" / "examples" / "digit_7.png")
    with tempfile.TemporaryDirectory() as tmp:
        servers = {
            "app.py": start(REPO_ROOT / "app.py", {"HWR_CORRECTIONS_DIR": tmp}),
            "floor": start(REPO_ROOT / "bench" / "floor_app.py", {}),
        }
        try:
            results = {}
            for name, (_, url) in servers.items():
                errors: list[str] = []
                one = timed_calls(url, drawing, args.requests, errors)
                many, errors16, wall = run_clients(url, drawing, args.clients, args.per_client)
                results[name] = (summary(one), summary(many), len(errors) + len(errors16), len(many) / wall)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (client and servers on the same machine)")
    print(f"{'server':8s} {'1 client median/p95 (ms)':>26s} {f'{args.clients} clients median/p95 (ms)':>28s} {'req/s':>7s} errors")
    for name, ((m1, p1), (m16, p16), errs, rps) in results.items():
        print(f"{name:8s} {m1:12.1f} / {p1:8.1f}   {m16:13.1f} / {p16:8.1f}   {rps:7.1f} {errs}")
    (fm1, _), (fm16, _), _, _ = results["floor"]
    (am1, _), (am16, _), _, _ = results["app.py"]
    print(f"model's share over Gradio's floor (median): 1 client {100 * (am1 / fm1 - 1):+.1f} %, "
          f"{args.clients} clients {100 * (am16 / fm16 - 1):+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
