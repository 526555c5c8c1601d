"""The Camtrap DP output, checked offline against the standard's own 1.0.2 profile and table
schemas: the standard's example package extended with machine observations (its people's rows
kept byte for byte), a new package from a folder/CSV collection, event-level observations, and
a broken copy that the same check refuses (so that passing it means something)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from app.batch.collection import Observation, Outcome
from app.batch.outputs.camtrap_dp import CamtrapDpError, left_out, write_camtrap_dp
from app.identification.request import Place
from tests.batch.outputs_support import (
    ANSWERED_AT,
    MODELS,
    blank,
    camtrap_dp_errors,
    gbif,
    named,
    outcome,
    photo,
    place,
    result,
    rolled_up,
    table,
    unknown,
)
from tests.support.shared import SHARED

CAMTRAP = SHARED / "datasets" / "camtrap-dp"
EXAMPLE = CAMTRAP / "example"
SCHEMAS = CAMTRAP / "schemas" / "1.0.2"
CREATED = "2024-06-02T08:00:00Z"
pytestmark = pytest.mark.skipif(
    not CAMTRAP.is_dir(),
    reason=f"{CAMTRAP} not found: the Camtrap DP standard's example and schemas are not here",
)

MALLARD = gbif(
    2498112,
    "Anas platyrhynchos",
    lineage=("Animalia", "Chordata", "Aves", "Anseriformes", "Anatidae", "Anas"),
)
BEAVER = gbif(
    2439838, "Castor fiber", lineage=("Animalia", "Chordata", "Mammalia", "Rodentia", "Castoridae", "Castor")
)


def _example_media() -> list[dict[str, str]]:
    return table(EXAMPLE / "media.csv")


def _example_places() -> dict[str, tuple[float, float]]:
    return {
        row["deploymentID"]: (float(row["latitude"]), float(row["longitude"]))
        for row in table(EXAMPLE / "deployments.csv")
    }


def _media_observation(row: dict[str, str]) -> Observation:
    """What the Camtrap DP source makes of one media row (``--group-by photo``)."""
    lat, lon = _example_places()[row["deploymentID"]]
    taken = dt.datetime.fromisoformat(row["timestamp"])
    ref = photo(row["filePath"], media_id=row["mediaID"], timestamp=row["timestamp"])
    return Observation(
        id=row["mediaID"],
        photos=(ref,),
        place=Place(lat, lon, taken.date(), source="deployment"),
        deployment_id=row["deploymentID"],
    )


def _event_observation(rows: list[dict[str, str]], event_id: str) -> Observation:
    """What ``--group-by event`` makes of consecutive media of one deployment."""
    lat, lon = _example_places()[rows[0]["deploymentID"]]
    refs = tuple(photo(r["filePath"], media_id=r["mediaID"], timestamp=r["timestamp"]) for r in rows)
    return Observation(
        id=event_id,
        photos=refs,
        place=Place(lat, lon, dt.datetime.fromisoformat(rows[0]["timestamp"]).date(), source="deployment"),
        deployment_id=rows[0]["deploymentID"],
        event_id=event_id,
        event_start=rows[0]["timestamp"],
        event_end=rows[-1]["timestamp"],
    )


def _deployment_place(observation: Observation) -> dict[str, object]:
    p = observation.place
    assert p is not None and p.date is not None
    return place(p.lat, p.lon, p.date.isoformat(), "deployment")


def _example_outcomes() -> list[Outcome]:
    media = _example_media()
    by_deployment: dict[str, list[dict[str, str]]] = {}
    for row in media:
        by_deployment.setdefault(row["deploymentID"], []).append(row)
    singles = [_media_observation(row) for row in media[:7]]
    answers = [
        named("Anas platyrhynchos", 0.91, common="mallard", taxonomy=MALLARD),  # already in taxonomic
        named("Castor fiber", 0.87, common="Eurasian beaver", taxonomy=BEAVER),  # new to it
        rolled_up(
            "Anas", "genus", 0.85, key=2498129, guesses=[result("Anas strepera", 0.42, taxonomy=MALLARD)]
        ),
        unknown("low_confidence"),
        unknown("out_of_scope"),
        blank(),
        None,  # failed
    ]
    outcomes = [
        outcome(obs, None if a is None else {**a, "place": _deployment_place(obs)})
        for obs, a in zip(singles, answers, strict=True)
    ]
    other = next(rows for deployment, rows in by_deployment.items() if deployment != media[0]["deploymentID"])
    event = _event_observation(other[:3], f"{other[0]['deploymentID']}-00001")
    outcomes.append(
        outcome(
            event,
            {
                **named("Ardea cinerea", 0.97, common="grey heron", photos=3),
                "place": _deployment_place(event),
            },
        )
    )
    return outcomes


def _machine(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in rows if row["classificationMethod"] == "machine"]


# --- the standard's example, extended --------------------------------------------------------


def test_the_standards_example_is_valid_as_it_is(tmp_path: Path) -> None:
    assert camtrap_dp_errors(EXAMPLE, SCHEMAS, tmp_path) == []


def test_the_example_extended_keeps_its_rows_and_adds_machine_observations(tmp_path: Path) -> None:
    outcomes = _example_outcomes()
    out = write_camtrap_dp(
        outcomes,
        tmp_path / "out" / "camtrap-dp",
        package=EXAMPLE / "datapackage.json",
        models=MODELS,
        created=CREATED,
    )
    assert camtrap_dp_errors(out, SCHEMAS, tmp_path) == []

    # Every table of the input untouched: deployments and media whole, observations as a prefix.
    for name in ("deployments.csv", "media.csv"):
        assert (out / name).read_bytes() == (EXAMPLE / name).read_bytes()
    original = (EXAMPLE / "observations.csv").read_bytes()
    assert (out / "observations.csv").read_bytes().startswith(original)
    before, after = table(EXAMPLE / "observations.csv"), table(out / "observations.csv")
    assert len(before) == 549
    assert after[:549] == before

    machine = after[549:]
    assert len(machine) == len(outcomes) - 1  # the failed one has no row
    assert _machine(machine) == machine  # (the example has machine rows of its own too)
    by_id = {row["observationID"]: row for row in machine}
    ids = [o.observation.id for o in outcomes]
    assert set(by_id) == {f"{i}:machine" for i in ids[:6]} | {f"{ids[7]}:machine"}

    types = {i: by_id[f"{i}:machine"]["observationType"] for i in ids[:6]}
    assert list(types.values()) == ["animal", "animal", "animal", "unknown", "unknown", "blank"]
    names = [by_id[f"{i}:machine"]["scientificName"] for i in ids[:6]]
    assert names == ["Anas platyrhynchos", "Castor fiber", "Anas", "", "", ""]
    mallard = by_id[f"{ids[0]}:machine"]
    assert mallard["classifiedBy"] == "aiy_birds_v1 3"
    assert mallard["classificationProbability"] == "0.91"
    assert mallard["classificationTimestamp"] == ANSWERED_AT
    assert mallard["observationLevel"] == "media" and mallard["mediaID"] == ids[0]
    media_row = next(r for r in _example_media() if r["mediaID"] == ids[0])
    assert mallard["deploymentID"] == media_row["deploymentID"]
    # The media's +02:00 timestamp, in UTC as the example's own observations write it.
    stamp = dt.datetime.fromisoformat(media_row["timestamp"]).astimezone(dt.UTC)
    assert mallard["eventStart"] == mallard["eventEnd"] == stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "low_confidence" in by_id[f"{ids[2]}:machine"]["observationComments"]
    assert by_id[f"{ids[3]}:machine"]["observationComments"].startswith(
        "no match (low_confidence); best guess"
    )
    assert by_id[f"{ids[4]}:machine"]["classifiedBy"] == "aiy_birds_v1 3, aiy_insects_v1 2, aiy_plants_v1 1"
    assert by_id[f"{ids[5]}:machine"]["classificationProbability"] == ""

    heron = by_id[f"{ids[7]}:machine"]
    assert heron["observationLevel"] == "event" and heron["mediaID"] == "" and heron["eventID"] == ids[7]
    assert heron["eventStart"] <= heron["eventEnd"]

    descriptor = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    source = json.loads((EXAMPLE / "datapackage.json").read_text(encoding="utf-8"))
    assert descriptor["created"] == CREATED
    assert {k: v for k, v in descriptor.items() if k not in ("created", "taxonomic")} == {
        k: v for k, v in source.items() if k not in ("created", "taxonomic")
    }
    taxonomic = descriptor["taxonomic"]
    assert taxonomic[: len(source["taxonomic"])] == source["taxonomic"]
    added = {t["scientificName"]: t for t in taxonomic[len(source["taxonomic"]) :]}
    assert set(added) == {"Castor fiber", "Anas"}  # the mallard and the heron were there already
    assert added["Castor fiber"] == {
        "scientificName": "Castor fiber",
        "taxonID": "https://www.gbif.org/species/2439838",
        "taxonRank": "species",
        "kingdom": "Animalia",
        "phylum": "Chordata",
        "class": "Mammalia",
        "order": "Rodentia",
        "family": "Castoridae",
        "genus": "Castor",
        "vernacularNames": {"eng": "Eurasian beaver"},
    }
    assert added["Anas"]["taxonRank"] == "genus"
    assert added["Anas"]["taxonID"] == "https://www.gbif.org/species/2498129"
    assert added["Anas"]["family"] == "Anatidae"  # from the guesses' lineage


def test_a_rerun_over_its_own_output_adds_rows_with_new_ids(tmp_path: Path) -> None:
    outcomes = _example_outcomes()
    first = write_camtrap_dp(
        outcomes, tmp_path / "one", package=EXAMPLE / "datapackage.json", models=MODELS, created=CREATED
    )
    second = write_camtrap_dp(
        outcomes, tmp_path / "two", package=first / "datapackage.json", models=MODELS, created=CREATED
    )
    assert camtrap_dp_errors(second, SCHEMAS, tmp_path) == []
    rows = table(second / "observations.csv")
    assert len(rows) == 549 + 2 * 7
    assert rows[-1]["observationID"].endswith(":machine:2")
    taxonomic = json.loads((second / "datapackage.json").read_text(encoding="utf-8"))["taxonomic"]
    assert len(taxonomic) == len({t["scientificName"] for t in taxonomic})


def test_the_check_refuses_a_broken_package(tmp_path: Path) -> None:
    out = write_camtrap_dp(
        _example_outcomes(),
        tmp_path / "camtrap-dp",
        package=EXAMPLE / "datapackage.json",
        models=MODELS,
        created=CREATED,
    )
    # A type outside the vocabulary, a media that does not exist, a time without its offset.
    rows = table(out / "observations.csv")
    header = list(rows[0])
    bad = dict(rows[-2], observationID="bad-1", observationType="cat")
    dangling = dict(rows[-2], observationID="bad-2", mediaID="no-such-media")
    naive = dict(rows[-2], observationID="bad-3", eventStart="2020-05-30T02:57:37")
    with (out / "observations.csv").open("a", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, header, lineterminator="\n").writerows([bad, dangling, naive])
    errors = "\n".join(camtrap_dp_errors(out, SCHEMAS, tmp_path))
    assert "constraint-error" in errors and '"cat"' in errors
    assert "foreign-key" in errors and "no-such-media" in errors
    assert "type-error" in errors and "2020-05-30T02:57:37" in errors

    # A missing required column, and a descriptor without its project.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    with (broken / "media.csv").open(newline="", encoding="utf-8") as fh:
        media = list(csv.reader(fh))
    with (broken / "media.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows([r[:3] + r[4:] for r in media])  # no timestamp
    descriptor = json.loads((broken / "datapackage.json").read_text(encoding="utf-8"))
    del descriptor["project"]
    descriptor["temporal"] = {"start": "not a date", "end": "2021-04-18"}
    (broken / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    errors = "\n".join(camtrap_dp_errors(broken, SCHEMAS, tmp_path))
    assert "media:" in errors and "timestamp" in errors
    assert "'project' is a required property" in errors
    assert "'not a date' is not a 'date'" in errors


# --- a new package: a folder or a CSV --------------------------------------------------------


def _collection(root: Path) -> list[Outcome]:
    gps = place(52.0906, 5.1214, "2024-05-01", "photo")
    row = Place(51.4963, 4.7741, dt.date(2024, 5, 2), source="row")
    row_place = place(row.lat, row.lon, "2024-05-02", "row")
    return [
        # A photo whose EXIF GPS and date gave the place.
        outcome(Observation("a.jpg", (photo("a.jpg", root),)), named(where=gps)),
        # A CSV observation of two photos: an event-level observation.
        outcome(
            Observation("obs-2", (photo("sub/b1.jpg", root), photo("sub/b2.png", root)), place=row),
            named("Ardea cinerea", 0.88, common="grey heron", where=row_place, photos=2),
        ),
        # Same place, an absolute path (not a Camtrap DP filePath) and a blank.
        outcome(Observation("/abs/c.jpg", (photo("/abs/c.jpg"),), place=row), blank(where=row_place)),
        # The same GPS, given with ../ and a rolled-up insect.
        outcome(
            Observation("../d.webp", (photo("../d.webp", root),)),
            rolled_up("Vanessa", "genus", 0.9, key=1898286, where=gps),
        ),
        # An address.
        outcome(
            Observation("https://example.org/e", (photo("https://example.org/e"),), place=row),
            unknown("out_of_scope", where=row_place),
        ),
        # No place at all; a date without coordinates; coordinates without a date; a failure.
        outcome(Observation("f.jpg", (photo("f.jpg", root),)), named()),
        outcome(
            Observation("g.jpg", (photo("g.jpg", root),), date="2024-05-03"),
            named(where=place(None, None, "2024-05-03", None)),
        ),
        outcome(Observation("h.jpg", (photo("h.jpg", root),)), named(where=place(40.0, -3.7, None, "photo"))),
        outcome(Observation("i.jpg", (photo("i.jpg", root),), place=row), None),
    ]


def test_a_new_package_from_a_folder_or_csv_is_valid(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    outcomes = _collection(root)
    out = write_camtrap_dp(outcomes, tmp_path / "camtrap-dp", package=None, models=MODELS, created=CREATED)
    assert camtrap_dp_errors(out, SCHEMAS, tmp_path) == []

    deployments = table(out / "deployments.csv")
    assert [(d["latitude"], d["longitude"]) for d in deployments] == [
        ("52.0906", "5.1214"),
        ("51.4963", "4.7741"),
    ]
    assert deployments[0]["deploymentComments"] == "coordinates from the photos' EXIF GPS"
    assert deployments[1]["deploymentStart"] == "2024-05-02T00:00:00Z"

    media = {m["fileName"]: m for m in table(out / "media.csv")}
    assert set(media) == {"a.jpg", "b1.jpg", "b2.png", "c.jpg", "d.webp", "e"}
    assert media["b1.jpg"]["filePath"] == "sub/b1.jpg"
    assert media["c.jpg"]["filePath"] == "file:///abs/c.jpg"
    assert media["d.webp"]["filePath"] == (tmp_path / "d.webp").as_uri()
    assert media["e"]["filePath"] == "https://example.org/e"
    assert {m["fileMediatype"] for m in media.values()} == {"image/jpeg"}  # the decoded format wins
    assert all(m["filePublic"] == "false" and m["timestamp"].endswith("T00:00:00Z") for m in media.values())
    assert "date only" in media["a.jpg"]["mediaComments"]

    rows = {r["observationID"]: r for r in table(out / "observations.csv")}
    assert set(rows) == {
        f"{i}:machine" for i in ("a.jpg", "obs-2", "/abs/c.jpg", "../d.webp", "https://example.org/e")
    }
    assert rows["a.jpg:machine"]["observationLevel"] == "media"
    assert rows["a.jpg:machine"]["mediaID"] == media["a.jpg"]["mediaID"]
    assert rows["obs-2:machine"]["observationLevel"] == "event"
    assert rows["obs-2:machine"]["eventID"] == "obs-2" and rows["obs-2:machine"]["mediaID"] == ""
    assert [
        rows[f"{i}:machine"]["observationType"]
        for i in ("a.jpg", "/abs/c.jpg", "../d.webp", "https://example.org/e")
    ] == [
        "animal",
        "blank",
        "animal",
        "unknown",
    ]
    assert rows["../d.webp:machine"]["scientificName"] == "Vanessa"

    assert {(o.observation, o.reason) for o in left_out(outcomes, package=None)} == {
        ("f.jpg", "no coordinates (a deployment needs them)"),
        ("g.jpg", "no coordinates (a deployment needs them)"),
        ("h.jpg", "no date or time (media need a timestamp)"),
        ("i.jpg", "failed"),
    }

    descriptor = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    assert descriptor["created"] == CREATED
    assert descriptor["temporal"] == {"start": "2024-05-01", "end": "2024-05-02"}
    assert descriptor["spatial"]["type"] == "Polygon"
    assert descriptor["project"]["observationLevel"] == ["media", "event"]
    assert [t["scientificName"] for t in descriptor["taxonomic"]] == ["Ara macao", "Ardea cinerea", "Vanessa"]
    assert descriptor["taxonomic"][0] == {
        "scientificName": "Ara macao",
        "taxonRank": "species",
        "vernacularNames": {"eng": "Scarlet Macaw"},
    }


def test_a_new_package_of_one_place_is_a_point(tmp_path: Path) -> None:
    obs = Observation("a.jpg", (photo("a.jpg", tmp_path, timestamp="2024-05-01T06:30:00.250+02:00"),))
    answered = named(where=place(-33.9, 18.4, "2024-05-01", "photo"), fmt="PNG")
    out = write_camtrap_dp(
        [outcome(obs, answered)], tmp_path / "camtrap-dp", package=None, models=MODELS, created=CREATED
    )
    assert camtrap_dp_errors(out, SCHEMAS, tmp_path) == []
    descriptor = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    assert descriptor["spatial"] == {"type": "Point", "coordinates": [18.4, -33.9]}
    (media,) = table(out / "media.csv")
    assert media["timestamp"] == "2024-05-01T04:30:00Z" and media["mediaComments"] == ""
    assert media["fileMediatype"] == "image/png"


def test_nothing_placeable_is_an_error_and_the_old_package_stays(tmp_path: Path) -> None:
    out = tmp_path / "camtrap-dp"
    write_camtrap_dp(_collection(tmp_path)[:2], out, package=None, models=MODELS, created=CREATED)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    unplaced = [outcome(Observation("f.jpg", (photo("f.jpg", tmp_path),)), named())]
    with pytest.raises(CamtrapDpError, match="coordinates and a date"):
        write_camtrap_dp(unplaced, out, package=None, models=MODELS, created=CREATED)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_package_missing_a_table_file_is_refused_whole(tmp_path: Path) -> None:
    package = tmp_path / "package"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("media"))
    (package / "deployments.csv").unlink()
    with pytest.raises(CamtrapDpError, match=r"deployments\.csv"):
        write_camtrap_dp(
            _example_outcomes(),
            tmp_path / "camtrap-dp",
            package=package / "datapackage.json",
            models=MODELS,
            created=CREATED,
        )
    assert not (tmp_path / "camtrap-dp").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["package"]


# --- events ----------------------------------------------------------------------------------


def test_event_level_observations_of_the_example(tmp_path: Path) -> None:
    media = _example_media()
    deployment = media[0]["deploymentID"]
    rows = [r for r in media if r["deploymentID"] == deployment]
    events = [
        _event_observation(rows[i : i + 5], f"{deployment}-{n:05d}") for n, i in enumerate((0, 5, 10), 1)
    ]
    answers = [named("Anas platyrhynchos", 0.93, taxonomy=MALLARD, photos=5), unknown(), blank()]
    outcomes = [
        outcome(e, {**a, "place": _deployment_place(e)}) for e, a in zip(events, answers, strict=True)
    ]
    out = write_camtrap_dp(
        outcomes,
        tmp_path / "camtrap-dp",
        package=EXAMPLE / "datapackage.json",
        models=MODELS,
        created=CREATED,
    )
    assert camtrap_dp_errors(out, SCHEMAS, tmp_path) == []
    machine = _machine(table(out / "observations.csv"))[-3:]
    assert [r["observationLevel"] for r in machine] == ["event"] * 3
    assert [r["eventID"] for r in machine] == [e.id for e in events]
    assert all(r["mediaID"] == "" and r["deploymentID"] == deployment for r in machine)
    for row, event in zip(machine, events, strict=True):
        assert event.event_start is not None and event.event_end is not None
        start = dt.datetime.fromisoformat(event.event_start).astimezone(dt.UTC)
        end = dt.datetime.fromisoformat(event.event_end).astimezone(dt.UTC)
        assert (row["eventStart"], row["eventEnd"]) == (
            start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    assert [r["observationType"] for r in machine] == ["animal", "unknown", "blank"]


def test_event_level_observations_in_a_new_package(tmp_path: Path) -> None:
    stamps = ["2024-05-01T06:00:00Z", "2024-05-01T06:00:03Z", "2024-05-01T06:00:07Z"]
    refs = tuple(photo(f"cam/{n}.jpg", tmp_path, timestamp=s) for n, s in enumerate(stamps))
    gps = place(52.0, 5.0, "2024-05-01", "photo")
    event = Observation("cam-00001", refs, event_id="cam-00001", event_start=stamps[0], event_end=stamps[-1])
    out = write_camtrap_dp(
        [outcome(event, named(where=gps, photos=3))],
        tmp_path / "camtrap-dp",
        package=None,
        models=MODELS,
        created=CREATED,
    )
    assert camtrap_dp_errors(out, SCHEMAS, tmp_path) == []
    (row,) = table(out / "observations.csv")
    assert (row["observationLevel"], row["eventID"], row["mediaID"]) == ("event", "cam-00001", "")
    assert (row["eventStart"], row["eventEnd"]) == (stamps[0], stamps[-1])
    (deployment,) = table(out / "deployments.csv")
    assert (deployment["deploymentStart"], deployment["deploymentEnd"]) == (stamps[0], stamps[-1])
    assert len(table(out / "media.csv")) == 3
