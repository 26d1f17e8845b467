"""hwr: handwriting recognition you can draw on and teach.

Public API::

    from hwr import Recognizer, EmptyDrawingError
    r = Recognizer.load()      # the bundled digit model
    p = r.predict(image)       # p.label, p.probabilities, p.model_input
    n = r.read(image)          # a whole number: n.text, n.digits (each with .bbox), n.confidence
                               # (read uses the bundled digit verifier, hwr.verifier.DigitVerifier)
"""

from hwr.checkpoint import CheckpointError
from hwr.preprocess import EmptyDrawingError, preprocess
from hwr.recognizer import DEFAULT_CHECKPOINT, DigitPrediction, Prediction, Reading, Recognizer
from hwr.segment import TooManyPiecesError

__all__ = [
    "CheckpointError",
    "DEFAULT_CHECKPOINT",
    "DigitPrediction",
    "EmptyDrawingError",
    "Prediction",
    "Reading",
    "Recognizer",
    "TooManyPiecesError",
    "preprocess",
]
