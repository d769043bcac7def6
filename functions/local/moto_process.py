"""moto (EventBridge, SQS) in a process of its own, for `cmon local`, the demo and the tests.

moto is pure Python and costs ~9 ms of CPU per SQS request (more as a queue grows).
In-process, that CPU shares one interpreter lock with the API under uvicorn, the
workers and the stub: a burst of webhooks waits for moto. In its own process it runs
on the other core, as AWS runs beside Lambda. The child serves until its stdin closes,
so it also goes away when the parent is killed (no orphan holding a port).

Run alone: `python -m functions.local.moto_process` prints its endpoint, serves until
stdin is closed (Ctrl-D).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def _serve() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    try:
        sys.stdin.read()  # EOF: the parent closed it, or died
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


class MotoProcess:
    """A child process serving moto on loopback; `endpoint` once started."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._child = subprocess.Popen(
            [sys.executable, "-m", "functions.local.moto_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._endpoint: str | None = None

    @property
    def pid(self) -> int:
        return self._child.pid

    def endpoint(self) -> str:
        """Wait for the child's endpoint line (it starts while the caller does other work)."""
        if self._endpoint is None:
            assert self._child.stdout is not None
            line = self._child.stdout.readline().strip()
            if not line.startswith("http://"):
                code = self._child.poll()
                self.stop()
                raise RuntimeError(f"moto did not start (exit code {code}); is moto[server] installed?")
            self._endpoint = line
        return self._endpoint

    def stop(self) -> None:
        if self._child.stdin is not None and not self._child.stdin.closed:
            self._child.stdin.close()
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait(timeout=10)
        if self._child.stdout is not None:
            self._child.stdout.close()


@contextmanager
def moto_process() -> Iterator[MotoProcess]:
    """Start moto in a child process; stopped on exit, also on an exception."""
    process = MotoProcess()
    try:
        yield process
    finally:
        process.stop()


if __name__ == "__main__":
    _serve()
