"""The request path's tests call ``app.identification`` directly (no HTTP), on the same models,
photos and index as the service tests: their session fixtures (tests/services/conftest.py) are
used here as they are."""

from tests.services.conftest import (  # noqa: F401
    leeds_index,
    leeds_photos,
    leeds_split,
    real_manifest,
    real_registry,
    runner,
    toy_model,
)
