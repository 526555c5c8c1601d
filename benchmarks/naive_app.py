"""The baseline for benchmarks/serving.py: a handler in the style of the original service.

Everything happens inside the ``async def`` on the event loop: a blocking download, a full-size
decode, a resize and the model call, one request at a time. Not part of the product.
"""

from __future__ import annotations

import io
import os
import urllib.request

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from fastapi import FastAPI, File, UploadFile
from PIL import Image

MODEL = os.environ["NAIVE_MODEL"]
interpreter = Interpreter(model_path=MODEL)
interpreter.allocate_tensors()
INPUT = interpreter.get_input_details()[0]["index"]
OUTPUT = interpreter.get_output_details()[0]["index"]
app = FastAPI()


@app.post("/bird_url")
async def bird_url(img_url: str | None = None, image: UploadFile | None = File(None)) -> dict[str, object]:
    # Blocking on purpose: this is the baseline being measured.
    data = urllib.request.urlopen(img_url).read() if img_url else await image.read()  # type: ignore[union-attr]  # noqa: ASYNC210
    picture = Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224))
    interpreter.set_tensor(INPUT, np.asarray(picture, np.uint8)[np.newaxis])
    interpreter.invoke()
    scores = interpreter.get_tensor(OUTPUT)[0].astype(np.float32) / 256
    top = int(np.argmax(scores))
    return {"index": top, "score": float(scores[top])}
