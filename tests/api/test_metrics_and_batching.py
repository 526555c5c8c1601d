"""/metrics in Prometheus format, and micro-batching of a SavedModel under concurrency: the
batches really form, and every answer is the one the image gets alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.env import service_env
from tests.support.images import encode, photo
from tests.support.server import ServiceProcess


def scrape(base_url: str) -> dict[str, list]:
    response = httpx.get(f"{base_url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples, name: str, **labels: str) -> float:
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_count_requests_stages_and_models(client, service, image_host):
    client.post("/plant_url", files={"image": ("p.jpg", encode(photo(), "JPEG"))})
    client.post("/plant_url", params={"img_url": image_host.url("/files/photo.jpg")})
    client.post("/v1/classify/no_such_model", files={"image": ("p.jpg", b"x")})
    families = scrape(service.base_url)
    requests = families["http_requests"]
    assert value(requests, "http_requests_total", route="/plant_url", status="200") >= 2
    assert value(requests, "http_requests_total", route="/v1/classify/{model_name}", status="404") >= 1
    assert (
        value(
            families["http_request_duration_seconds"],
            "http_request_duration_seconds_count",
            route="/plant_url",
        )
        >= 2
    )
    model = "test_plants_savedmodel"
    assert value(families["image_decode_seconds"], "image_decode_seconds_count", model=model) >= 2
    assert value(families["model_inference_seconds"], "model_inference_seconds_count", model=model) >= 2
    assert value(families["image_fetch_seconds"], "image_fetch_seconds_count") >= 1
    assert value(families["image_fetch_bytes"], "image_fetch_bytes_sum") > 1000
    assert value(families["models"], "models", model=model, state="ready") == 1
    assert value(families["models"], "models", model="ghost_v1", state="missing") == 1
    assert "inference_jobs_in_flight" in families and "model_batch_size" in families


@pytest.fixture(scope="module")
def batching(manifest, artifacts) -> Iterator[ServiceProcess]:
    env = service_env(manifest, BATCH_MAX_SIZE="8", BATCH_MAX_WAIT_MS="20", INFERENCE_WORKERS="2")
    proc = ServiceProcess(env, artifacts / "batching-service.log").start()
    yield proc
    proc.stop()


def test_concurrent_requests_share_model_calls_and_get_their_own_answers(batching):
    images = [encode(photo(320, 200, seed=s), "PNG") for s in range(16)]

    async def post_all() -> list[dict]:
        async with httpx.AsyncClient(base_url=batching.base_url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/plant_url", params={"top_k": 3}, files={"image": ("p.png", d)})
                    for d in images
                )
            )
            return [r.json() for r in responses]

    together = asyncio.run(post_all())
    alone = [
        httpx.post(
            f"{batching.base_url}/plant_url", params={"top_k": 3}, files={"image": ("p.png", d)}
        ).json()
        for d in images
    ]
    for a, b in zip(together, alone, strict=True):
        assert [r["index"] for r in a["results"]] == [r["index"] for r in b["results"]]
        assert [r["score"] for r in a["results"]] == pytest.approx(
            [r["score"] for r in b["results"]], abs=1e-5
        )
    sizes = scrape(batching.base_url)["model_batch_size"]
    calls = value(sizes, "model_batch_size_count", model="test_plants_savedmodel")
    images_seen = value(sizes, "model_batch_size_sum", model="test_plants_savedmodel")
    assert images_seen >= 32 and calls < images_seen  # some calls carried several images
