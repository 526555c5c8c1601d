"""SSRF: with ALLOW_PRIVATE_NETWORKS off (the default), URLs that reach this machine in any
spelling, scheme trick or redirect are refused before a connection is made. The local image
host is the canary: it must see nothing. Only loopback (and addresses the check refuses without
a packet) are used; other private ranges are covered by tests/imaging without any traffic."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.image_host import ImageHost
from tests.support.env import service_env
from tests.support.manifests import plants_entry, write_manifest
from tests.support.server import ServiceProcess


@pytest.fixture(scope="module")
def strict_manifest(tmp_path_factory, plants_savedmodel, plant_labels):
    return write_manifest(
        tmp_path_factory.mktemp("strict") / "models.toml", [plants_entry(plants_savedmodel, plant_labels)]
    )


@pytest.fixture(scope="module")
def strict_service(strict_manifest, artifacts) -> Iterator[ServiceProcess]:
    env = service_env(strict_manifest, ALLOW_PRIVATE_NETWORKS="false")
    proc = ServiceProcess(env, artifacts / "strict-service.log").start()
    yield proc
    proc.stop()


def vectors(port: int) -> list[str]:
    path = "/files/photo.jpg"
    return [
        f"http://127.0.0.1:{port}{path}",
        f"http://localhost:{port}{path}",  # a name that resolves to loopback
        f"http://LOCALHOST:{port}{path}",
        f"http://localhost.:{port}{path}",  # trailing dot
        f"http://127.1:{port}{path}",  # short form
        f"http://127.0.1:{port}{path}",
        f"http://2130706433:{port}{path}",  # decimal
        f"http://0x7f000001:{port}{path}",  # hex
        f"http://0x7f.1:{port}{path}",
        f"http://0177.0.0.1:{port}{path}",  # octal
        f"http://127.000.000.001:{port}{path}",
        f"http://0.0.0.0:{port}{path}",
        f"http://0:{port}{path}",
        f"http://[::1]:{port}{path}",
        f"http://[::]:{port}{path}",
        f"http://[::ffff:127.0.0.1]:{port}{path}",  # IPv4-mapped
        f"http://[0:0:0:0:0:ffff:7f00:1]:{port}{path}",
        f"http://[64:ff9b::7f00:1]:{port}{path}",  # NAT64
        f"http://[2002:7f00:1::1]:{port}{path}",  # 6to4
        f"https://127.0.0.1:{port}{path}",
        f"http://user:secret@127.0.0.1:{port}{path}",  # credentials
        f"http://127.0.0.1:{port}@127.0.0.1:{port}{path}",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_GET",
        f"ftp://127.0.0.1:{port}{path}",
        f"dict://127.0.0.1:{port}/",
        f"//127.0.0.1:{port}{path}",  # no scheme
        f"http:///{path}",  # no host
    ]


def test_ssrf_vectors_are_refused_and_the_canary_hears_nothing(strict_service, image_host, artifacts):
    before = sum(image_host.hits.values())
    rows = []
    with httpx.Client(base_url=strict_service.base_url, timeout=30) as client:
        for url in vectors(image_host.port):
            response = client.post("/plant_url", params={"img_url": url})
            rows.append(
                {"url": url, "status": response.status_code, "code": response.json()["error"]["code"]}
            )
        assert client.get("/health/ready").status_code == 200
    (artifacts / "ssrf_report.json").write_text(json.dumps(rows, indent=1))
    refused = [r for r in rows if r["status"] == 400 and r["code"] in {"url_not_allowed", "invalid_url"}]
    print(f"SSRF vectors: {len(rows)} tried, {len(refused)} refused with 400")
    assert refused == rows, [r for r in rows if r not in refused]
    assert len(rows) >= 20
    assert sum(image_host.hits.values()) == before, dict(image_host.hits)


@pytest.fixture(scope="module")
def relay(tmp_path_factory) -> Iterator[ImageHost]:
    """An allowed host (127.0.0.2, listed in FETCH_ALLOWED_HOSTS) that redirects wherever asked."""
    with ImageHost(tmp_path_factory.mktemp("relay"), address="127.0.0.2") as host:
        yield host


@pytest.fixture(scope="module")
def allowlisted_service(strict_manifest, artifacts) -> Iterator[ServiceProcess]:
    env = service_env(strict_manifest, ALLOW_PRIVATE_NETWORKS="false", FETCH_ALLOWED_HOSTS='["127.0.0.2/32"]')
    proc = ServiceProcess(env, artifacts / "allowlisted-service.log").start()
    yield proc
    proc.stop()


def test_a_redirect_from_an_allowed_host_to_a_private_one_is_refused(allowlisted_service, relay, image_host):
    before = sum(image_host.hits.values())
    targets = [
        image_host.url("/files/photo.jpg"),
        f"http://localhost:{image_host.port}/files/photo.jpg",
        f"http://[::1]:{image_host.port}/files/photo.jpg",
    ]
    with httpx.Client(base_url=allowlisted_service.base_url, timeout=30) as client:
        for target in targets:
            hop = relay.url("/redirect?" + httpx.QueryParams({"to": target}).__str__())
            response = client.post("/plant_url", params={"img_url": hop})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "url_not_allowed"
        # The allowed host itself is reachable: the refusals above are about the second hop.
        direct = client.post("/plant_url", params={"img_url": relay.url("/status/404")})
        assert direct.status_code == 502 and direct.json()["error"]["detail"]["upstream_status"] == 404
    assert relay.hits["/redirect"] == len(targets)
    assert sum(image_host.hits.values()) == before
