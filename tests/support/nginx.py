"""Debian's nginx in front of loopback replicas, configured by deploy/nginx/species-id.conf (the
file docker compose's scaled profile mounts), with only the addresses changed."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.server import REPO, free_port

CONF = REPO / "deploy" / "nginx" / "species-id.conf"
BINARY = "/usr/sbin/nginx"
SETUP = [str(REPO / "tests" / "support" / "debian_package.sh"), BINARY, "nginx-light"]


def render(conf: str, port: int, upstreams: list[int]) -> str:
    """The compose config with loopback addresses: same upstream policy, locations and headers."""
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in upstreams)
    conf, n = re.subn(r"^\s*server api:8000 [^;]*;.*$", servers, conf, flags=re.M)
    assert n == 1, "the upstream line of species-id.conf changed: update tests/support/nginx.py"
    conf, n = re.subn(r"^\s*listen 8080;", f"    listen 127.0.0.1:{port};", conf, flags=re.M)
    assert n == 1
    return conf


class Nginx:
    def __init__(self, root: Path, upstreams: list[int]) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "site.conf").write_text(render(CONF.read_text(), self.port, upstreams))
        user = "user root;\n" if os.geteuid() == 0 else ""  # the workers must read this private folder
        (root / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n"
            f"  proxy_temp_path {root}/proxy;\n  include {root}/site.conf;\n}}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        args = [BINARY, "-p", str(self.root), "-c", str(self.root / "nginx.conf")]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(check.stderr)
        self.proc = subprocess.Popen([*args, "-g", "daemon off;"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"nginx did not answer: {(self.root / 'error.log').read_text()}")

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
