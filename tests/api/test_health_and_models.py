from __future__ import annotations

from tests.support.shared import HAS_SHARED


def test_liveness(client):
    assert client.get("/health/live").json() == {"status": "ok"}


def test_readiness_lists_every_model_state(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["models"]["test_plants_savedmodel"] == "ready"
    assert body["models"]["ghost_v1"] == "missing"
    assert body["models"]["broken_v1"] == "failed"
    if HAS_SHARED:
        assert body["models"]["aiy_birds_v1"] == "ready"
        assert body["models"]["aiy_insects_v1"] == "ready"


def test_models_endpoint_describes_each_model(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    plants = models["test_plants_savedmodel"]
    assert plants["endpoint"] == "/plant_url"
    assert plants["num_classes"] == plants["output_dim"] == 2102
    assert plants["format"] == "saved_model" and plants["state"] == "ready"
    assert models["tampered_v1"]["state"] == "failed" and "sha256" in models["tampered_v1"]["reason"]
    assert models["ghost_v1"]["endpoint"] == "/v1/classify/ghost_v1"
    if HAS_SHARED:
        birds = models["aiy_birds_v1"]
        assert birds["num_classes"] == 965 and birds["background_index"] == 964
        assert birds["endpoint"] == "/bird_url"


def test_openapi_shows_the_contract_with_an_example(client):
    spec = client.get("/openapi.json").json()
    for route in ("/bird_url", "/insect_url", "/plant_url", "/v1/classify/{model_name}"):
        assert "post" in spec["paths"][route]
    schema = spec["components"]["schemas"]["ClassificationResponse"]
    assert schema["examples"][0]["results"][0]["scientific_name"] == "Poecile atricapillus"
    assert client.get("/docs").status_code == 200
