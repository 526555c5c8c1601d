"""Every kind of bad input gets a JSON error with the right status and a usable reason, never a
500, and the server keeps serving afterwards."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.env import MAX_DOWNLOAD, MAX_UPLOAD
from tests.support.images import encode, photo, png_declaring
from tests.support.server import free_port

GOOD_JPEG = encode(photo(), "JPEG", quality=90)


def upload(data: bytes, name: str = "photo.jpg") -> dict:
    return {"files": {"image": (name, data, "application/octet-stream")}}


def url(u: str) -> dict:
    return {"params": {"img_url": u}}


def _cases(host_url):
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64
    return [
        ("no photo at all", {}, 400, "bad_request"),
        ("both url and upload", {**url(host_url("/files/x.jpg")), **upload(GOOD_JPEG)}, 400, "bad_request"),
        ("not a url", url("not a url"), 400, "invalid_url"),
        ("ftp scheme", url("ftp://example.org/bird.jpg"), 400, "invalid_url"),
        ("javascript scheme", url("javascript:alert(1)"), 400, "invalid_url"),
        ("no host", url("http:///bird.jpg"), 400, "invalid_url"),
        ("credentials in url", url("http://user:pw@example.org/b.jpg"), 400, "invalid_url"),
        ("url too long", url("http://example.org/" + "a" * 3000), 400, "invalid_parameters"),
        ("top_k zero", {"params": {"top_k": 0}, **upload(GOOD_JPEG)}, 400, "invalid_parameters"),
        ("top_k above 100", {"params": {"top_k": 101}, **upload(GOOD_JPEG)}, 400, "invalid_parameters"),
        ("top_k not a number", {"params": {"top_k": "five"}, **upload(GOOD_JPEG)}, 400, "invalid_parameters"),
        ("empty upload", upload(b""), 400, "bad_request"),
        ("upload over the cap", upload(b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD + 10)), 413, "too_large"),
        ("download over the cap", url(host_url(f"/big/{MAX_DOWNLOAD + 100_000}")), 413, "too_large"),
        ("30000x30000 png bomb", upload(png_declaring(30000, 30000), "bomb.png"), 413, "too_large"),
        ("text upload", upload(b"hello, I am not a photo\n" * 20, "notes.txt"), 415, "not_an_image"),
        ("html by url", url(host_url("/as/text%2Fhtml/page.html")), 415, "not_an_image"),
        ("heic upload", upload(heic, "IMG_0001.HEIC"), 415, "not_an_image"),
        ("truncated jpeg", upload(GOOD_JPEG[: len(GOOD_JPEG) // 3]), 422, "undecodable_image"),
        ("jpeg magic then garbage", upload(b"\xff\xd8\xff\xe0" + b"garbage" * 500), 422, "undecodable_image"),
        ("png magic then garbage", upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 100), 422, "undecodable_image"),
        ("host answers 500", url(host_url("/status/500")), 502, "upstream_error"),
        ("host answers 404", url(host_url("/files/no-such-photo.jpg")), 502, "upstream_error"),
        ("host refuses connection", url(f"http://127.0.0.1:{free_port()}/x.jpg"), 502, "upstream_error"),
        ("host stalls", url(host_url("/stall/10")), 504, "upstream_timeout"),
    ]


def test_bad_inputs_get_their_status(client, image_host, artifacts):
    GOOD = upload(GOOD_JPEG)
    report = []
    for name, kwargs, status, code in _cases(image_host.url):
        started = time.monotonic()
        response = client.post("/plant_url", **kwargs)
        elapsed = time.monotonic() - started
        report.append(
            f"{status} {code:20s} {elapsed:6.2f}s  {name}: {response.json()['error']['message'][:90]}"
        )
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == code, f"{name}: {error}"
        assert len(error["message"]) > 10
        # A worker is never left hung: the stall is cut by the read timeout, not the host.
        assert elapsed < 8, f"{name} took {elapsed:.1f}s"
        # ...and the server still serves a good photo right after.
        assert client.post("/plant_url", **GOOD).status_code == 200, f"after {name}"
    (artifacts / "bad_input_report.txt").write_text("\n".join(report) + "\n")


def test_chunked_upload_over_the_cap_is_cut_off(service):
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range((MAX_UPLOAD + 2_000_000) // 65536 + 1):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    response = httpx.post(
        f"{service.base_url}/plant_url",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"


def test_malformed_multipart_is_400(client):
    response = client.post(
        "/plant_url",
        content=b"--x\r\nnot a header at all\r\n\r\n",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 400, response.text
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/v1/classify/no_such_model", 404, "model_not_found"),
        ("GET", "/bird_url", 405, "method_not_allowed"),
        ("GET", "/nowhere", 404, "not_found"),
    ],
)
def test_routing_errors_are_json(client, method, path, status, code):
    response = client.request(
        method, path, files={"image": ("a.jpg", GOOD_JPEG)} if method == "POST" else None
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("model", "state", "reason"),
    [
        ("ghost_v1", "missing", "not found"),
        ("broken_v1", "failed", "TFLite"),
        ("tampered_v1", "failed", "sha256"),
    ],
)
def test_a_model_that_cannot_load_disables_only_its_endpoint(client, model, state, reason):
    response = client.post(f"/v1/classify/{model}", **upload(GOOD_JPEG))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert error["detail"] == {"model": model, "state": state}
    assert reason in error["message"]
    assert client.post("/plant_url", **upload(GOOD_JPEG)).status_code == 200
