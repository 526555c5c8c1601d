"""API keys, the admin token, the rate limit, CORS and the per-request deadline, on a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.env import service_env
from tests.support.images import encode, photo
from tests.support.server import ServiceProcess

KEYS = ("key-one-5c1d", "key-two-93ab")
ADMIN = "admin-token-77e2"
ORIGIN = "https://naturalist.example.org"


@pytest.fixture(scope="module")
def guarded(manifest, artifacts) -> Iterator[ServiceProcess]:
    env = service_env(
        manifest,
        API_KEYS=f'["{KEYS[0]}", "{KEYS[1]}"]',
        RATE_LIMIT_PER_MINUTE="3",
        ADMIN_TOKEN=ADMIN,
        CORS_ORIGINS=f'["{ORIGIN}"]',
    )
    proc = ServiceProcess(env, artifacts / "guarded-service.log").start()
    yield proc
    proc.stop()


def classify(service: ServiceProcess, key: str | None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    files = {"image": ("p.jpg", encode(photo(300, 200), "JPEG"))}
    return httpx.post(f"{service.base_url}/plant_url", files=files, headers=headers, timeout=30)


def test_api_keys_are_required_on_the_photo_endpoints_only(guarded):
    missing = classify(guarded, None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    wrong = classify(guarded, KEYS[0][:-1] + "x")
    assert wrong.status_code == 401 and "not a valid key" in wrong.json()["error"]["message"]
    assert classify(guarded, KEYS[0]).status_code == 200
    for open_path in ("/health/live", "/health/ready", "/v1/models", "/docs", "/openapi.json"):
        assert httpx.get(f"{guarded.base_url}{open_path}").status_code == 200, open_path


def test_each_key_has_its_own_rate_limit_with_headers(guarded):
    seen = [classify(guarded, KEYS[1]) for _ in range(4)]  # burst 3
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in seen[:3]] == ["2", "1", "0"]
    limited = seen[3]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1 and limited.headers["ratelimit-limit"] == "3"
    # The other key (one request used by the previous test) is not affected.
    assert classify(guarded, KEYS[0]).status_code == 200


def test_index_writes_need_the_admin_token_not_an_api_key(guarded):
    url = f"{guarded.base_url}/v1/index/items"
    files = {"image": ("p.jpg", encode(photo(), "JPEG"))}
    data = {"scientific_name": "Aus bus"}
    with_key_only = httpx.post(url, files=files, data=data, headers={"X-API-Key": KEYS[0]})
    assert with_key_only.status_code == 401 and with_key_only.headers["www-authenticate"] == "Bearer"
    with_admin = httpx.post(url, files=files, data=data, headers={"Authorization": f"Bearer {ADMIN}"})
    assert with_admin.status_code == 503  # authorised; there is simply no index on this server
    assert with_admin.json()["error"]["code"] == "index_unavailable"


def test_cors_answers_the_configured_origin_only(guarded, service):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-API-Key"}
    allowed = httpx.options(f"{guarded.base_url}/plant_url", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    other = httpx.options(
        f"{guarded.base_url}/plant_url", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers
    # Closed by default: the plain test server sends no CORS header at all.
    default = httpx.get(f"{service.base_url}/health/live", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in default.headers


def test_a_request_past_the_deadline_is_answered_503_and_the_server_goes_on(manifest, image_host, artifacts):
    env = service_env(manifest, REQUEST_TIMEOUT="1", FETCH_READ_TIMEOUT="10", FETCH_TOTAL_TIMEOUT="20")
    proc = ServiceProcess(env, artifacts / "deadline-service.log").start()
    try:
        started = time.monotonic()
        slow = httpx.post(
            f"{proc.base_url}/plant_url", params={"img_url": image_host.url("/stall/5")}, timeout=30
        )
        elapsed = time.monotonic() - started
        assert slow.status_code == 503 and slow.json()["error"]["code"] == "deadline_exceeded"
        assert slow.headers["retry-after"] == "1" and elapsed < 2.5, elapsed
        assert classify(proc, None).status_code == 200
    finally:
        proc.stop()
