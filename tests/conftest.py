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
