"""SavedModel folders and TF-Hub handles through ``tensorflow_hub``.

TensorFlow is imported here and only here, when the manifest names such a model: it costs
2-6 s and ~600 MiB, which a TFLite-only deployment should not pay. A concrete function is
thread-safe, so the worker threads share one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.models.backends.base import BackendError
from app.models.manifest import ModelSpec


class SavedModelBackend:
    def __init__(self, location: str, spec: ModelSpec) -> None:
        try:
            import tensorflow as tf
            import tensorflow_hub as hub
        except ImportError as exc:
            raise BackendError(
                f"this model needs TensorFlow ({exc}): install the 'tf' extra (pip install '.[tf]'), "
                "or use the tf variant of the image"
            ) from exc
        self._tf = tf
        try:
            self._module = hub.load(location)
        except Exception as exc:  # TF raises many unrelated types for a bad folder
            raise BackendError(f"not a loadable SavedModel: {exc}") from exc

        signatures = getattr(self._module, "signatures", {})
        self._input_key: str | None = None
        if spec.signature in signatures:
            self._fn = signatures[spec.signature]
            _, kwargs = self._fn.structured_input_signature
            if len(kwargs) != 1:
                raise BackendError(f"signature {spec.signature!r} must take one image tensor")
            self._input_key = next(iter(kwargs))
        elif callable(self._module):
            # TF-Hub TF2 modules (e.g. the iNat feature vector) are called directly.
            self._fn = self._module
        else:
            raise BackendError(f"no signature {spec.signature!r} and the module is not callable")
        self._output_key = spec.output_key
        self._dtype = np.dtype(spec.input.dtype)

        # One warm-up call: traces the graph now rather than on the first request, and proves
        # the model accepts the manifest's input.
        height, width = spec.input.size
        probe = self.predict(np.zeros((1, height, width, 3), dtype=self._dtype))
        self._output_dim = int(probe.shape[1])

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def _pick(self, result: Any) -> Any:
        if isinstance(result, dict):
            if self._output_key is not None:
                if self._output_key not in result:
                    raise BackendError(f"no output {self._output_key!r}; has {sorted(result)}")
                return result[self._output_key]
            if len(result) != 1:
                raise BackendError(f"several outputs {sorted(result)}: set output_key")
            return next(iter(result.values()))
        return result

    def predict(self, batch: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        tensor = self._tf.constant(batch.astype(self._dtype, copy=False))
        result = self._fn(**{self._input_key: tensor}) if self._input_key else self._fn(tensor)
        out = np.asarray(self._pick(result), dtype=np.float32)
        return out.reshape(len(batch), -1)

    def close(self) -> None:
        self._fn = None
        self._module = None
