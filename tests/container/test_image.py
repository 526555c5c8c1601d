"""Build the image, run it with ./volumes mounted, classify through the published port, stop it;
the same through docker-compose.yml and start_docker.sh (with podman and with the docker CLI)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.container.conftest import Podman, post_photo, world_readable_copy
from tests.support.images import encode, photo
from tests.support.manifests import plants_entry, write_manifest
from tests.support.reference import savedmodel_probabilities
from tests.support.server import REPO, free_port
from tests.support.shared import MODELS, SHARED

pytestmark = pytest.mark.container

CHICKADEE = SHARED / "samples" / "Poecile_atricapillus_01.bmp"
DRAGONFLY = SHARED / "samples" / "Micrathyria_hagenii_01.bmp"
MONARCH = SHARED / "datasets" / "leedsbutterfly" / "images" / "001_0001.jpg"


def test_lite_image_is_lean_unprivileged_and_keeps_its_healthcheck(podman: Podman, lite_image: str):
    inspected = json.loads(podman.run("image", "inspect", lite_image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "app", "serve"]
    assert "/health/ready" in " ".join(inspected["Healthcheck"]["Test"])  # kept: built --format docker
    found = json.loads(podman.run("run", "--rm", lite_image, "python", "-c", PROBE).stdout)
    assert found["tools"] == [] and not found["venv_pip"], found  # no compilers, no installer
    assert not found["tensorflow"], found  # TensorFlow is the tf variant's
    assert found["app"] == "0.1.0"
    assert found["srv"] == ["cache", "volumes"] and found["models"] == ["models.toml"], found  # no models
    assert found["cache"] == {"files": [], "writable": True}, found  # the GBIF cache's own volume
    assert found["project_files"] == [], found  # no tests, no repository files


# Run inside the image as its own user: what a lean runtime image must not carry.
PROBE = """
import importlib.util, json, os, shutil
import app
names = {"setup_podman.sh", "test_image.py", "conftest.py", "Makefile", "pyproject.toml"}
print(json.dumps({
    "tools": [t for t in ("gcc", "cc", "g++", "make", "git") if shutil.which(t)],
    "venv_pip": os.path.exists("/opt/venv/bin/pip"),
    "tensorflow": importlib.util.find_spec("tensorflow") is not None,
    "app": app.__version__,
    "srv": sorted(os.listdir("/srv")),
    "cache": {"files": os.listdir("/srv/cache"), "writable": os.access("/srv/cache", os.W_OK)},
    "models": sorted(os.listdir("/srv/volumes/models")),
    "project_files": [
        os.path.join(d, f) for top in ("/opt", "/srv", "/usr/local", "/tmp", "/src")
        for d, _, files in os.walk(top) for f in files
        if f.endswith(".tflite") or (f in names and "site-packages" not in d)
    ],
}))
"""


@pytest.mark.shared
def test_container_classifies_an_upload_and_stops_cleanly_on_sigterm(
    podman: Podman, lite_image: str, repo_volume: Path
):
    port = free_port()
    name = podman.start(lite_image, repo_volume, port)
    podman.wait_healthy(name)
    assert podman.state(name)["Health"]["Status"] == "healthy"  # type: ignore[index]

    assert "unusable" not in podman.logs(name)  # the GBIF cache found its writable volume
    response = post_photo(f"http://127.0.0.1:{port}", "/bird_url", CHICKADEE, top_k=3)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["scientific_name"] == "Poecile atricapillus"
    # The page for people ships in the wheel the image installs.
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert page.status_code == 200 and "Species ID" in page.text, page.text[:200]
    assert httpx.get(f"http://127.0.0.1:{port}/web/app.js", timeout=10).status_code == 200

    # Every process in the container runs as the image's user, not root.
    uids = podman.run("exec", name, "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status").stdout
    assert uids.strip() and all(line.split()[1:] == ["10001"] * 4 for line in uids.splitlines()), uids

    started = time.monotonic()
    podman.run("stop", "--time", "30", name)  # SIGTERM, SIGKILL only after 30 s
    stopped_in = time.monotonic() - started
    state = podman.state(name)
    assert state["ExitCode"] == 0 and stopped_in < 25, (state, stopped_in)
    assert "Finished server process" in podman.logs(name)


@pytest.mark.shared
def test_compose_up_ready_classify_down(podman: Podman, lite_image: str, repo_volume: Path):
    compose = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    project = f"sidtest{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {**podman.env, "SPECIES_ID_PORT": str(port)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [compose, "--project-name", project, "--file", "docker-compose.yml", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    up = run("up", "--detach", "--build")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        name = f"{project}_species-id_1"
        podman.wait_healthy(name)  # the compose file's healthcheck
        response = post_photo(f"http://127.0.0.1:{port}", "/insect_url", DRAGONFLY)
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["scientific_name"] == "Micrathyria hagenii"
        # The published service refuses to fetch from private addresses (compose sets it false).
        refused = podman.run(
            "exec",
            name,
            "python",
            "-c",
            "import urllib.request as u; print(u.urlopen(u.Request("
            "'http://127.0.0.1:8000/bird_url?img_url=http://10.88.0.1:1/x.jpg', method='POST')).read())",
            check=False,
        )
        assert "400" in refused.stderr and "Bad Request" in refused.stderr, refused.stderr
    finally:
        down = run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert podman.run("container", "exists", f"{project}_species-id_1", check=False).returncode == 1


@pytest.mark.shared
def test_compose_scaled_profile_spreads_over_replicas(podman: Podman, lite_image: str, repo_volume: Path):
    """`--profile scaled`: two replicas behind nginx with deploy/nginx/species-id.conf; requests
    alternate; one replica killed, the next requests still succeed."""
    podman.run("build", "-q", "-t", "species-id-test-nginx", "-f", "tests/container/nginx.Containerfile",
               "tests/container", timeout=600)  # fmt: skip
    compose = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    project = f"sidscale{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {**podman.env, "SPECIES_ID_LB_PORT": str(port), "SPECIES_ID_LB_IMAGE": "species-id-test-nginx"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [compose, "--project-name", project, "-f", "docker-compose.yml", "--profile", "scaled", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip

    # podman-compose does not read deploy.replicas (docker compose does): --scale says it.
    up = run("up", "--detach", "--scale", "api=2", "api", "lb")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        for replica in (f"{project}_api_1", f"{project}_api_2"):
            podman.wait_healthy(replica)
        answers = [post_photo(f"http://127.0.0.1:{port}", "/bird_url", CHICKADEE) for _ in range(8)]
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert all(a.json()["results"][0]["scientific_name"] == "Poecile atricapillus" for a in answers)
        upstreams = {a.headers["x-upstream"] for a in answers}
        assert len(upstreams) == 2, upstreams
        podman.run("kill", f"{project}_api_1")
        after = [post_photo(f"http://127.0.0.1:{port}", "/bird_url", CHICKADEE) for _ in range(6)]
        assert all(a.status_code == 200 for a in after), [a.text for a in after]
    finally:
        run("down")
        leftover = podman.run(
            "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}"
        ).stdout
        for container in leftover.split():
            podman.run("rm", "-f", container, check=False)
        podman.run("network", "rm", "-f", f"{project}_default", check=False)


@pytest.mark.shared
@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_start_docker_script(podman: Podman, lite_image: str, repo_volume: Path, engine: str):
    if engine == "docker" and shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed here")
    name = f"species-id-test-{engine}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {**podman.env, "SPECIES_ID_NAME": name, "SPECIES_ID_PORT": str(port)}
    script = ["./start_docker.sh", "--engine", engine, "--from", str(MODELS)]
    had_index = (repo_volume / "index" / "current").is_symlink()  # kept as it is, if so
    started = subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"ready: open http://127.0.0.1:{port}/docs" in started.stdout
        response = post_photo(f"http://127.0.0.1:{port}", "/bird_url", CHICKADEE)
        assert response.json()["results"][0]["scientific_name"] == "Poecile atricapillus"
        # The first run's default index, built by the image from ../shared's Leeds photos: /img_url
        # answers instead of 503 (a monarch of the index is its own nearest neighbour).
        if not had_index:
            assert "building the default one" in started.stdout, started.stdout + started.stderr
            assert "published as" in started.stdout + started.stderr, started.stdout + started.stderr
        lookup = post_photo(f"http://127.0.0.1:{port}", "/img_url", MONARCH)
        assert lookup.status_code == 200, lookup.text
        assert lookup.json()["results"][0]["scientific_name"] == "Danaus plexippus", lookup.text
    finally:
        stopped = subprocess.run(
            ["./start_docker.sh", "--engine", engine, "--stop"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert podman.run("container", "exists", name, check=False).returncode == 1


def test_tf_variant_serves_a_savedmodel(
    podman: Podman, tf_image: str, plants_savedmodel: Path, plant_labels, artifacts: Path
):
    """The TensorFlow variant loads a SavedModel (built by the tests: the plants_V1 weights are not
    available here) from a mounted volume and answers as the model does in-process."""
    volume = artifacts / "container" / "tf-volume"
    models = volume / "models"
    world_readable_copy(plants_savedmodel, models / "plants")
    shutil.copy(plant_labels[0], models / "labelmap.csv")
    entry = plants_entry(Path("plants"), (Path("labelmap.csv"), None))  # relative to the manifest
    write_manifest(models / "models.toml", [entry])
    for path in [volume, *volume.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    port = free_port()
    name = podman.start(tf_image, volume, port)
    podman.wait_healthy(name)
    image = photo(320, 200)
    data = encode(image, "PNG")
    response = post_photo(f"http://127.0.0.1:{port}", "/plant_url", ("x.png", data), top_k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "test_plants_savedmodel"

    reference = savedmodel_probabilities(plants_savedmodel, Image.open(io.BytesIO(data)))
    reference[2101] = -1  # background is never ranked
    expected = list(np.argsort(-reference, kind="stable")[:5])
    assert [r["index"] for r in body["results"]] == expected
    np.testing.assert_allclose([r["score"] for r in body["results"]], reference[expected], rtol=1e-4)
    podman.run("stop", "--time", "30", name)
    assert podman.state(name)["ExitCode"] == 0
