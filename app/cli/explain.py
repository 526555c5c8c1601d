"""explain: where a model looked for its top answer (occlusion saliency), as POST /v1/explain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli
from app.cli.common import fail, open_model, settings
from app.errors import ServiceError


@cli.command()
def explain(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a photo")],
    model: Annotated[str, typer.Option(help="a classifier's manifest name")],
    out: Annotated[Path, typer.Option(help="PNG: the photo under the heat map")],
) -> None:
    """Where the model looked for its top answer: occlusion sensitivity, as POST /v1/explain."""
    import numpy as np

    from app.explain import explain as run

    config = settings()
    with open_model(config, model, "classifier") as classifier:
        try:
            done = run(classifier, image.read_bytes(), config.images.max_pixels, True)
        except ServiceError as exc:
            raise fail(exc.message) from exc
        label = classifier.labels[done.explanation.class_index]
    assert done.png is not None
    out.write_bytes(done.png)
    result = done.explanation
    row, col = np.unravel_index(int(result.grid.argmax()), result.grid.shape)
    typer.echo(
        f"{label.scientific_name} ({result.score:.3f}); hiding the {result.patch}px square at row {row}, "
        f"column {col} of the {result.grid.shape[0]}x{result.grid.shape[1]} grid costs it most "
        f"({float(result.grid.max()):.3f}); wrote {out}"
    )
