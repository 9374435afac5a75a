"""Run the sandbox on a real socket inside the current process, for tests.

Clients that bring their own HTTP stack (the anthropic SDK, the services' httpx clients) then
talk to it exactly as they would to the platform.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tistis_sandbox.app import create_app
from tistis_sandbox.recorder import Recorder


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve any ASGI app from a background thread; yield its base URL."""
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tistis-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@contextmanager
def running_sandbox(host: str = "127.0.0.1", port: int = 0,
                    recorder: Recorder | None = None) -> Iterator[str]:
    """Yield the base URL of a sandbox served from a background thread."""
    with serving(create_app(recorder), host, port) as url:
        yield url
