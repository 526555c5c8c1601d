"""What to tell a user whose server has no species index: the exact command that builds one.

The server's readiness answer (``/health/ready``'s ``index_note``) and ``serve``'s log print it.
Kept apart from :mod:`app.services.default_index`, which builds the first-run index, so that the
server can import it without importing the index builder (the import contract in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

# The manifest's offline embedder (the insects model's pre-logits): no download, no TensorFlow.
DEFAULT_EMBEDDER = "aiy_insects_features"
# Relative to the working directory, as INDEX_DIR is: the checkout for `make serve`.
DEFAULT_PHOTOS = Path("../shared/datasets/leedsbutterfly")


def build_command(out: Path, photos: str | Path = "PHOTOS_DIR", embedder: str = DEFAULT_EMBEDDER) -> str:
    return f"python -m app build-index {photos} --out {out} --embedder {embedder}"


def absent_note(out: Path) -> str:
    """The note for an INDEX_DIR without an index (it does not gate readiness)."""
    return (
        f"no species index in {out}: /img_url answers 503 index_unavailable until one is built "
        f"(the classifiers do not need it). Build one from labelled photos (one folder per species, "
        f"or a CSV of path,label[,common_name]): `{build_command(out)}`; or start the server with "
        f"`python -m app serve --default-index auto --photos DIR` (`make serve` does, from "
        f"{DEFAULT_PHOTOS} when it is there). A running server picks a new index up by itself."
    )
