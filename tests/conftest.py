"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def find_data_dir() -> Path:
    """The data root: $HWR_DATA_DIR, else ../shared/data next to the repository."""
    return Path(os.environ.get("HWR_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data root as a Path; skips the test when it does not exist."""
    path = find_data_dir()
    if not path.is_dir():
        pytest.skip(f"data root {path} not found (set HWR_DATA_DIR to the folder of datasets)")
    return path


# ---------------------------------------------------------------------------------------------
# The Gradio app, running as `python app.py` (tests/test_app.py, tests/test_browser.py)
# ---------------------------------------------------------------------------------------------

APP_START_TIMEOUT_S = 90.0  # generous: a loaded CI machine; an idle one is ready in under 10 s


def app_checkpoint() -> Path:
    """The model the app under test loads: $HWR_CHECKPOINT, else the bundled one."""
    from hwr.recognizer import DEFAULT_CHECKPOINT

    return Path(os.environ.get("HWR_CHECKPOINT") or DEFAULT_CHECKPOINT)


@pytest.fixture(scope="session")
def checkpoint_path() -> Path:
    """The app's model file; skips the test when it does not exist (e.g. not trained yet)."""
    path = app_checkpoint()
    if not path.is_file():
        pytest.skip(f"model {path} not found (train it, or set HWR_CHECKPOINT)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppServer:
    """`python app.py` on a free loopback port, with its own corrections folder and log file."""

    def __init__(self, url: str, corrections_dir: Path, log_path: Path, process) -> None:
        self.url = url
        self.corrections_dir = corrections_dir
        self.log_path = log_path
        self.process = process

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_until_ready(url: str, process, log_path: Path, timeout_s: float) -> None:
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"app.py not ready after {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")


def start_app(root: Path, checkpoint: Path, corrections_dir: Path | None = None, **env_extra: str) -> AppServer:
    """Start `python app.py` on a free loopback port, its files under `root`; wait until it answers.

    `env_extra` adds or overrides environment variables (e.g. HWR_ALLOW_SAVE="0"). Stop it with
    `stop_app`; the caller owns the process.
    """
    import subprocess
    import sys

    root.mkdir(parents=True, exist_ok=True)
    corrections_dir = corrections_dir or root / "corrections"
    port = free_port()
    env = dict(
        os.environ,
        HWR_CHECKPOINT=str(checkpoint),
        HWR_CORRECTIONS_DIR=str(corrections_dir),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(root / "gradio-tmp"),
        PYTHONUNBUFFERED="1",
        **env_extra,
    )
    log_path = root / f"app-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "app.py")],
            cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_ready(url, process, log_path, APP_START_TIMEOUT_S)
    except BaseException:
        stop_app(process)
        raise
    return AppServer(url, corrections_dir, log_path, process)


def stop_app(process) -> None:
    """Terminate an app process (kill it if it does not stop within 10 s)."""
    import subprocess

    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, checkpoint_path: Path):
    """Start `python app.py` once per session; always stopped at the end."""
    server = start_app(tmp_path_factory.mktemp("app_server"), checkpoint_path)
    try:
        yield server
    finally:
        stop_app(server.process)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print how many bad-input cases the campaign tried (tests/campaign.py), and save them as JSON."""
    import json

    from tests import campaign

    totals = campaign.totals()
    if not totals:
        return
    terminalreporter.section("bad-input campaign: cases tried")
    for target, row in totals.items():
        detail = ", ".join(f"{k} {v}" for k, v in row.items() if k != "total")
        terminalreporter.write_line(f"{target:34s} {row['total']:6d}  ({detail})")
    terminalreporter.write_line(f"{'all targets':34s} {sum(r['total'] for r in totals.values()):6d}")
    report = os.environ.get("HWR_CAMPAIGN_REPORT")
    if report:
        Path(report).write_text(json.dumps(totals, indent=1) + "\n")
