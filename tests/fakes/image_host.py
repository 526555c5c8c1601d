"""A local image host on loopback: serves files from a folder, plus the ways a real host fails.

    /files/NAME          the file, with a content type from its extension
    /as/TYPE/NAME        the file, served with Content-Type TYPE (e.g. /as/text%2Fhtml/x.jpg)
    /status/CODE         an empty answer with that status
    /stall/SECONDS       headers sent, then silence for SECONDS (bounded at 30)
    /big/BYTES           BYTES of JPEG-looking data, streamed without Content-Length
    /redirect?to=URL     302 to URL

Every request is counted by path, so tests can prove the service never called it.
"""

from __future__ import annotations

import mimetypes
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class ImageHost:
    def __init__(self, root: Path, address: str = "127.0.0.1") -> None:
        self.root = root
        self.address = address
        self.hits: Counter[str] = Counter()
        self.host_headers: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                host.hits[parts.path] += 1
                host.host_headers.append(self.headers.get("Host", ""))
                segments = [unquote(s) for s in parts.path.strip("/").split("/")]
                try:
                    route = segments[0]
                    if route == "files":
                        self._file(host.root / "/".join(segments[1:]), None)
                    elif route == "as":
                        self._file(host.root / "/".join(segments[2:]), segments[1])
                    elif route == "status":
                        self._send(int(segments[1]), b"", "text/plain")
                    elif route == "stall":
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        self.wfile.write(b"\xff\xd8\xff")
                        self.wfile.flush()
                        time.sleep(min(float(segments[1]), 30.0))
                    elif route == "big":
                        self._stream(int(segments[1]))
                    elif route == "redirect":
                        target = parse_qs(parts.query)["to"][0]
                        self.send_response(302)
                        self.send_header("Location", target)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        self._send(404, b"not found", "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _file(self, path: Path, content_type: str | None) -> None:
                if not path.is_file():
                    self._send(404, b"not found", "text/plain")
                    return
                guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                self._send(200, path.read_bytes(), content_type or guessed)

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, size: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"\xff\xd8\xff" + b"\0" * 65533
                sent = 0
                while sent < size:
                    piece = chunk[: min(len(chunk), size - sent)]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    sent += len(piece)
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}{path}"

    def __enter__(self) -> ImageHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
