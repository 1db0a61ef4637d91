"""A webhook on loopback for the failure notifier's tests: it keeps the JSON body of every POST."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def webhook_receiver(status: int = 200) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``(url, received)``: the URL to post to (its path stands for a webhook's secret part) and the
    bodies received so far; every POST is answered ``status``."""
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secret-part", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
