"""The bad-input campaign: whatever arrives, each target gives an answer or a clear ValueError.

Targets: `preprocess`, `Recognizer.predict`, `Recognizer.read`, and the app's handlers
(`DigitApp.predict`, `DigitApp.save_correction`, `NumberApp.read`, `NumberApp.save_correction`),
which must turn every bad drawing into a message (InvalidDrawingError, shown as a sentence) and
never raise anything else. Inputs: arrays of every numpy dtype with 0 to 4 dimensions, from 0x0 to
10,000 x a few pixels and a whole 10,000 x 10,000, NaN, inf, all ink, one pixel; PIL images in
every mode; truncated, corrupt, empty and non-image files; a decompression bomb; Sketchpad dicts
with missing or wrong keys and values; values that are not images at all.

Each case is counted (tests/campaign.py); pytest prints the totals at the end of the run.
HWR_CAMPAIGN_SCALE=10 runs ten times the examples (RELIABILITY.md).
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from hwr import EmptyDrawingError, Recognizer
from hwr.app_logic import SAVED_MARK, DigitApp, InvalidDrawingError, check_upload
from hwr.corrections import CorrectionStore
from hwr.number_app import NumberApp
from hwr.preprocess import preprocess
from tests.campaign import examples, no_hang, record

SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
MAX_MESSAGE_CHARS = 400  # a message is a sentence or two, never a dump


@pytest.fixture(scope="module")
def recognizer(checkpoint_path: Path) -> Recognizer:
    return Recognizer.load(checkpoint_path)


@pytest.fixture(scope="module")
def apps(recognizer: Recognizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[DigitApp, NumberApp]:
    store = CorrectionStore(tmp_path_factory.mktemp("campaign") / "corrections", classes=recognizer.classes)
    digit_app = DigitApp(recognizer, store)
    return digit_app, NumberApp(digit_app)


# ---------------------------------------------------------------------------------------------
# How each target may answer
# ---------------------------------------------------------------------------------------------


def assert_clear(exc: BaseException) -> None:
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} without a message"
    assert len(message) <= MAX_MESSAGE_CHARS and "Traceback" not in message, message


def library_case(target: str, call: Callable[[], Any]) -> None:
    """A library function: returns, or raises a ValueError (EmptyDrawingError is one) with a message."""
    try:
        with no_hang():
            call()
    except EmptyDrawingError:
        record(target, "empty")
    except ValueError as exc:
        assert_clear(exc)
        record(target, "ValueError")
    else:
        record(target, "answer")


def handler_case(target: str, call: Callable[[], Any]) -> None:
    """An app handler: returns, or raises InvalidDrawingError (the app shows it as a sentence)."""
    try:
        with no_hang():
            result = call()
    except InvalidDrawingError as exc:
        assert_clear(exc)
        record(target, "message")
    else:
        message = getattr(result, "message", None)  # save handlers return an outcome with a message
        if isinstance(message, str):
            assert message.strip() and len(message) <= MAX_MESSAGE_CHARS and "Traceback" not in message, message
            record(target, "saved" if message.startswith(SAVED_MARK) else "message")
        else:
            record(target, "answer")


def every_target(value: Any, recognizer: Recognizer, apps: tuple[DigitApp, NumberApp], label: Any = "3") -> None:
    """One input through every target (as a Sketchpad dict for the handlers when it is an image)."""
    digit_app, number_app = apps
    sketch = value if isinstance(value, dict) else {"background": None, "layers": [], "composite": value}
    library_case("preprocess", lambda: preprocess(value))
    library_case("Recognizer.predict", lambda: recognizer.predict(value))
    library_case("Recognizer.read", lambda: recognizer.read(value))
    handler_case("app: predict", lambda: digit_app.predict(sketch))
    handler_case("app: save_correction", lambda: digit_app.save_correction(sketch, label))
    handler_case("app: read_number", lambda: number_app.read(sketch))
    handler_case("app: save_number_correction", lambda: number_app.save_correction(sketch, label))


# ---------------------------------------------------------------------------------------------
# Arrays: every dtype, 0-4 dimensions, up to 10,000 pixels on a side
# ---------------------------------------------------------------------------------------------

ANY_DTYPE = st.one_of(
    hnp.scalar_dtypes(),  # bool, (u)int8-64, float16-64, complex, datetime64, timedelta64
    hnp.integer_dtypes(endianness=">"),  # big-endian, as from a file
    hnp.floating_dtypes(endianness=">"),
    hnp.byte_string_dtypes(max_len=3),
    hnp.unicode_string_dtypes(max_len=3),
    st.just(np.dtype(object)),
)
SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)
LONG_SIDE = st.integers(9_990, 10_000)  # 10,000 by a few pixels
FEW = st.integers(1, 4)
LONG_SHAPES = st.one_of(
    st.tuples(LONG_SIDE, FEW),
    st.tuples(FEW, LONG_SIDE),
    st.tuples(LONG_SIDE, FEW, st.sampled_from([1, 2, 3, 4])),
    st.tuples(st.sampled_from([1, 3, 4]), FEW, LONG_SIDE),  # channels first
)


def elements_for(dtype: np.dtype) -> st.SearchStrategy:
    if dtype.kind == "O":
        return st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3))
    if dtype.kind == "f":
        return hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)
    return hnp.from_dtype(dtype)


@st.composite
def arbitrary_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(ANY_DTYPE)
    shape = draw(st.one_of(SMALL_SHAPES, SMALL_SHAPES, LONG_SHAPES))
    return draw(hnp.arrays(dtype, shape, elements=elements_for(dtype), fill=elements_for(dtype)))


@settings(max_examples=examples(120), deadline=None, suppress_health_check=SUPPRESS)
@given(arr=arbitrary_arrays())
def test_arbitrary_arrays_through_every_target(recognizer: Recognizer, apps, arr: np.ndarray) -> None:
    every_target(arr, recognizer, apps)


def drawn_digit(size: int = 28, dtype: type = np.uint8) -> np.ndarray:
    """A white canvas with a dark vertical bar: a "1" (values in the dtype's usual range)."""
    img = Image.new("L", (size, size), 255)
    ImageDraw.Draw(img).line([(size // 2, size // 8), (size // 2, size - size // 8)], fill=0, width=max(1, size // 16))
    grey = np.asarray(img)
    if np.dtype(dtype) == np.bool_:
        return grey > 127
    if np.issubdtype(dtype, np.floating):
        return (grey / 255.0).astype(dtype)
    return grey.astype(dtype)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=SUPPRESS)
@given(
    kind=st.sampled_from(["nan", "inf", "-inf", "all ink", "one pixel", "huge values", "negative"]),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    size=st.sampled_from([1, 2, 28, 400, 1500]),
    where=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_special_values_through_every_target(recognizer: Recognizer, apps, kind: str, dtype, size: int, where) -> None:
    arr = drawn_digit(size, dtype)
    r, c = int(where[0] * (size - 1)), int(where[1] * (size - 1))
    if kind in ("nan", "inf", "-inf"):
        arr[r, c] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]
    elif kind == "all ink":
        arr[:] = 0
    elif kind == "one pixel":
        arr[:] = 1
        arr[r, c] = 0
    elif kind == "huge values":
        arr = arr.astype(np.float64) * 1e300
    else:
        arr = arr.astype(np.float64) - 1e6
    every_target(arr, recognizer, apps)


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.uint16])
def test_10000_by_10000_is_read_in_bounded_memory(recognizer: Recognizer, dtype) -> None:
    """A whole 10,000 x 10,000 drawing: read (a "1"), with the work capped by block reduction:
    the extra memory stays far below one float copy of the image (400 MB)."""
    arr = np.zeros((10_000, 10_000), dtype)  # light on dark: a white bar on black
    arr[1_500:8_500, 4_800:5_200] = np.iinfo(dtype).max if dtype != np.bool_ else True
    tracemalloc.start()
    try:
        with no_hang():
            prediction = recognizer.predict(arr)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record("Recognizer.predict", "answer")
    assert prediction.label == "1"
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MB of new memory"


# ---------------------------------------------------------------------------------------------
# PIL images in every mode, and files: truncated, corrupt, empty, not images, bombs
# ---------------------------------------------------------------------------------------------

PIL_MODES = ["1", "L", "P", "I", "I;16", "I;16B", "F", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
             "LA", "La", "PA", "RGBa"]


def bar_in_mode(mode: str, size: int = 200) -> Image.Image:
    """A drawn "1" (dark bar on white) in a PIL mode."""
    grey = Image.fromarray(drawn_digit(size))
    if mode.startswith("I;16"):
        return Image.fromarray(np.asarray(grey).astype(np.uint16) * 257).convert(mode)
    if mode in ("La", "PA"):
        return grey.convert("LA").convert(mode)
    if mode == "RGBa":
        return grey.convert("RGBA").convert(mode)
    return grey.convert(mode)


@pytest.mark.parametrize("mode", PIL_MODES)
def test_every_pil_mode_reads_the_same_digit(recognizer: Recognizer, apps, mode: str) -> None:
    image = bar_in_mode(mode)
    assert image.mode == mode
    assert recognizer.predict(image).label == "1"
    record("Recognizer.predict", "answer")
    every_target(image, recognizer, apps, label="1")


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


GOOD_FILES = {fmt: encoded(bar_in_mode("RGB" if fmt == "JPEG" else "RGBA" if fmt in ("PNG", "WEBP", "TIFF") else "P"), fmt)
              for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")}


@settings(max_examples=examples(100), deadline=None, suppress_health_check=SUPPRESS)
@given(
    fmt=st.sampled_from(sorted(GOOD_FILES)),
    damage=st.sampled_from(["truncate", "flip bytes", "garbage tail"]),
    cut=st.floats(0, 1),
    noise=st.binary(min_size=1, max_size=64),
)
def test_damaged_files_give_a_digit_or_a_clear_error(recognizer: Recognizer, apps, tmp_path: Path, fmt: str,
                                                     damage: str, cut: float, noise: bytes) -> None:
    data = bytearray(GOOD_FILES[fmt])
    at = int(cut * (len(data) - 1))
    if damage == "truncate":
        data = data[:at]
    elif damage == "flip bytes":
        data[at : at + len(noise)] = noise
    else:
        data += noise
    path = tmp_path / f"drawing.{fmt.lower()}"
    path.write_bytes(bytes(data))
    library_case("Recognizer.predict (file bytes)", lambda: recognizer.predict(bytes(data)))
    library_case("Recognizer.predict (file path)", lambda: recognizer.predict(path))
    handler_case("app: check_upload", lambda: check_upload(path))
    every_target(path, recognizer, apps)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=SUPPRESS)
@given(data=st.one_of(st.binary(max_size=2_000), st.text(max_size=200).map(str.encode)))
def test_non_image_bytes_give_a_clear_error(recognizer: Recognizer, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    library_case("Recognizer.predict (file bytes)", lambda: recognizer.predict(data))
    library_case("Recognizer.predict (file path)", lambda: recognizer.predict(path))
    handler_case("app: check_upload", lambda: check_upload(path))


def test_decompression_bomb_is_refused_before_decoding(recognizer: Recognizer, tmp_path: Path) -> None:
    """A 40,000 x 40,000 PNG of a few kB: refused from its header, never decoded (1.6 G pixels)."""
    path = tmp_path / "bomb.png"
    Image.new("1", (40_000, 40_000)).save(path, optimize=True)
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="too large"):
            recognizer.predict(path)
        with pytest.raises(InvalidDrawingError, match="too large"):
            check_upload(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20
    record("Recognizer.predict (file path)", "ValueError")
    record("app: check_upload", "message")


# ---------------------------------------------------------------------------------------------
# Sketchpad dicts with missing or wrong keys, and values that are not drawings at all
# ---------------------------------------------------------------------------------------------

SMALL_IMAGES = st.one_of(
    hnp.arrays(np.uint8, st.sampled_from([(28, 28), (40, 30, 4), (30, 40, 3), (5, 5, 2)])),
    st.just(drawn_digit(64)),
    st.just(np.zeros((400, 400, 4), np.uint8)),
    st.builds(lambda mode: bar_in_mode(mode, 64), st.sampled_from(["1", "L", "P", "RGBA", "CMYK"])),
)
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.binary(max_size=12),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
SKETCH_KEYS = st.sampled_from(["background", "layers", "composite", "id", "Composite", ""])


@st.composite
def sketch_dicts(draw: st.DrawFn) -> dict:
    value = st.one_of(SMALL_IMAGES, JUNK, st.lists(st.one_of(SMALL_IMAGES, JUNK), max_size=3))
    return draw(st.dictionaries(st.one_of(SKETCH_KEYS, st.text(max_size=6)), value, max_size=4))


@settings(max_examples=examples(120), deadline=None, suppress_health_check=SUPPRESS)
@given(sketch=sketch_dicts(), label=st.one_of(JUNK, st.sampled_from(list("0123456789")), st.text(max_size=30)))
def test_sketchpad_dicts_with_missing_or_wrong_keys(recognizer: Recognizer, apps, sketch: dict, label: Any) -> None:
    every_target(sketch, recognizer, apps, label=label)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=SUPPRESS)
@given(value=st.one_of(JUNK, st.lists(JUNK, max_size=4), st.tuples(JUNK, JUNK), st.just(object()), st.just(Ellipsis)))
def test_values_that_are_not_drawings(recognizer: Recognizer, apps, value: Any) -> None:
    every_target(value, recognizer, apps)


def test_the_campaign_store_is_intact(apps) -> None:
    """Whatever the campaign saved (valid drawings with a valid label) is whole."""
    digit_app, _ = apps
    report = digit_app.store.verify()
    assert report.ok, report.summary()
    for sample in digit_app.store.samples():
        assert sample.label in digit_app.classes
