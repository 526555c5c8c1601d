"""/plant_url served from a SavedModel the tests build (the plants_V1 weights are not available
here), with the real 2102-class plants label map."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.support.images import encode, photo
from tests.support.reference import savedmodel_probabilities
from tests.support.shared import HAS_SHARED, SHARED


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_plant_url_matches_the_savedmodel_in_process(client, plants_savedmodel, plant_labels, fmt):
    image = photo(320, 200)  # below 2x224: JPEG draft scaling does not apply, so pixels match exactly
    data = encode(image, fmt, quality=95) if fmt == "JPEG" else encode(image, fmt)
    response = client.post("/plant_url", params={"top_k": 5}, files={"image": (f"x.{fmt.lower()}", data)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "test_plants_savedmodel"

    decoded = Image.open(io.BytesIO(data))
    reference = savedmodel_probabilities(plants_savedmodel, decoded)
    reference[2101] = -1
    expected = list(np.argsort(-reference, kind="stable")[:5])
    assert [r["index"] for r in body["results"]] == expected
    np.testing.assert_allclose(
        [r["score"] for r in body["results"]], reference[expected], rtol=1e-4, atol=1e-6
    )

    names = plant_labels[0].read_text().splitlines()[1:]
    for r in body["results"]:
        assert names[r["index"]] == f"{r['index']},{r['scientific_name']}"


@pytest.mark.skipif(
    not HAS_SHARED, reason="needs the real plants label maps and sunflower photo in ../shared"
)
def test_plant_url_joins_scientific_and_common_names_by_index(client, plant_labels):
    labelmap, common_file = plant_labels
    scientific = [line.split(",", 1)[1] for line in labelmap.read_text().splitlines()[1:]]
    common = []
    for line in common_file.read_text().splitlines():
        common.append(line[line.index(" (") + 2 : -1] if line.endswith(")") else None)
    assert len(scientific) == len(common) == 2102

    path = SHARED / "samples" / "Helianthus_annuus_02.bmp"
    with path.open("rb") as fh:
        body = client.post("/plant_url", params={"top_k": 100}, files={"image": fh}).json()
    assert len(body["results"]) == 100
    for r in body["results"]:
        assert r["index"] != 2101
        assert r["scientific_name"] == scientific[r["index"]]
        assert r["common_name"] == common[r["index"]]
