"""Reading a collection's source: a folder, a CSV, a Camtrap DP package (the standard's own
example, and a copy of it whose media are the 10 local frames)."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from app.batch.sources import Source, SourceError, read_source
from app.identification.request import MAX_PHOTOS, Place
from tests.support.shared import SHARED

EXAMPLE = SHARED / "datasets" / "camtrap-dp" / "example"
needs_example = pytest.mark.skipif(
    not (SHARED / "datasets" / "camtrap-dp").is_dir(),
    reason=f"{SHARED / 'datasets' / 'camtrap-dp'} not found: the Camtrap DP example is not here",
)
# deployments.csv of the example: deploymentID -> (latitude, longitude)
EXAMPLE_DEPLOYMENTS = {
    "00a2c20d": (51.496, 4.774),
    "29b7d356": (51.181, 5.655),
    "577b543a": (51.184, 5.659),
    "62c200a9": (50.699, 4.013),
}


def _jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (90, 120, 60)).save(path, "JPEG")
    return path


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _ids(source: Source) -> list[str]:
    return [o.id for o in source.observations]


# A folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for rel in ["b.jpg", "a.JPG", "sub/c.png", "sub/deeper/d.webp", "sub/e.jpeg"]:
        _jpeg(root / rel)
    (root / "notes.txt").write_text("not a photo")
    (root / ".hidden.jpg").write_bytes(b"")
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "t.jpg").write_bytes(b"")
    (root / "sub" / "folder.jpg").mkdir()  # a folder named like a photo is not one
    return root


def test_a_folder_is_one_observation_per_photo_sorted_by_relative_path(folder: Path) -> None:
    source = read_source(folder)
    assert source.kind == "folder"
    assert source.root == source.path == folder.resolve()
    assert source.package is None
    assert _ids(source) == ["a.JPG", "b.jpg", "sub/c.png", "sub/deeper/d.webp", "sub/e.jpeg"]
    for observation in source.observations:
        (photo,) = observation.photos
        assert photo.given == observation.id
        assert photo.location == str(folder.resolve() / observation.id)
        assert Path(photo.location).is_absolute() and Path(photo.location).is_file()
        assert not photo.is_url
        assert observation.place is None and observation.date is None


def test_a_folder_grouped_by_folder(folder: Path) -> None:
    source = read_source(folder, group_by="folder")
    assert _ids(source) == [".", "sub", "sub/deeper"]
    assert [[p.given for p in o.photos] for o in source.observations] == [
        ["a.JPG", "b.jpg"],
        ["sub/c.png", "sub/e.jpeg"],
        ["sub/deeper/d.webp"],
    ]


def test_a_folder_of_more_than_max_photos_is_refused_when_grouped_by_folder(tmp_path: Path) -> None:
    for n in range(MAX_PHOTOS + 1):
        _jpeg(tmp_path / "many" / f"{n}.jpg")
    with pytest.raises(SourceError, match=r"folder many holds 6 photos.*--group-by photo"):
        read_source(tmp_path, group_by="folder")
    assert len(read_source(tmp_path).observations) == MAX_PHOTOS + 1


def test_a_folder_without_photos_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no photos here")
    with pytest.raises(SourceError, match="holds no photos"):
        read_source(tmp_path)


def test_event_grouping_is_for_camtrap_dp_only(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="--group-by event is for a Camtrap DP package"):
        read_source(folder, group_by="event")
    table = _write_csv(tmp_path / "c.csv", ["path"], [["a.jpg"]])
    with pytest.raises(SourceError, match="does not apply to a CSV"):
        read_source(table, group_by="event")


def test_a_missing_source_and_an_unknown_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_source(tmp_path / "nowhere")
    other = tmp_path / "list.txt"
    other.write_text("a.jpg\n")
    with pytest.raises(SourceError, match=r"not a source: give a folder of photos, a \.csv"):
        read_source(other)


# A CSV


def test_a_csv_groups_rows_by_observation_with_places_dates_and_taxa(tmp_path: Path) -> None:
    _jpeg(tmp_path / "one.jpg")
    table = _write_csv(
        tmp_path / "collection.csv",
        ["observation", "path", "url", "lat", "lon", "date", "taxon"],
        [
            ["o2", " one.jpg ", "", "48.85", "2.35", "2024-06-01", "Aves"],
            ["o1", "", "https://example.org/a.jpg", "", "", "2024-05-02T10:00:00Z", ""],
            ["o2", "/abs/two.jpg", "", "48.850", "2.35", "", ""],  # blanks take the observation's values
            ["", "", "", "", "", "", ""],
            ["o3", "sub/../three.jpg", "", "", "", "", ""],
        ],
    )
    source = read_source(table)
    assert source.kind == "csv"
    assert source.root == tmp_path.resolve() and source.path == table.resolve()
    assert _ids(source) == ["o2", "o1", "o3"]
    o2, o1, o3 = source.observations
    assert [p.location for p in o2.photos] == [str(tmp_path.resolve() / "one.jpg"), "/abs/two.jpg"]
    assert [p.given for p in o2.photos] == ["one.jpg", "/abs/two.jpg"]
    assert o2.place == Place(48.85, 2.35, dt.date(2024, 6, 1), source="row")
    assert o2.date is None and o2.taxon == "Aves"
    assert o1.photos[0].is_url and o1.photos[0].location == "https://example.org/a.jpg"
    assert o1.place is None and o1.date == "2024-05-02"
    assert o3.photos[0].location == str(tmp_path.resolve() / "three.jpg")
    assert o3.place is None and o3.date is None and o3.taxon is None
    assert source.skipped == ("row 5: no path or url",)


def test_a_csv_without_an_observation_column_is_one_observation_per_row(tmp_path: Path) -> None:
    table = _write_csv(tmp_path / "c.csv", ["Path", "lat", "lon"], [["b.jpg", "1", "2"], ["a.jpg", "", ""]])
    source = read_source(table)
    assert _ids(source) == ["b.jpg", "a.jpg"]  # row order, ids as written
    assert source.observations[0].place == Place(1.0, 2.0, None, source="row")
    table = _write_csv(tmp_path / "d.csv", ["path"], [["a.jpg"], ["a.jpg"]])
    with pytest.raises(SourceError, match=r"row 3: a\.jpg is listed on row 2 too"):
        read_source(table)


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (["observation", "file"], ["o", "a.jpg"], "a CSV needs a path or url column"),
        (["path", "lat", "lon"], ["a.jpg", "north", "2"], r"row 2, lat: 'north' is not a number"),
        (["path", "lat", "lon"], ["a.jpg", "91", "2"], r"row 2, lat: 91 is not within -90 to 90"),
        (["path", "lat", "lon"], ["a.jpg", "1", "-181"], r"row 2, lon: -181 is not within -180 to 180"),
        (["path", "lat", "lon"], ["a.jpg", "1", ""], "row 2: lat without lon"),
        (["path", "lat", "lon"], ["a.jpg", "", "1"], "row 2: lon without lat"),
        (["path", "date"], ["a.jpg", "June 2024"], r"row 2, date: 'June 2024' is not an ISO date"),
        (["url"], ["ftp://example.org/a.jpg"], r"row 2, url: .* is not an http\(s\) address"),
        (["path", "url"], ["a.jpg", "https://example.org/a.jpg"], "row 2: give a path or a url, not both"),
        (["path"], [""], "lists no photos"),
    ],
)
def test_a_csv_with_a_bad_value_is_refused_naming_the_row_and_column(
    tmp_path: Path, header: list[str], row: list[str], message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        read_source(_write_csv(tmp_path / "c.csv", header, [row]))


def test_a_csv_observation_must_agree_and_hold_at_most_max_photos(tmp_path: Path) -> None:
    disagree = _write_csv(
        tmp_path / "a.csv",
        ["observation", "path", "taxon"],
        [["o", "1.jpg", "Aves"], ["o", "2.jpg", "Insecta"]],
    )
    with pytest.raises(SourceError, match="row 3: observation o has taxon Insecta here but Aves on row 2"):
        read_source(disagree)
    rows = [["o", f"{n}.jpg"] for n in range(MAX_PHOTOS + 1)]
    with pytest.raises(SourceError, match=f"observation o has more than {MAX_PHOTOS} photos"):
        read_source(_write_csv(tmp_path / "b.csv", ["observation", "path"], rows))


def test_a_csv_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    table = tmp_path / "excel.csv"
    table.write_text("path,lat,lon\r\na.jpg,1,2\r\n", encoding="utf-8-sig")
    assert _ids(read_source(table)) == ["a.jpg"]


# The standard's Camtrap DP example


@needs_example
def test_the_example_package_is_one_observation_per_media_with_deployment_places() -> None:
    source = read_source(EXAMPLE)
    assert source.kind == "camtrap-dp"
    assert source.package == source.path == (EXAMPLE / "datapackage.json").resolve()
    assert source.root == EXAMPLE.resolve()
    assert len(source.observations) == 423 and source.skipped == ()
    assert {o.deployment_id for o in source.observations} == set(EXAMPLE_DEPLOYMENTS)
    with (EXAMPLE / "media.csv").open(newline="", encoding="utf-8") as fh:
        media = {row["mediaID"]: row for row in csv.DictReader(fh)}
    assert set(_ids(source)) == set(media)
    urls = 0
    for observation in source.observations:
        (photo,) = observation.photos
        row = media[observation.id]
        assert photo.media_id == observation.id and photo.given == row["filePath"]
        assert photo.timestamp == row["timestamp"]
        if photo.is_url:
            urls += 1
            assert photo.location == row["filePath"]
        else:  # the example lists its 10 frames in media/ by a relative filePath
            assert photo.location == str(EXAMPLE.resolve() / row["filePath"])
            assert Path(photo.location).is_file()
        lat, lon = EXAMPLE_DEPLOYMENTS[row["deploymentID"]]
        taken = dt.datetime.fromisoformat(row["timestamp"]).date()
        assert observation.place == Place(lat, lon, taken, source="deployment")
        assert observation.deployment_id == row["deploymentID"] and observation.event_id is None
    assert urls == 413
    # Per deployment (in deployments.csv order), the media in time order.
    order = [
        (o.deployment_id, dt.datetime.fromisoformat(o.photos[0].timestamp or "")) for o in source.observations
    ]
    rank = list(EXAMPLE_DEPLOYMENTS)
    assert order == sorted(order, key=lambda item: (rank.index(item[0] or ""), item[1]))


def _check_events(source: Source, gap: float) -> None:
    previous = None
    for observation in source.observations:
        assert 1 <= len(observation.photos) <= MAX_PHOTOS
        assert observation.event_id == observation.id
        assert observation.id.startswith(f"{observation.deployment_id}-")
        times = [dt.datetime.fromisoformat(p.timestamp or "") for p in observation.photos]
        assert times == sorted(times)
        assert all((b - a).total_seconds() < gap for a, b in itertools.pairwise(times))
        assert observation.event_start == observation.photos[0].timestamp
        assert observation.event_end == observation.photos[-1].timestamp
        if previous is not None and previous.deployment_id == observation.deployment_id:
            last = dt.datetime.fromisoformat(previous.photos[-1].timestamp or "")
            # A new event: a gap at least event_gap, or the previous one was split at MAX_PHOTOS.
            assert (times[0] - last).total_seconds() >= gap or len(previous.photos) == MAX_PHOTOS
            assert times[0] >= last
        previous = observation


@needs_example
def test_the_example_package_grouped_in_events() -> None:
    by_media = read_source(EXAMPLE)
    events = read_source(EXAMPLE, group_by="event")
    # 34 runs of media under 60 s apart; 87 observations once runs over 5 media are split.
    assert len(events.observations) == 87
    _check_events(events, 60.0)
    assert [p.media_id for o in events.observations for p in o.photos] == _ids(by_media)
    assert events.observations[0].id == "00a2c20d-00001"
    ids = _ids(events)
    assert len(set(ids)) == len(ids)
    # A gap under a second keeps only the frames taken in the same second together.
    tight = read_source(EXAMPLE, group_by="event", event_gap=0.5)
    assert len(tight.observations) == 287
    _check_events(tight, 0.5)
    # No gap at all: every media is its own event.
    assert len(read_source(EXAMPLE, group_by="event", event_gap=0).observations) == 423
    assert events.fingerprint != by_media.fingerprint != tight.fingerprint


@needs_example
def test_a_package_with_the_local_frames(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    for name in ["datapackage.json", "deployments.csv", "observations.csv"]:
        shutil.copy(EXAMPLE / name, package / name)
    frames = sorted((EXAMPLE / "media").iterdir())
    assert len(frames) == 10
    shutil.copytree(EXAMPLE / "media", package / "media")
    start = dt.datetime(2021, 4, 11, 20, 43, 9, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    # The first 6 frames 2 s apart, the other 4 from 120 s after the 6th, 2 s apart.
    times = [start + dt.timedelta(seconds=2 * n + (120 if n >= 6 else 0)) for n in range(10)]
    rows = [
        [f"m{n:02d}", "62c200a9", times[n].isoformat(), f"media/{frame.name}", "image/jpeg"]
        for n, frame in enumerate(frames)
    ]
    rows.append(["v01", "62c200a9", start.isoformat(), "media/clip.mp4", "video/mp4"])
    header = ["mediaID", "deploymentID", "timestamp", "filePath", "fileMediatype"]
    _write_csv(package / "media.csv", header, rows)

    source = read_source(package)  # the folder holding datapackage.json is the package
    assert source.kind == "camtrap-dp" and source.path == (package / "datapackage.json").resolve()
    assert _ids(source) == [f"m{n:02d}" for n in range(10)]
    assert source.skipped == ("media row 12 (v01): video/mp4, not a photo",)
    place = Place(50.699, 4.013, dt.date(2021, 4, 11), source="deployment")
    for observation, frame in zip(source.observations, frames, strict=True):
        (photo,) = observation.photos
        assert photo.location == str(package.resolve() / "media" / frame.name)
        assert Path(photo.location).is_file() and not photo.is_url
        assert photo.given == f"media/{frame.name}"
        assert observation.place == place and observation.deployment_id == "62c200a9"
    assert read_source(package / "datapackage.json").fingerprint == source.fingerprint

    events = read_source(package, group_by="event")
    # 6 frames under the gap are one event of 6: split into 5 and 1; then the 4 after the pause.
    assert [[p.media_id for p in o.photos] for o in events.observations] == [
        ["m00", "m01", "m02", "m03", "m04"],
        ["m05"],
        ["m06", "m07", "m08", "m09"],
    ]
    assert _ids(events) == ["62c200a9-00001", "62c200a9-00002", "62c200a9-00003"]
    first, second, third = events.observations
    assert (first.event_start, first.event_end) == (times[0].isoformat(), times[4].isoformat())
    assert (second.event_start, second.event_end) == (times[5].isoformat(), times[5].isoformat())
    assert third.event_start == times[6].isoformat() and third.place == place
    _check_events(events, 60.0)


def _package(tmp_path: Path, media: list[list[str]]) -> Path:
    package = tmp_path / "pkg"
    package.mkdir()
    descriptor = {
        "resources": [
            {"name": "deployments", "path": "deployments.csv"},
            {"name": "media", "path": "media.csv"},
        ]
    }
    (package / "datapackage.json").write_text(json.dumps(descriptor))
    _write_csv(package / "deployments.csv", ["deploymentID", "latitude", "longitude"], [["d1", "10", "20"]])
    _write_csv(
        package / "media.csv", ["mediaID", "deploymentID", "timestamp", "filePath", "fileMediatype"], media
    )
    return package / "datapackage.json"


def test_a_package_without_media_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="the package has no media"):
        read_source(_package(tmp_path, []))


def test_a_media_row_of_an_unknown_deployment_is_refused(tmp_path: Path) -> None:
    descriptor = _package(tmp_path, [["m1", "d2", "2024-01-01T00:00:00Z", "a.jpg", "image/jpeg"]])
    with pytest.raises(
        SourceError, match=r"media row 2 \(m1\): deploymentID d2 is not in the deployments table"
    ):
        read_source(descriptor)


def test_a_package_reads_a_trailing_z_and_refuses_a_bad_timestamp(tmp_path: Path) -> None:
    descriptor = _package(tmp_path, [["m1", "d1", "2024-01-01T23:30:00Z", "a.jpg", "image/jpeg"]])
    (observation,) = read_source(descriptor).observations
    assert observation.place == Place(10.0, 20.0, dt.date(2024, 1, 1), source="deployment")
    _write_csv(
        descriptor.parent / "media.csv",
        ["mediaID", "deploymentID", "timestamp", "filePath", "fileMediatype"],
        [["m1", "d1", "yesterday", "a.jpg", "image/jpeg"]],
    )
    with pytest.raises(SourceError, match=r"media row 2 \(m1\), timestamp: 'yesterday'"):
        read_source(descriptor)
    with pytest.raises(SourceError, match="--group-by folder is for a folder of photos"):
        read_source(descriptor, group_by="folder")


# The fingerprint


def test_the_fingerprint_is_stable_and_tells_sources_apart(folder: Path, tmp_path: Path) -> None:
    first = read_source(folder)
    assert read_source(folder).fingerprint == first.fingerprint
    assert len(first.fingerprint) == 64 and int(first.fingerprint, 16) >= 0
    assert read_source(folder, group_by="folder").fingerprint != first.fingerprint
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert read_source(copy).fingerprint != first.fingerprint  # the same photos elsewhere
    _jpeg(folder / "z.jpg")
    assert read_source(folder).fingerprint != first.fingerprint  # a photo added
    table = _write_csv(tmp_path / "c.csv", ["path"], [["a.jpg"]])
    assert read_source(table).fingerprint == read_source(table).fingerprint != first.fingerprint


def test_a_package_table_outside_its_folder_is_refused(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (tmp_path / "media.csv").write_text("mediaID,deploymentID,timestamp,filePath,fileMediatype\n")
    (package / "deployments.csv").write_text("deploymentID,latitude,longitude\nd1,51,4\n")
    resources = [
        {"name": "deployments", "path": "deployments.csv"},
        {"name": "media", "path": "../media.csv"},
    ]
    (package / "datapackage.json").write_text(json.dumps({"resources": resources}))
    with pytest.raises(SourceError, match="outside the package's folder"):
        read_source(package)
