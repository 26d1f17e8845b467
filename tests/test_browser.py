"""The app in a real browser: Debian's Chromium, driven by the PyPI `playwright` package.

Starts `python app.py` (the app_server fixture), draws real pendigits strokes on the Sketchpad,
checks the predictions, then corrects a drawing and finds it on disk; then switches to letters,
draws and corrects letters, and switches back.

Without /usr/bin/chromium ($HWR_CHROMIUM names another), playwright, the model or the pendigits
data, the tests are skipped with a one-line reason, unless HWR_REQUIRE_BROWSER=1 (as `.ci/run`
sets): then they fail, so a green CI always includes the browser test.
Set HWR_SCREENSHOT=path to save a screenshot of the app showing a prediction (README's picture).
Never runs `playwright install`: the browser is the system's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from hwr import Recognizer
from hwr.app_logic import LETTERS_SUBDIR
from hwr.corrections import METADATA_NAME
from hwr.recognizer import DEFAULT_LETTERS_CHECKPOINT

from .conftest import app_checkpoint, find_data_dir

CHROMIUM = Path(os.environ.get("HWR_CHROMIUM") or "/usr/bin/chromium")  # Debian's package
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",  # WebGL still works (software); never pass --disable-webgl: the canvas needs it
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRE_BROWSER = os.environ.get("HWR_REQUIRE_BROWSER") == "1"

CANVAS = 400  # app.CANVAS_SIZE: image pixels of the Sketchpad
BRUSH_PX = 24  # app.BRUSH_RADIUS * 2
HEIGHT_FRAC = 0.6  # digits are drawn 60 % of the canvas tall, centred
PREDICTED_DIGITS = ("7", "0", "4")  # drawn with PointerEvents from JavaScript (fast)
CORRECTED_DIGIT = "2"  # drawn with real mouse moves, then saved as a correction
MIN_OFFLINE_CONFIDENCE = 0.9  # strokes whose offline rendering the model is sure about
TIMEOUT_MS = 30_000

# The brush is picked and the canvas no longer asks for a tool ("select the draw tool to start").
READY_TO_DRAW_JS = """
() => document.querySelector('#sketchpad button[aria-label="Brush"]')?.classList.contains('highlight')
      && !document.querySelector('#sketchpad').innerText.includes('select the draw tool')
