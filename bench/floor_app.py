"""Gradio's own floor: the same /predict input and outputs as app.py, with a handler that returns a
constant. bench/app_roundtrip.py runs it beside the real app so that the model's share shows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hwr.gradio_fixes import make_image_cache_writes_atomic  # noqa: E402

make_image_cache_writes_atomic()  # as app.py does, so both servers share Gradio's fixed floor

CONSTANT_VIEW = np.zeros((224, 224), np.uint8)  # the size of app.py's "what the model sees" image


def predict(sketch: dict | None) -> tuple[dict[str, float], np.ndarray]:
    return {"7": 0.9, "1": 0.05, "2": 0.05}, CONSTANT_VIEW


with gr.Blocks(analytics_enabled=False) as demo:
    sketch = gr.Sketchpad(type="numpy", image_mode="RGBA", canvas_size=(400, 400))
    label = gr.Label(num_top_classes=3)
    view = gr.Image(format="png")  # as app.py's model view
    gr.Button("Predict").click(predict, inputs=sketch, outputs=[label, view], api_name="predict", concurrency_limit=4)

if __name__ == "__main__":
    demo.launch()
