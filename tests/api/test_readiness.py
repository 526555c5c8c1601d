"""/health/ready on the real server: 503 "loading" while the models load (and a classify request
for a model not loaded yet is 503 model_unavailable with Retry-After), 200 once they are in; and
REQUIRE_ALL_MODELS keeps it 503 "not_ready" for good when one entry is missing on disk.

The slow part is honest: the models are test-built SavedModels, so the loading thread imports
TensorFlow and loads them one after another (seconds) while the server already answers. Runs
without ../shared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.env import service_env
from tests.support.images import encode, photo
from tests.support.manifests import plants_entry, write_manifest
from tests.support.server import ServiceProcess

SLOW = ("test_plants_savedmodel", "second_savedmodel", "third_savedmodel")  # loaded in this order
LAST = SLOW[-1]
PHOTO = encode(photo(), "JPEG", quality=90)


@dataclass
class Answer:
    at: float  # seconds after the process was started
    status: int
    body: dict[str, Any]


def _server(manifest: Path, log: Path, **extra: str) -> ServiceProcess:
    proc = ServiceProcess(service_env(manifest, **extra), log)
    if "REQUIRE_ALL_MODELS" not in extra:
        proc.env.pop("REQUIRE_ALL_MODELS", None)  # unset means unset, whatever this shell has
    return proc


def _first_answer(client: httpx.Client, proc: ServiceProcess, timeout: float = 120.0) -> Answer:
    """Polls /health/ready from the moment the port accepts connections: the first answer."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()
        try:
            response = client.get("/health/ready")
        except httpx.TransportError:  # not listening yet
            time.sleep(0.01)
            continue
        return Answer(time.monotonic() - started, response.status_code, response.json())
    raise AssertionError(f"the server never answered:\n{proc.log()}")


def _ready(client: httpx.Client, started: float) -> Answer:
    response = client.get("/health/ready")
    return Answer(time.monotonic() - started, response.status_code, response.json())


@pytest.fixture
def slow_manifest(tmp_path: Path, plants_savedmodel: Path, plant_labels: tuple[Path, Path | None]) -> Path:
    first = plants_entry(plants_savedmodel, plant_labels)
    others = [{k: v for k, v in first.items() if k != "group"} | {"name": name} for name in SLOW[1:]]
    return write_manifest(tmp_path / "models.toml", [first, *others])


@pytest.fixture
def loading_server(slow_manifest: Path, artifacts: Path) -> Iterator[ServiceProcess]:
    proc = _server(slow_manifest, artifacts / "readiness_loading.log").spawn()
    yield proc
    proc.stop()


def test_ready_is_503_loading_until_the_models_are_in_and_a_loading_model_answers_retry_after(
    loading_server: ServiceProcess,
):
    with httpx.Client(base_url=loading_server.base_url, timeout=30) as client:
        started = time.monotonic()
        first = _first_answer(client, loading_server)
        assert first.status == 503, first
        assert first.body["status"] == "loading", first
        assert first.body["models"][LAST] == "pending", first  # loaded last: not begun yet
        assert client.get("/health/live").status_code == 200  # the process answers meanwhile

        answers = [first]
        during: list[httpx.Response] = []  # classify answers bracketed by "LAST not loaded yet"
        while answers[-1].status != 200:
            assert answers[-1].at < 120, f"still not ready:\n{loading_server.log()}"
            classified = client.post(f"/v1/classify/{LAST}", files={"image": ("p.jpg", PHOTO, "image/jpeg")})
            answers.append(_ready(client, started))
            if answers[-1].body["models"][LAST] in ("pending", "loading"):
                # Not ready after the request, so not during it either (states only move on).
                during.append(classified)
            else:
                assert classified.status_code in (200, 503), classified.text
            time.sleep(0.05)

    # Loading took a while, and the readiness answers followed it: 503 "loading" throughout,
    # then 200 "ready" with every model ready.
    assert answers[-1].at - first.at > 0.5, answers
    for answer in answers[:-1]:
        assert (answer.status, answer.body["status"]) == (503, "loading"), answer
    assert answers[-1].body["status"] == "ready"
    assert answers[-1].body["models"] == dict.fromkeys(SLOW, "ready")
    seen = {answer.body["models"][LAST] for answer in answers}
    assert {"pending", "ready"} <= seen, seen

    assert during, "no classify request fell inside the loading"
    for response in during:
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "model_unavailable", error
        assert error["detail"]["model"] == LAST and error["detail"]["state"] in ("pending", "loading")
        assert int(response.headers["Retry-After"]) > 0

    # And once ready, the same request is answered.
    with httpx.Client(base_url=loading_server.base_url, timeout=30) as client:
        response = client.post(f"/v1/classify/{LAST}", files={"image": ("p.jpg", PHOTO, "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == LAST


@pytest.fixture
def manifest_with_a_missing_model(
    tmp_path: Path, plants_savedmodel: Path, plant_labels: tuple[Path, Path | None]
) -> Path:
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    ghost = {
        "name": "ghost_v1",
        "task": "classifier",
        "format": "tflite",
        "file": str(tmp_path / "ghost" / "model.tflite"),  # never installed
        "labels": str(labels),
    }
    return write_manifest(tmp_path / "models.toml", [plants_entry(plants_savedmodel, plant_labels), ghost])


def test_require_all_models_keeps_ready_503_while_one_entry_is_missing(
    manifest_with_a_missing_model: Path, artifacts: Path
):
    manifest = manifest_with_a_missing_model
    strict = _server(manifest, artifacts / "readiness_strict.log", REQUIRE_ALL_MODELS="true")
    lenient = _server(manifest, artifacts / "readiness_lenient.log")
    strict.spawn()
    lenient.spawn()
    try:
        lenient.wait_ready()  # unset: one model serving is enough
        with httpx.Client(base_url=lenient.base_url, timeout=30) as client:
            response = client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"
        assert response.json()["models"] == {"test_plants_savedmodel": "ready", "ghost_v1": "missing"}

        with httpx.Client(base_url=strict.base_url, timeout=30) as client:
            started = time.monotonic()
            answer = _first_answer(client, strict)
            while answer.body["status"] == "loading":
                assert answer.at < 120, f"still loading:\n{strict.log()}"
                time.sleep(0.1)
                answer = _ready(client, started)
            # Loading is done and every model that can load has: still 503, and it stays so.
            assert answer.body["models"] == {"test_plants_savedmodel": "ready", "ghost_v1": "missing"}
            for _ in range(5):
                assert (answer.status, answer.body["status"]) == (503, "not_ready"), answer
                time.sleep(0.2)
                answer = _ready(client, started)
            # The model that loaded serves all the same.
            served = client.post("/plant_url", files={"image": ("p.jpg", PHOTO, "image/jpeg")})
            assert served.status_code == 200, served.text
    finally:
        strict.stop()
        lenient.stop()
