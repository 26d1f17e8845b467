"""The "Digits / Letters" switch in a real browser: switch to letters, draw letters, correct one
(saved under <corrections>/letters), switch back to digits. Same browser and app server as
tests/test_browser.py (skipped, or failing under HWR_REQUIRE_BROWSER=1, for the same reasons)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from hwr.app_logic import LETTERS_SUBDIR
from hwr.corrections import METADATA_NAME
from hwr.recognizer import DEFAULT_LETTERS_CHECKPOINT

from .test_browser import (  # noqa: F401  (fixtures: the browser, and the page of the app)
    PREDICTED_LABEL,
    READY_TO_DRAW_JS,
    browser,
    draw_with_javascript,
    page,
    predicted_label,
    wait_for_label,
)

# Letters drawn as polylines on the 400 px canvas (corner points; the brush joins them).
LETTER_STROKES = {
    "x": [[(130, 100), (270, 300)], [(270, 100), (130, 300)]],
    "n": [[(130, 310), (130, 90), (270, 310), (270, 90)]],  # a capital N: read as "n" (case-insensitive)
}


def polyline(corners: list[tuple[int, int]], step: float = 10.0) -> np.ndarray:
    """Corner points -> points every `step` px along the segments, (N, 2) canvas pixels."""
    points = [np.array(corners[0], float)]
    for a, b in zip(corners[:-1], corners[1:]):
        a, b = np.array(a, float), np.array(b, float)
        n = max(1, int(np.linalg.norm(b - a) / step))
        points += [a + (b - a) * t for t in np.linspace(0, 1, n + 1)[1:]]
    return np.stack(points)


def wait_for_text(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.innerText.includes(t)", arg=[selector, text]
    )


def clear_letters(page: Any) -> None:
    if predicted_label(page) == "Draw a letter":
        return
    page.click("#clear-button")
    wait_for_text(page, PREDICTED_LABEL, "Draw a letter")
    page.wait_for_function(READY_TO_DRAW_JS)


def test_letters_mode_reads_and_corrects_drawn_letters(page: Any, app_server: Any) -> None:
    if not DEFAULT_LETTERS_CHECKPOINT.is_file():
        pytest.skip(f"{DEFAULT_LETTERS_CHECKPOINT} not found: the app has no letters mode")
    page.locator("#mode-switch label", has_text="Letters").click()
    wait_for_text(page, PREDICTED_LABEL, "Draw a letter")
    wait_for_text(page, "#header", "letter recognizer")
    assert page.locator("#correct-label label", has_text="q").count() == 1  # a-z offered
    page.wait_for_function(READY_TO_DRAW_JS)

    for letter, strokes in LETTER_STROKES.items():
        clear_letters(page)
        draw_with_javascript(page, [polyline(s) for s in strokes])
        assert wait_for_label(page, letter) == letter, f"drew {letter}"

    # Correct the last drawing: it goes to the letters store, not the digits one.
    folder = app_server.corrections_dir / LETTERS_SUBDIR
    page.locator("#correct-label label", has_text="h").click()
    page.click("#save-button")
    wait_for_text(page, "#message", "Saved as")
    assert "Saved as h" in page.locator("#message").inner_text()
    saved = json.loads((folder / METADATA_NAME).read_text().splitlines()[-1])
    assert saved["label"] == "h" and saved["predicted"] == "n" and (folder / saved["file_name"]).is_file()
    page.click("#undo-button")
    wait_for_text(page, "#message", "Removed")

    # Back to digits: the digit model, the digit labels.
    page.locator("#mode-switch label", has_text="Digits").click()
    wait_for_text(page, "#header", "digit recognizer")
    wait_for_text(page, PREDICTED_LABEL, "Draw a digit")
    assert page.locator("#correct-label label", has_text="q").count() == 0
