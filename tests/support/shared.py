"""Where the real models and photos are (../shared), and whether they are there."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.server import REPO

SHARED = Path(os.environ.get("SPECIES_SHARED_DIR", REPO.parent / "shared")).resolve()
MODELS = SHARED / "models"
HAS_SHARED = (MODELS / "aiy_birds_v1" / "model.tflite").is_file()
NO_SHARED = f"{SHARED} not found: tests on the real models and photos are skipped"
