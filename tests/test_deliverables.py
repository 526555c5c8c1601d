"""Dockerfile, compose file and scripts: linted, and the image's own command and health check
run for real outside a container (there is no Docker engine on the test machine)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.manifests import plants_entry, write_manifest
from tests.support.server import REPO, ServiceProcess, free_port
from tests.support.shared import HAS_SHARED, MODELS, SHARED

BIN = Path(sys.executable).parent


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[(INSTRUCTION, arguments)] per build stage, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:  # global ARGs before the first FROM belong to no stage
            stages[-1].append((instruction.upper(), args.strip()))
    return stages


def final_stage() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for instruction, args in dockerfile_stages()[-1]:
        found.setdefault(instruction, []).append(args)
    return found


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in final_stage()["ENV"]:
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_dockerfile_passes_hadolint():
    result = subprocess.run([BIN / "hadolint", "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_pass_shellcheck():
    scripts = ["download_volume.sh", "start_docker.sh", ".ci/run", "tests/container/setup_podman.sh"]
    result = subprocess.run([BIN / "shellcheck", *scripts], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_non_root_and_has_no_models_baked_in():
    assert len(dockerfile_stages()) >= 2
    stage = final_stage()
    user = stage["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert "/health/ready" in stage["HEALTHCHECK"][-1]
    copies = " ".join(stage.get("COPY", []))
    assert ".tflite" not in copies and "volumes/models/aiy" not in copies
    assert image_env()["MODELS_MANIFEST"] == "/srv/volumes/models/models.toml"
    lite = (REPO / "requirements" / "lite.lock").read_text()
    full = (REPO / "requirements" / "tf.lock").read_text()
    assert "ai-edge-litert==" in lite and "fastapi==" in lite and "tensorflow==" not in lite
    assert "tensorflow==" in full and "ai-edge-litert==" in full


def test_compose_file_runs_the_image_with_the_volume():
    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = spec["services"]["species-id"]
    assert service["build"]["context"] == "."
    assert service["build"]["args"]["VARIANT"] == "${SPECIES_ID_VARIANT:-lite}"
    assert any(p.endswith(":8000") for p in service["ports"])
    assert any(v.startswith("./volumes:/srv/volumes") for v in service["volumes"])
    assert service["restart"] in ("unless-stopped", "always")
    assert "/health/ready" in " ".join(service["healthcheck"]["test"])
    assert "MODELS_MANIFEST" in service["environment"]


@pytest.fixture(scope="module")
def installed_volume(tmp_path_factory) -> Path:
    """A volume filled the way CI and offline sites fill it: download_volume.sh --from ../shared."""
    dest = tmp_path_factory.mktemp("volume") / "models"
    if not HAS_SHARED:
        pytest.skip(f"{SHARED} not found: download_volume.sh --from has no mirror to install from")
    result = subprocess.run(
        ["./download_volume.sh", "--from", str(MODELS), "--dest", str(dest)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "aiy_plants_v1:\n  not in the mirror" in result.stdout
    return dest


@pytest.mark.shared
def test_download_volume_from_a_mirror_installs_and_verifies(installed_volume):
    for name in ("aiy_birds_v1", "aiy_insects_v1"):
        assert (installed_volume / name / "model.tflite").stat().st_size > 3_000_000
        assert (installed_volume / name / "labelmap.csv").exists()
    assert not (installed_volume / "aiy_plants_v1" / "model.tflite").exists()
    assert (installed_volume / "models.toml").read_text() == (REPO / "volumes/models/models.toml").read_text()


@pytest.mark.shared
def test_download_volume_refuses_a_tampered_model(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(MODELS / "aiy_birds_v1", mirror / "aiy_birds_v1")
    (mirror / "aiy_birds_v1" / "model.tflite").chmod(0o644)
    with (mirror / "aiy_birds_v1" / "model.tflite").open("ab") as fh:
        fh.write(b"tampered")
    shutil.copytree(MODELS / "aiy_insects_v1", mirror / "aiy_insects_v1")
    result = subprocess.run(
        ["./download_volume.sh", "--from", str(mirror), "--dest", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0  # insects still installed
    assert "sha256 mismatch" in result.stderr
    assert not (tmp_path / "out" / "aiy_birds_v1" / "model.tflite").exists()
    assert (tmp_path / "out" / "aiy_insects_v1" / "model.tflite").exists()


def test_the_image_command_serves_outside_a_container(
    tmp_path, artifacts, plants_savedmodel, plant_labels, request
):
    """Runs the Dockerfile's CMD with its ENV (only port, host and volume path changed) and
    checks it with the Dockerfile's own HEALTHCHECK command, then classifies a photo."""
    stage = final_stage()
    command = json.loads(stage["CMD"][-1])
    assert command[0] == "python"
    command[0] = sys.executable
    if HAS_SHARED:
        manifest = request.getfixturevalue("installed_volume") / "models.toml"
    else:
        manifest = write_manifest(tmp_path / "models.toml", [plants_entry(plants_savedmodel, plant_labels)])
    port = free_port()
    env = {
        **image_env(),
        "SERVER_PORT": str(port),
        "SERVER_HOST": "127.0.0.1",
        "MODELS_MANIFEST": str(manifest),
    }
    env.pop("PATH", None)
    service = ServiceProcess(env, artifacts / "image-cmd.log", command=command, port=port).start()
    try:
        health = json.loads(stage["HEALTHCHECK"][-1].split("CMD", 1)[1].strip())
        health[0] = sys.executable
        check = subprocess.run(health, env={**service.env}, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        ready = httpx.get(f"{service.base_url}/health/ready").json()
        if HAS_SHARED:
            assert ready["models"]["aiy_birds_v1"] == "ready"
            assert ready["models"]["aiy_plants_v1"] == "missing"
            photo = SHARED / "samples" / "Poecile_atricapillus_01.bmp"
            with photo.open("rb") as fh:
                body = httpx.post(f"{service.base_url}/bird_url", files={"image": fh}, timeout=60).json()
            assert body["results"][0]["scientific_name"] == "Poecile atricapillus"
            plant = httpx.post(f"{service.base_url}/plant_url", files={"image": photo.read_bytes()})
            assert plant.status_code == 503 and "download_volume.sh" in plant.json()["error"]["message"]
    finally:
        service.stop()


def test_every_runtime_dependency_is_pinned_in_the_image_locks():
    """The image installs only the locks: a dependency added to pyproject but not locked would
    pass every test on the host and break the container at import."""
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    def locked(path: Path) -> set[str]:
        return {line.split("==")[0].lower() for line in path.read_text().splitlines() if "==" in line}

    assert names(project["dependencies"]) <= locked(REPO / "requirements" / "lite.lock")
    full = names(project["dependencies"]) | names(project["optional-dependencies"]["tf"])
    assert full <= locked(REPO / "requirements" / "tf.lock")
