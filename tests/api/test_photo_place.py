"""Where and when from the photo itself, on the API: a photo's EXIF GPS (and DateTimeOriginal)
is the place wherever the request gives none, on /v1/identify and on the classifier endpoints'
geo steering; ``place.source`` says which; ``use_photo_metadata=false`` turns it off; broken
EXIF is ignored and said, never an error; and no coordinate reaches the server's log. Real
camera files (../shared/datasets/exif-samples), the real models, a real server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL.TiffImagePlugin import IFDRational as R

from tests.api.test_identify import identify_manifest
from tests.imaging.test_photo_metadata import dms, jpeg_with
from tests.support.env import service_env
from tests.support.server import ServiceProcess, free_port
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

SAMPLES = SHARED / "datasets" / "exif-samples"
TUSCANY = SAMPLES / "gps" / "DSCN0010.jpg"  # N 43.4674, E 11.8851, 2008-10-22
NOKIA = SAMPLES / "mobile" / "HMD_Nokia_8.3_5G.jpg"  # N 60.1467, E 24.9068, 2022-08-14
JOLLA = SAMPLES / "mobile" / "jolla.jpg"  # a date, no GPS
BROKEN = sorted((SAMPLES / "tests").glob("*.*")) + sorted((SAMPLES / "invalid").glob("*.jpg"))
GIVEN = (12.345678, 98.765432)  # a place no photo has, to look for in the log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[ServiceProcess]:
    if not TUSCANY.is_file():
        pytest.skip(f"{SAMPLES} not found: the EXIF samples are needed")
    manifest = identify_manifest(tmp_path_factory.mktemp("photo-place"))
    port = free_port()
    # As it runs in production (`python -m app serve`): uvicorn's access log on, at INFO.
    serve = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = service_env(manifest, SERVER_LOG_LEVEL="info")
    proc = ServiceProcess(env, artifacts / "photo-place-service.log", serve, port).start()
    yield proc
    proc.stop()


def post(server: ServiceProcess, path: str, photo: Path, **params: Any) -> httpx.Response:
    files = [("image", (photo.name, photo.read_bytes(), "application/octet-stream"))]
    return httpx.post(f"{server.base_url}{path}", params=params, files=files, timeout=60)


def answer(server: ServiceProcess, path: str, photo: Path, **params: Any) -> dict[str, Any]:
    response = post(server, path, photo, **params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("path", ["/v1/identify", "/bird_url", "/v1/classify/aiy_insects_v1"])
def test_the_photos_gps_and_date_are_the_place_when_the_request_gives_none(server, path):
    place = answer(server, path, TUSCANY)["place"]
    assert place["source"] == "photo" and place["date"] == "2008-10-22" and place["problems"] == []
    assert abs(place["lat"] - 43.4674) < 1e-3 and abs(place["lon"] - 11.8851) < 1e-3

    given = answer(server, path, TUSCANY, lat=GIVEN[0], lon=GIVEN[1])["place"]
    assert (given["lat"], given["lon"], given["source"]) == (*GIVEN, "request")
    assert (given["date"], given["date_source"]) == ("2008-10-22", "photo")  # the request gave no date

    dated = answer(server, path, TUSCANY, lat=GIVEN[0], lon=GIVEN[1], date="2020-06-01")["place"]
    assert (dated["date"], dated["date_source"]) == ("2020-06-01", None)

    off = answer(server, path, TUSCANY, use_photo_metadata="false")["place"]
    assert off["lat"] is None and off["source"] is None


def test_the_photos_place_steers_the_classifier_endpoint_as_a_given_one_does(server):
    """The photo's place steers exactly as the same lat/lon and date given: the same geo outcome
    (here `not_linked`: no GBIF taxonomy is linked) and the same results."""
    from_photo = answer(server, "/bird_url", NOKIA)
    assert from_photo["place"]["source"] == "photo" and from_photo["place"]["date"] == "2022-08-14"
    place = from_photo["place"]
    given = answer(server, "/bird_url", NOKIA, lat=place["lat"], lon=place["lon"], date=place["date"])
    assert from_photo["geo"] == given["geo"] and from_photo["geo"]["status"] != "not_requested"
    assert from_photo["results"] == given["results"]
    bare = answer(server, "/bird_url", NOKIA, use_photo_metadata="false")
    assert bare["geo"]["status"] == "not_requested"


def test_a_date_without_gps_gives_no_place(server):
    place = answer(server, "/v1/identify", JOLLA)["place"]
    assert place["lat"] is None and place["source"] is None


def test_the_files_that_broke_exif_readers_never_break_an_answer(server):
    for photo in BROKEN:
        response = post(server, "/v1/identify", photo)
        assert response.status_code in (200, 400, 413, 415, 422), (photo.name, response.text)
        if response.status_code != 200:
            assert response.json()["error"]["message"], photo.name
    assert httpx.get(f"{server.base_url}/health/live", timeout=10).status_code == 200


def test_broken_gps_is_ignored_and_said_in_the_answer(server, tmp_path):
    """A zero denominator in the latitude (what some cameras write without a fix): no place, a
    problem in words, no coordinate in it, and a 200."""
    photo = tmp_path / "no-fix.jpg"
    photo.write_bytes(
        jpeg_with(
            {1: "N", 2: (R(43, 0), R(27, 1), R(0, 1)), 3: "E", 4: dms(11, 53, 6.5)}, "2008:10:22 16:28:39"
        )
    )
    place = answer(server, "/v1/identify", photo)["place"]
    assert place["lat"] is None and place["source"] is None
    assert place["problems"] == ["GPS ignored: latitude has a zero denominator"], place
    given = answer(server, "/bird_url", photo, lat=GIVEN[0], lon=GIVEN[1])["place"]
    assert given["source"] == "request" and given["date"] == "2008-10-22" and given["problems"]


def test_no_coordinate_reaches_the_log(server):
    answer(server, "/bird_url", TUSCANY, lat=GIVEN[0], lon=GIVEN[1], date="2020-06-01")
    answer(server, "/v1/identify", TUSCANY, lat=GIVEN[0], lon=GIVEN[1])
    answer(server, "/v1/identify", NOKIA)
    log = server.log_path.read_text(errors="replace")
    assert "/bird_url?lat=*&lon=*&date=*" in log  # the access log is on, its place masked
    for value in ("12.345678", "98.765432", "43.467", "11.885", "60.146", "24.906", "2020-06-01"):
        assert value not in log, value
