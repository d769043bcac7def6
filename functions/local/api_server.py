"""The API Lambda's FastAPI app under uvicorn in a thread (`cmon local`, the webhook bench)."""

from __future__ import annotations

import gc
import socket
import threading
import time


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ApiServer:
    """uvicorn in a thread, on a socket bound here (so `--port 0` has a known port)."""

    def __init__(self, host: str, port: int) -> None:
        import uvicorn

        from functions.handlers.api import app

        self._socket = bind(host, port)
        self.port = int(self._socket.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="api", daemon=True
        )

    def start(self, timeout_s: float = 20.0) -> None:
        # Everything imported and built so far lives as long as the process: out of the
        # collector's sight, a full collection in a burst no longer walks ~1M objects.
        gc.freeze()
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
