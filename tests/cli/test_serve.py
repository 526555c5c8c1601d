"""`python -m app serve`: the HTTP service on the port asked for, ready once its models are
loaded, and a graceful stop on SIGTERM (what `docker stop` and Kubernetes send)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.runner import command
from tests.support.env import service_env
from tests.support.manifests import plants_entry, write_manifest
from tests.support.server import ServiceProcess, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory, plants_savedmodel: Path, plant_labels, artifacts: Path) -> dict[str, Any]:
    """Starts `serve --port P` on a test-built SavedModel (no ../shared needed), waits for ready,
    then sends SIGTERM and records how it ended."""
    manifest = write_manifest(
        tmp_path_factory.mktemp("serve") / "models.toml", [plants_entry(plants_savedmodel, plant_labels)]
    )
    port, other = free_port(), free_port()
    serve = command("serve", f"--port {port}")
    env = service_env(manifest, PORT=str(other), LOG_LEVEL="info")  # the flag wins over PORT
    proc = ServiceProcess(env, artifacts / "cli-serve.log", command=serve, port=port)
    proc.spawn()
    try:
        proc.wait_ready(timeout=180)
        ready = httpx.get(f"{proc.base_url}/health/ready", timeout=10)
        models = httpx.get(f"{proc.base_url}/v1/models", timeout=10).json()
        try:
            httpx.get(f"http://127.0.0.1:{other}/health/live", timeout=2)
            on_other = True
        except httpx.ConnectError:
            on_other = False
    except BaseException:
        proc.stop()
        raise
    assert proc.proc is not None
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    try:
        code = proc.proc.wait(timeout=30)
    finally:
        proc.stop()
    return {
        "on_other_port": on_other,
        "ready": ready,
        "models": models,
        "code": code,
        "seconds": time.monotonic() - started,
        "log": proc.log(),
    }


def test_serve_listens_on_the_port_given_and_turns_ready(served):
    ready = served["ready"]
    assert ready.status_code == 200, ready.text
    assert not served["on_other_port"]  # --port P, not PORT
    names = {m["name"]: m["state"] for m in served["models"]["models"]}
    assert names == {"test_plants_savedmodel": "ready"}, served["models"]


def test_sigterm_shuts_it_down_gracefully_and_quickly(served):
    log = served["log"]
    assert served["seconds"] < 10, (served["seconds"], log)
    assert "Application shutdown complete" in log and "Finished server process" in log, log
    # uvicorn re-raises the SIGTERM it handled once shut down, so a supervisor sees the signal
    # (exit 143 in a shell; 0 as PID 1 of a container, which ignores it): never a crash.
    assert served["code"] == -signal.SIGTERM, (served["code"], log)
    assert "Traceback" not in log, log
