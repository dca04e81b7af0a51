"""A real HTTP server on 127.0.0.1 serving a folder, as gallery and weights downloads meet online
(GET and HEAD, 404 for what is not there). Loopback only, so tests stay offline and fast."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class StaticServers:
    """`start(folder)` serves a folder and returns its base URL; `close()` stops them all."""

    def __init__(self) -> None:
        self._servers: list[http.server.ThreadingHTTPServer] = []

    def start(self, folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self._servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


@contextmanager
def static_servers() -> Iterator[StaticServers]:
    servers = StaticServers()
    try:
        yield servers
    finally:
        servers.close()
