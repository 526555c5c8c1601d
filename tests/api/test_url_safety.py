"""With ALLOW_PRIVATE_NETWORKS off (the default), URLs that reach this machine in any spelling
are refused before a connection is made: the local image host, acting as a canary, sees nothing.
Only loopback spellings are sent; other private ranges are covered by tests/imaging/test_url_guard.py
without any traffic."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import plants_entry, service_env, write_manifest
from tests.support.server import ServiceProcess


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory, plants_savedmodel, plant_labels, artifacts) -> Iterator[ServiceProcess]:
    manifest = write_manifest(
        tmp_path_factory.mktemp("strict") / "models.toml", [plants_entry(plants_savedmodel, plant_labels)]
    )
    env = service_env(manifest, ALLOW_PRIVATE_NETWORKS="false")
    proc = ServiceProcess(env, artifacts / "strict-service.log").start()
    yield proc
    proc.stop()


def test_loopback_in_every_spelling_is_refused(strict_service, image_host):
    port = image_host.port
    spellings = [
        f"http://127.0.0.1:{port}/files/photo.jpg",
        f"http://localhost:{port}/files/photo.jpg",
        f"http://LOCALHOST:{port}/files/photo.jpg",
        f"http://127.1:{port}/files/photo.jpg",
        f"http://2130706433:{port}/files/photo.jpg",
        f"http://0x7f000001:{port}/files/photo.jpg",
        f"http://0177.0.0.1:{port}/files/photo.jpg",
        f"http://[::1]:{port}/files/photo.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/files/photo.jpg",
        f"http://0.0.0.0:{port}/files/photo.jpg",
        f"https://127.0.0.1:{port}/files/photo.jpg",
    ]
    before = sum(image_host.hits.values())
    with httpx.Client(base_url=strict_service.base_url, timeout=30) as client:
        for url in spellings:
            response = client.post("/plant_url", params={"img_url": url})
            assert response.status_code == 400, f"{url}: {response.status_code} {response.text}"
            assert response.json()["error"]["code"] in {"url_not_allowed", "invalid_url"}, url
        assert client.get("/health/ready").status_code == 200
    assert sum(image_host.hits.values()) == before, dict(image_host.hits)
