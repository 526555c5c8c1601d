"""The deployment files say what the service understands: Kubernetes manifests validate against
the API schemas (strict: an unknown field fails), every environment variable they and compose
set is a setting, the probes hit routes that exist, and compose's scaled profile is wired to
the nginx config the replica test runs."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.main import create_app
from app.settings import environment_variables
from tests.support.server import REPO

K8S = REPO / "deploy" / "k8s"
KUBERNETES = "1.30"
SETTINGS = set(environment_variables())
UVICORN = {"FORWARDED_ALLOW_IPS"}  # read by uvicorn itself


def documents() -> list[tuple[Path, dict]]:
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize(("path", "doc"), documents(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_manifest_validates_strictly(path, doc):
    if doc["kind"] == "Kustomization":
        listed = set(doc["resources"])
        assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        return
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validator_rejects_a_typo():
    deployment = next(doc for _, doc in documents() if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_deployment_matches_the_service():
    deployment = next(doc for _, doc in documents() if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    routes = set(create_app().openapi()["paths"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready" in routes
    assert container["startupProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live" in routes
    assert container["ports"][0]["containerPort"] == 8000  # the image's EXPOSE
    assert "EXPOSE 8000" in (REPO / "Dockerfile").read_text()
    names = {env["name"] for env in container["env"]}
    assert names <= SETTINGS | UVICORN, names - SETTINGS - UVICORN
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001  # the image's user
    hpa = next(doc for _, doc in documents() if doc["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_compose_scaled_profile():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("species-id", "api"):
        assert set(services[name]["environment"]) <= SETTINGS | UVICORN
        assert "./volumes:/srv/volumes:ro" in services[name]["volumes"]  # read-only artefacts
    assert "profiles" not in services["species-id"] and services["api"]["profiles"] == ["scaled"]
    assert "ports" not in services["api"]  # reached through nginx only
    lb = services["lb"]
    assert "./deploy/nginx/species-id.conf:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    assert "server api:8000" in (REPO / "deploy" / "nginx" / "species-id.conf").read_text()