"""
PREDICTED_LABEL = '#prediction [data-testid="label-output-value"]'

# Dispatch PointerEvents along strokes (one pointermove per point: the brush joins them with a line).
# Before pointerdown the canvas must see pointerover/pointermove and one animation frame, or the
# first stroke is lost; one frame after pointerdown and after pointerup keeps strokes apart.
DRAW_JS = """
async (strokes) => {
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const fire = (type, x, y, buttons) => {
    const target = document.elementFromPoint(x, y);
    target.dispatchEvent(new PointerEvent(type, {
      bubbles: true, cancelable: true, composed: true, view: window, clientX: x, clientY: y,
      pointerId: 1, pointerType: 'mouse', isPrimary: true, buttons,
      button: type === 'pointermove' ? -1 : 0, pressure: buttons ? 0.5 : 0,
    }));
  };
  for (const stroke of strokes) {
    const [x0, y0] = stroke[0];
    fire('pointerover', x0, y0, 0);
    fire('pointermove', x0, y0, 0);
    await frame();
    fire('pointerdown', x0, y0, 1);
    await frame();
    for (const [x, y] of stroke.slice(1)) fire('pointermove', x, y, 1);
    const [x1, y1] = stroke[stroke.length - 1];
    fire('pointerup', x1, y1, 0);
    await frame();
  }
}
"""


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail when the browser test is required (CI)."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason}; HWR_REQUIRE_BROWSER=1 requires the browser test to run", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------
# Stroke data: pendigits trajectories scaled to the canvas
# ---------------------------------------------------------------------------------------------


def canvas_strokes(strokes: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """Tablet strokes (y up) -> canvas pixel strokes (y down), HEIGHT_FRAC tall, centred.

    The same geometry as `hwr.pendigits.render(canvas_size=(400, 400), height_frac=HEIGHT_FRAC)`.
    """
    points = np.concatenate(strokes)
    lo, hi = points.min(axis=0), points.max(axis=0)
    width, height = np.maximum(hi - lo, 1e-9)
    scale = min(HEIGHT_FRAC * CANVAS / height, (CANVAS - BRUSH_PX - 2) / width)
    centre = (lo + hi) / 2
    return [
        np.stack([CANVAS / 2 + scale * (s[:, 0] - centre[0]), CANVAS / 2 - scale * (s[:, 1] - centre[1])], axis=1)
        for s in strokes
    ]


@pytest.fixture(scope="module")
def stroke_samples(checkpoint_path: Path) -> dict[str, Any]:
    """One pendigits digit per label we draw: the first whose offline rendering the model gets right.

    This tests the browser path (canvas -> Gradio -> preprocessing -> model), not the model's
    accuracy on pendigits: a sample the model misreads even offline would say nothing about the app.
    """
    data_dir = find_data_dir()
    try:
        from hwr.pendigits import load_pendigits, render

        digits = load_pendigits(data_dir)
    except (FileNotFoundError, ImportError) as exc:
        unavailable(f"pendigits strokes not available ({exc})")
    recognizer = Recognizer.load(checkpoint_path)
    chosen: dict[str, Any] = {}
    for digit in digits:
        if digit.label in (*PREDICTED_DIGITS, CORRECTED_DIGIT) and digit.label not in chosen:
            image = render(digit, (CANVAS, CANVAS), height_frac=HEIGHT_FRAC, brush_frac=BRUSH_PX / CANVAS)
            prediction = recognizer.predict(image)
            if prediction.label == digit.label and prediction.confidence >= MIN_OFFLINE_CONFIDENCE:
                chosen[digit.label] = digit
    missing = {*PREDICTED_DIGITS, CORRECTED_DIGIT} - set(chosen)
    assert not missing, f"no pendigits sample the model reads offline for {sorted(missing)}"
    return chosen


# ---------------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)  # autouse: checked before the app server starts
def browser() -> Iterator[Any]:
    if not app_checkpoint().is_file():
        unavailable(f"the app's model {app_checkpoint()} not found (train it, or set HWR_CHECKPOINT)")
    if not CHROMIUM.is_file():
        unavailable(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("browser tests need the playwright package (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(browser: Any, app_server: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_server.url)
    page.wait_for_selector("#sketchpad .pixi-target canvas")
    page.wait_for_function(READY_TO_DRAW_JS)  # the app picks the brush tool itself
    try:
        yield page
    finally:
        context.close()


def to_page(page: Any, stroke: np.ndarray) -> list[list[float]]:
    """Canvas pixels -> page coordinates: the image is centred in the drawing canvas at the zoom shown."""
    box = page.locator("#sketchpad .pixi-target canvas").first.bounding_box()
    zoom = float(page.locator("#sketchpad .zoom-number").inner_text().strip().rstrip("%")) / 100
    x0 = box["x"] + box["width"] / 2 - CANVAS * zoom / 2
    y0 = box["y"] + box["height"] / 2 - CANVAS * zoom / 2
    return [[x0 + x * zoom, y0 + y * zoom] for x, y in stroke]


def draw_with_javascript(page: Any, strokes: list[np.ndarray]) -> None:
    page.evaluate(DRAW_JS, [to_page(page, s) for s in strokes])


def draw_with_mouse(page: Any, strokes: list[np.ndarray], max_points: int = 12) -> None:
    """Real mouse moves (about 0.35 s each), so at most max_points a stroke."""
    for stroke in strokes:
        step = max(1, -(-len(stroke) // max_points))
        points = to_page(page, np.concatenate([stroke[::step], stroke[-1:]]))
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y)
        page.mouse.up()


def predicted_label(page: Any) -> str:
    return page.locator(PREDICTED_LABEL).inner_text().strip()


def wait_for_label(page: Any, expected: str, timeout_s: float = 30.0) -> str:
    """Wait until the prediction shows `expected` and stays so for a second; returns the last label."""
    deadline = time.monotonic() + timeout_s
    label = ""
    while time.monotonic() < deadline:
        label = predicted_label(page)
        if label == expected:
            time.sleep(1.0)  # a prediction for an earlier stroke may still arrive
            label = predicted_label(page)
            if label == expected:
                return label
        time.sleep(0.2)
    return label


def clear(page: Any) -> None:
    """Press Clear (unless nothing is drawn) and wait until the canvas is blank and the brush picked.

    The app's Clear runs the canvas's own clear and picks the brush in one go, before the label
    resets, so "Draw a digit" means both are done.
    """
    if predicted_label(page) == "Draw a digit":
        return
    page.click("#clear-button")
    page.wait_for_function(
        "(s) => document.querySelector(s)?.innerText.includes('Draw a digit')", arg=PREDICTED_LABEL
    )
    page.wait_for_function(READY_TO_DRAW_JS)


def save_screenshot(page: Any, path: str) -> None:
    """The app as it looks now, cropped below its last row of components (README's picture)."""
    page.mouse.move(0, 0)  # no hover highlight
    page.wait_for_function(  # no event still running (its spinner would be in the picture)
        "() => [...document.querySelectorAll('[data-testid=\"status-tracker\"]')]"
        ".every((t) => t.classList.contains('hide'))"
    )
    page.wait_for_function("() => document.querySelector('#model-view img')?.complete")
    bottom = page.evaluate(
        "() => Math.max(...['#sketchpad', '#undo-button', '#message']"
        ".map((s) => document.querySelector(s)?.getBoundingClientRect().bottom ?? 0))"
    )
    width = page.viewport_size["width"]
    page.screenshot(path=path, clip={"x": 0, "y": 0, "width": width, "height": bottom + 24})


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_drawn_digits_are_predicted(page: Any, stroke_samples: dict[str, Any]) -> None:
    assert predicted_label(page) == "Draw a digit"
    for i, label in enumerate(PREDICTED_DIGITS):
        clear(page)
        draw_with_javascript(page, canvas_strokes(stroke_samples[label].strokes))
        assert wait_for_label(page, label) == label, f"drew a {label}"
        if i == 0:  # the Predict button gives the same answer as drawing did
            page.click("#predict-button")
            assert wait_for_label(page, label) == label
        confidences = page.locator("#prediction [data-testid$='-confidence-set']")
        assert confidences.count() == 3
        view = page.locator("#model-view img")
        assert view.count() == 1 and view.get_attribute("src")
        if i == 0 and os.environ.get("HWR_SCREENSHOT"):
            save_screenshot(page, os.environ["HWR_SCREENSHOT"])


def test_correcting_a_drawing_saves_it(page: Any, stroke_samples: dict[str, Any], app_server: Any) -> None:
    folder = app_server.corrections_dir
    metadata = folder / METADATA_NAME
    before = metadata.read_text().splitlines() if metadata.exists() else []
    clear(page)
    draw_with_mouse(page, canvas_strokes(stroke_samples[CORRECTED_DIGIT].strokes))
    assert wait_for_label(page, CORRECTED_DIGIT) == CORRECTED_DIGIT

    page.click("#save-button")  # without a label: a friendly message, nothing saved
    page.wait_for_function("() => document.querySelector('#message').innerText.includes('Pick the right digit')")
    correct_as = "3"  # pretend the model was wrong: this is a 3
    page.locator("#correct-label label", has_text=correct_as).click()
    page.click("#save-button")
    page.wait_for_function("() => document.querySelector('#message').innerText.includes('Saved as')")
    message = page.locator("#message").inner_text()
    assert f"Saved as {correct_as}" in message and f"model said {CORRECTED_DIGIT}" in message
    assert f"{len(before) + 1} correction" in message

    lines = metadata.read_text().splitlines()
    assert len(lines) == len(before) + 1
    saved = json.loads(lines[-1])
    assert saved["label"] == correct_as and saved["predicted"] == CORRECTED_DIGIT
    png = folder / saved["file_name"]
    with Image.open(png) as image:
        assert image.size == (CANVAS, CANVAS)
        ink = np.asarray(image.convert("L")) < 128
    assert 0.01 < ink.mean() < 0.5, "the saved drawing should hold the strokes"

    # Saving clears the canvas and the chosen label, and keeps the brush.
    page.wait_for_function(
        "(s) => document.querySelector(s)?.innerText.includes('Draw a digit')", arg=PREDICTED_LABEL
    )
    page.wait_for_function(READY_TO_DRAW_JS)
    assert page.locator("#correct-label input:checked").count() == 0

    page.click("#undo-button")
    page.wait_for_function("() => document.querySelector('#message').innerText.includes('Removed')")
    assert not png.exists() and len(metadata.read_text().splitlines()) == len(before)


# ---------------------------------------------------------------------------------------------
# The "Digits / Letters" switch: switch to letters, draw letters, correct one (saved under
# <corrections>/letters), switch back to digits
# ---------------------------------------------------------------------------------------------

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
