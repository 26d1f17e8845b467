"""hwr: handwriting recognition you can draw on and teach.

Public API::

    from hwr import Recognizer, EmptyDrawingError
    r = Recognizer.load()      # the bundled digit model
    p = r.predict(image)       # p.label, p.probabilities, p.model_input
"""

from hwr.checkpoint import CheckpointError
from hwr.preprocess import EmptyDrawingError, preprocess
from hwr.recognizer import DEFAULT_CHECKPOINT, Prediction, Recognizer

__all__ = [
    "CheckpointError",
    "DEFAULT_CHECKPOINT",
    "EmptyDrawingError",
    "Prediction",
    "Recognizer",
    "preprocess",
]
