"""TFLite through LiteRT (``ai-edge-litert``): a 22 MB runtime instead of TensorFlow's 1.9 GB.

An interpreter is not thread-safe, so each worker thread borrows its own from a pool of
``workers`` interpreters; with the pool as large as the worker count a borrow never waits.
"""

from __future__ import annotations

import queue
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.models.backends.base import BackendError, ClassWeights
from app.models.manifest import ModelSpec


def _dequantize(raw: npt.NDArray[Any], detail: dict[str, Any]) -> npt.NDArray[np.float32]:
    # Cast before subtracting: the AIY outputs are uint8 and would wrap around.
    values = raw.astype(np.float32).reshape(-1)
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if scale:
        values = (values - np.float32(zero_point)) * np.float32(scale)
    return values


class TFLiteBackend:
    def __init__(self, path: Path, spec: ModelSpec, *, workers: int, threads: int) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - a packaging error, not a user error
            raise BackendError("ai-edge-litert is not installed") from exc

        self._tensor_name = spec.output_key
        # A classifier may also give its pre-logit features from the same invoke, and its
        # final layer's weights (constants), for the open-set signal (app.models.scope).
        self._features_name = spec.features_tensor
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(workers):
            try:
                with warnings.catch_warnings():
                    # LiteRT warns that preserving tensors is for debugging; reading the
                    # pre-logits of a published classifier is exactly what it is for here.
                    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
                    interpreter = Interpreter(
                        model_path=str(path),
                        num_threads=threads,
                        # Intermediate tensors (pre-logits features) are freed unless preserved.
                        experimental_preserve_all_tensors=(
                            self._tensor_name is not None or self._features_name is not None
                        ),
                    )
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"not a loadable TFLite model: {exc}") from exc
            self._pool.put(interpreter)

        probe = self._pool.get()
        try:
            self._input = probe.get_input_details()[0]
            self._output = self._find_output(probe, self._tensor_name)
            self._features = self._find_output(probe, self._features_name) if self._features_name else None
            self._class_weights = (
                self._read_constant(probe, spec.class_weights_tensor) if spec.class_weights_tensor else None
            )
        finally:
            self._pool.put(probe)

        expected = (1, *spec.input.size, 3)
        if tuple(self._input["shape"]) != expected:
            raise BackendError(f"model input shape {tuple(self._input['shape'])} != manifest {expected}")
        if np.dtype(self._input["dtype"]) != np.dtype(spec.input.dtype):
            raise BackendError(
                f"model input dtype {np.dtype(self._input['dtype'])} != manifest {spec.input.dtype}"
            )
        self._output_dim = int(np.prod(self._output["shape"][1:]))

    @staticmethod
    def _find_output(interpreter: Any, name: str | None) -> dict[str, Any]:
        if name is None:
            return dict(interpreter.get_output_details()[0])
        for detail in interpreter.get_tensor_details():
            if detail["name"] == name:
                return dict(detail)
        raise BackendError(f"no tensor named {name!r} in the model")

    @classmethod
    def _read_constant(cls, interpreter: Any, name: str) -> ClassWeights:
        detail = cls._find_output(interpreter, name)
        raw = np.array(interpreter.get_tensor(detail["index"]))  # a copy: the interpreter owns its buffer
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if raw.ndim != 2:
            raise BackendError(f"class weights {name!r} must be [classes, features], not {raw.shape}")
        return ClassWeights(raw, float(zero_point) if scale else 0.0)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def _dequantize(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return _dequantize(raw, self._output)

    def predict(self, batch: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        return self.predict_with_features(batch)[0]

    @property
    def class_weights(self) -> ClassWeights | None:
        return self._class_weights

    def predict_with_features(
        self, batch: npt.NDArray[np.generic]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        out = np.empty((len(batch), self._output_dim), dtype=np.float32)
        features = None
        if self._features is not None:
            features = np.empty((len(batch), int(np.prod(self._features["shape"][1:]))), dtype=np.float32)
        interpreter = self._pool.get()
        try:
            # The AIY graphs have a fixed batch of 1, and on CPU batching does not speed them up.
            for i, image in enumerate(batch):
                interpreter.set_tensor(self._input["index"], image[np.newaxis])
                interpreter.invoke()
                out[i] = self._dequantize(interpreter.get_tensor(self._output["index"]))
                if features is not None and self._features is not None:
                    features[i] = _dequantize(interpreter.get_tensor(self._features["index"]), self._features)
        finally:
            self._pool.put(interpreter)
        return out, features

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait()
