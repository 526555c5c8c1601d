"""Small real models the tests build, with the same contract as the production ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_classifier_savedmodel(path: Path, num_classes: int, size: int = 224, seed: int = 0) -> Path:
    """A SavedModel that takes float32 images in [0, 1] and returns softmax class scores.

    It pools the image on an 8x8 grid before a dense layer, so its answer depends on where
    colours are in the picture: a wrong orientation, channel order or scaling changes it.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    cells = 8
    features = cells * cells * 3

    class GridClassifier(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(rng.normal(0, 4.0, size=(features, num_classes)).astype("float32"))
            self.b = tf.Variable(rng.normal(0, 0.5, size=(num_classes,)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            pooled = tf.nn.avg_pool2d(images, size // cells, size // cells, "VALID")
            flat = tf.reshape(pooled, [-1, features])
            return {"probabilities": tf.nn.softmax(flat @ self.w + self.b)}

    module = GridClassifier()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def build_embedder_savedmodel(path: Path, dim: int = 64, size: int = 299, seed: int = 0) -> Path:
    """A feature-vector SavedModel with the iNat InceptionV3's contract: float32 [N, 299, 299, 3]
    in [0, 1] -> ``feature_vector`` [N, dim]. It pools on a 6x6 grid and projects the colours
    through fixed random weights, so photos that look alike get nearby vectors."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    cells = 6
    pooled_size = cells * cells * 3

    class GridEmbedder(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(rng.normal(0, 1.0, size=(pooled_size, dim)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            pooled = tf.nn.avg_pool2d(images, size // cells, size // cells, "VALID")
            flat = tf.reshape(pooled, [-1, pooled_size]) - 0.5
            return {"feature_vector": tf.nn.relu(flat @ self.w)}

    module = GridEmbedder()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path
