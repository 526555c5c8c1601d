"""How a model runs. Each backend turns a batch of preprocessed images into float32 outputs."""

from app.models.backends.base import Backend, BackendError

__all__ = ["Backend", "BackendError"]
