"""The Darwin Core Archive output, read back with python-dwca-reader: one occurrence per
observation that names a taxon (a species or a rollup), none for unknown, blank or failed ones,
and a meta.xml that maps every column to its term."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest
from dwca.read import DwCAReader

from app.batch.collection import Observation, Outcome
from app.batch.outputs.darwin_core import OCCURRENCE_TERMS, write_dwca
from app.identification.request import Place
from tests.batch.outputs_support import (
    ANSWERED_AT,
    MODELS,
    blank,
    gbif,
    named,
    outcome,
    photo,
    place,
    result,
    rolled_up,
    unknown,
)

DWC = "http://rs.tdwg.org/dwc/terms/"
CREATED = "2024-06-02T08:00:00Z"
TITLE = "Machine identifications of garden"
ROBIN = gbif(
    2492462,
    "Erithacus rubecula",
    lineage=("Animalia", "Chordata", "Aves", "Passeriformes", "Muscicapidae", "Erithacus"),
)


def _outcomes(root: Path) -> list[Outcome]:
    gps = place(52.0906, 5.1214, "2024-05-01", "photo")
    row = Place(51.4963, 4.7741, dt.date(2024, 5, 2), source="row")
    return [
        outcome(
            Observation("robin", (photo("robin/1.jpg", root), photo("robin/2.jpg", root))),
            named(
                "Erithacus rubecula", 0.9634669, common="European Robin", taxonomy=ROBIN, where=gps, photos=2
            ),
        ),
        outcome(
            Observation("vanessa.jpg", (photo("vanessa.jpg", root),), place=row),
            rolled_up(
                "Vanessa",
                "genus",
                0.85,
                key=1898286,
                guesses=[
                    result(
                        "Vanessa atalanta",
                        0.4,
                        model="aiy_insects_v1",
                        taxonomy=gbif(
                            1898287,
                            "Vanessa atalanta",
                            lineage=(
                                "Animalia",
                                "Arthropoda",
                                "Insecta",
                                "Lepidoptera",
                                "Nymphalidae",
                                "Vanessa",
                            ),
                        ),
                    )
                ],
                where=place(row.lat, row.lon, "2024-05-02", "row"),
            ),
        ),
        # Named, but nowhere known.
        outcome(Observation("https://example.org/p/1", (photo("https://example.org/p/1"),)), named()),
        outcome(
            Observation("unsure.jpg", (photo("unsure.jpg", root),)), unknown("low_confidence", where=gps)
        ),
        outcome(Observation("car.jpg", (photo("car.jpg", root),)), blank(where=gps)),
        outcome(Observation("fish.jpg", (photo("fish.jpg", root),)), unknown("out_of_scope", where=gps)),
        outcome(Observation("gone.jpg", (photo("gone.jpg", root),)), None),
        # A Camtrap DP event: its start/end is the eventDate.
        outcome(
            Observation(
                "00a2c20d-00001",
                (
                    photo("https://x.org/a", media_id="a", timestamp="2020-05-30T04:57:37+02:00"),
                    photo("https://x.org/b", media_id="b", timestamp="2020-05-30T04:57:44+02:00"),
                ),
                place=Place(51.496, 4.774, dt.date(2020, 5, 30), source="deployment"),
                deployment_id="00a2c20d",
                event_id="00a2c20d-00001",
                event_start="2020-05-30T04:57:37+02:00",
                event_end="2020-05-30T04:57:44+02:00",
            ),
            named(
                "Anas platyrhynchos",
                0.9,
                common="mallard",
                where=place(51.496, 4.774, "2020-05-30", "deployment"),
                taxonomy=gbif(2498112, "Anas platyrhynchos", source="gbif", id="2498112"),
            ),
        ),
    ]


def _read(path: Path) -> dict[str, dict[str, Any]]:
    with DwCAReader(str(path)) as archive:
        assert archive.descriptor.core.type == f"{DWC}Occurrence"
        fields = archive.descriptor.core.fields
        assert [f["term"] for f in sorted(fields, key=lambda f: int(f["index"]))] == [
            f"{DWC}{t}" for t in OCCURRENCE_TERMS
        ]
        rows = {}
        for row in archive:
            assert set(row.data) == {f"{DWC}{t}" for t in OCCURRENCE_TERMS}
            rows[row.id] = {key.removeprefix(DWC): value for key, value in row.data.items()}
        return rows


def test_one_occurrence_per_named_taxon(tmp_path: Path) -> None:
    out = write_dwca(
        _outcomes(tmp_path), tmp_path / "out" / "dwca.zip", models=MODELS, created=CREATED, title=TITLE
    )
    assert out == tmp_path / "out" / "dwca.zip"
    rows = _read(out)
    # unknown, blank, out of scope and failed observations are not occurrences
    assert list(rows) == ["robin", "vanessa.jpg", "https://example.org/p/1", "00a2c20d-00001"]
    assert {r["basisOfRecord"] for r in rows.values()} == {"MachineObservation"}
    assert {r["occurrenceID"] for r in rows.values()} == set(rows)

    robin = rows["robin"]
    assert robin["scientificName"] == "Erithacus rubecula"
    assert robin["taxonRank"] == "species"
    assert (robin["kingdom"], robin["class"], robin["family"], robin["genus"]) == (
        "Animalia",
        "Aves",
        "Muscicapidae",
        "Erithacus",
    )
    assert robin["taxonID"] == "https://www.gbif.org/species/2492462"
    assert robin["vernacularName"] == "European Robin"
    assert robin["identifiedBy"] == "aiy_birds_v1 3"
    assert robin["dateIdentified"] == ANSWERED_AT
    assert robin["identificationRemarks"] == "probability 0.963467 from aiy_birds_v1 3 (calibrated)"
    assert (robin["decimalLatitude"], robin["decimalLongitude"], robin["geodeticDatum"]) == (
        "52.0906",
        "5.1214",
        "WGS84",
    )
    assert robin["georeferenceSources"] == "the photo's EXIF GPS"
    assert robin["eventDate"] == "2024-05-01"
    assert robin["associatedMedia"] == "robin/1.jpg | robin/2.jpg"

    vanessa = rows["vanessa.jpg"]
    assert (vanessa["scientificName"], vanessa["taxonRank"]) == ("Vanessa", "genus")
    assert vanessa["taxonID"] == "https://www.gbif.org/species/1898286"
    assert (vanessa["class"], vanessa["family"], vanessa["genus"]) == ("Insecta", "Nymphalidae", "Vanessa")
    assert "low_confidence" in vanessa["identificationRemarks"]
    assert (vanessa["decimalLatitude"], vanessa["decimalLongitude"]) == ("51.4963", "4.7741")
    assert vanessa["eventDate"] == "2024-05-02"

    nowhere = rows["https://example.org/p/1"]
    assert nowhere["scientificName"] == "Ara macao" and nowhere["taxonID"] == ""
    assert nowhere["decimalLatitude"] == nowhere["decimalLongitude"] == nowhere["geodeticDatum"] == ""
    assert nowhere["eventDate"] == ""

    event = rows["00a2c20d-00001"]
    assert event["eventDate"] == "2020-05-30T04:57:37+02:00/2020-05-30T04:57:44+02:00"
    assert event["taxonID"] == "https://www.gbif.org/species/2498112"
    assert event["associatedMedia"] == "https://x.org/a | https://x.org/b"


def test_the_archive_holds_its_three_files_and_a_valid_eml(tmp_path: Path) -> None:
    out = write_dwca(_outcomes(tmp_path), tmp_path / "dwca.zip", models=MODELS, created=CREATED, title=TITLE)
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["eml.xml", "meta.xml", "occurrence.txt"]
        text = archive.read("occurrence.txt").decode("utf-8")
        eml = ET.fromstring(archive.read("eml.xml"))
        meta = ET.fromstring(archive.read("meta.xml"))
    assert text.splitlines()[0].split("\t") == OCCURRENCE_TERMS
    assert len(text.splitlines()) == 1 + 4
    assert eml.tag == "{eml://ecoinformatics.org/eml-2.1.1}eml"
    assert eml.get("packageId") and eml.get("system")
    dataset = eml.find("dataset")
    assert dataset is not None
    assert [child.tag for child in dataset] == [
        "title",
        "creator",
        "pubDate",
        "language",
        "abstract",
        "contact",
    ]
    assert dataset.findtext("title") == TITLE
    assert dataset.findtext("pubDate") == "2024-06-02"
    assert dataset.findtext("creator/organizationName") == "species-id"
    assert "4 occurrences" in (dataset.findtext("abstract/para") or "")
    core = meta.find("{http://rs.tdwg.org/dwc/text/}core")
    assert core is not None and core.get("rowType") == f"{DWC}Occurrence"
    assert core.find("{http://rs.tdwg.org/dwc/text/}id") is not None
    with DwCAReader(str(out)) as reader:
        assert reader.metadata is not None


def test_a_value_with_tabs_or_line_breaks_stays_in_its_column(tmp_path: Path) -> None:
    weird = Observation("odd\tname\n.jpg", (photo("odd\tname\n.jpg", tmp_path),))
    out = write_dwca(
        [outcome(weird, named(common="Scarlet\tMacaw"))],
        tmp_path / "dwca.zip",
        models=MODELS,
        created=CREATED,
        title=TITLE,
    )
    (row,) = _read(out).values()
    assert row["vernacularName"] == "Scarlet Macaw"
    assert row["occurrenceID"] == "odd name .jpg"


def test_an_empty_collection_is_an_archive_without_rows(tmp_path: Path) -> None:
    only_unknown = [outcome(Observation("a.jpg", (photo("a.jpg", tmp_path),)), blank())]
    out = write_dwca(only_unknown, tmp_path / "dwca.zip", models=MODELS, created=CREATED, title=TITLE)
    assert _read(out) == {}


def test_a_rewrite_replaces_the_archive_whole(tmp_path: Path) -> None:
    out = tmp_path / "dwca.zip"
    write_dwca(_outcomes(tmp_path), out, models=MODELS, created=CREATED, title=TITLE)
    write_dwca(_outcomes(tmp_path)[:1], out, models=MODELS, created=CREATED, title=TITLE)
    assert list(_read(out)) == ["robin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dwca.zip"]


@pytest.mark.parametrize(
    ("taxonomy", "expected"),
    [
        (
            {"usageKey": 5, "source": "ncbi", "id": 9606},
            "https://www.ncbi.nlm.nih.gov/Taxonomy/Browser/wwwtax.cgi?id=9606",
        ),
        ({"usageKey": 5, "source": "col", "id": "6MB3T"}, "col:6MB3T"),
        ({"usageKey": 5}, "https://www.gbif.org/species/5"),
        ({"usageKey": 5, "id": "https://example.org/t/1"}, "https://example.org/t/1"),
    ],
)
def test_taxon_ids(taxonomy: dict[str, Any], expected: str) -> None:
    from app.batch.outputs.answer_reading import taxon_id

    assert taxon_id(taxonomy) == expected
