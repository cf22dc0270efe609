"""The one HTTP stack of every server the project ships (`rmr1 serve`, the stand-in teacher): an ASGI app under
uvicorn, on a socket bound here (127.0.0.1 unless told otherwise), served on a background event loop: a new
one in its own thread, or one the caller already runs (the judge server shares its endpoint session's loop, so
a request's calls to the endpoint need no thread hop).

uvicorn's h11 protocol reads every request's body to its end even when the app answers without reading it, so
a refused request never leaves bytes behind for the next request on a kept-alive connection. Headers longer
than `max_header_bytes` are answered 400 and the connection closed (by h11). No access log: a request line is
never written, a header never read for logging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_HEADER_BYTES = 16 * 1024  # request line and headers together


class AsgiServer:
    """`app` served by uvicorn once `start` returns, until `stop` (also a context manager)."""

    def __init__(self, app: Any, host: str = HOST, port: int = 0, *, name: str = "rmr1-http",
                 loop: asyncio.AbstractEventLoop | None = None, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_connections: int | None = None) -> None:  # fmt: skip
        self.host, self.port, self.name, self._given_loop = host, port, name, loop
        self.config = uvicorn.Config(
            app, http="h11", h11_max_incomplete_event_size=max_header_bytes, limit_concurrency=max_connections,
            log_level="warning", access_log=False, lifespan="off", server_header=False, timeout_graceful_shutdown=5,
            proxy_headers=False,  # bound for direct clients: no X-Forwarded-* header is trusted
            backlog=2048,  # bursts of concurrent clients are queued, not reset
        )  # fmt: skip
        self.server = uvicorn.Server(self.config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._serving: concurrent.futures.Future[None] | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Bind and serve; returns the base URL once uvicorn accepts connections."""
        if self._thread is not None or self._serving is not None:
            raise RuntimeError(f"{self.name} is already started")
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening
        # socket says TCP; without it every response stalls ~40 ms on Nagle + delayed ACK.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        if self._given_loop is None:
            self._thread = threading.Thread(target=self._run, args=(sock,), name=self.name, daemon=True)
            self._thread.start()
        else:
            self.loop = self._given_loop
            self._serving = asyncio.run_coroutine_threadsafe(self._serve(sock), self._given_loop)
        deadline = time.monotonic() + 30
        while not self.server.started:
            stopped = self._serving.done() if self._serving is not None else not self._thread.is_alive()  # type: ignore[union-attr]
            if stopped or time.monotonic() > deadline:
                error = self._error or (self._serving.exception() if self._serving and self._serving.done() else None)
                self.stop()
                raise RuntimeError(f"{self.name} did not start: {error!r}")
            time.sleep(0.01)
        return self.url

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self.server.serve(sockets=[sock])
        finally:
            sock.close()

    def _run(self, sock: socket.socket) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self._serve(sock)

        try:
            asyncio.run(main())
        except BaseException as error:
            self._error = error

    def stop(self) -> None:
        """Stop accepting, let requests in progress finish (5 s at most), close. Safe to call twice."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._serving is not None:
            try:
                self._serving.result(timeout=15)
            except Exception:  # a server that failed while serving: its traceback, then stopped all the same
                log.exception("%s stopped with an error", self.name)
            self._serving = None

    def __enter__(self) -> AsgiServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
