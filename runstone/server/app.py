"""The Starlette app and the uvicorn server that runs it (layer 6)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runstone.errors import MissingDependencyError

__all__ = [
    "ENV_SERVER_ARTIFACTS",
    "ENV_SERVER_AUTH",
    "ENV_SERVER_HOSTS",
    "ENV_SERVER_PARENT",
    "ENV_SERVER_STORE",
    "LOOPBACK_NAMES",
    "allowed_hosts",
    "app_from_environment",
    "create_app",
    "is_loopback",
    "link",
    "open_socket",
    "serve",
]

#: the names a browser on this machine uses for a server on loopback
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")

_STATIC = Path(__file__).resolve().parent.parent / "ui" / "static"

#: pages load nothing from elsewhere and run no inline script
_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _require() -> None:
    for module in ("starlette", "uvicorn", "jinja2"):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError("The web UI", package=module, extra="ui") from None


def create_app(
    uri: str | None = None,
    *,
    poll_ms: int = 2000,
    hosts: Sequence[str] | None = None,
    api: bool = False,
    auth: bool = False,
    artifacts: str | None = None,
) -> Any:
    """The web app over the store at ``uri`` (default: as ``runstone.Client`` finds it).

    Args:
        poll_ms: how often a page showing a running run asks for new points.
        hosts: the host names requests may address (the ``Host`` header), so
            a web page elsewhere cannot reach the app through DNS rebinding;
            default: this machine's loopback names; ``["*"]``: any.
        api: serve the store's HTTP API too (``runstone server``), for
            clients whose ``RUNSTONE_URI`` is this server.
        auth: the API wants API tokens; the pages are not served then (a
            browser sends no token): ``runstone ui --uri URL`` with
            ``RUNSTONE_TOKEN`` shows the server's runs through the API.
        artifacts: where the store's objects are (default: as ``runstone.Client``
            finds them); the API streams them to and from its clients.

    Raises:
        MissingDependencyError: Starlette, uvicorn or Jinja2 is missing (``pip install 'runstone[ui]'``).
    """
    _require()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from runstone.api.client import Client
    from runstone.ui.pages import Pages

    client = Client(uri, artifacts=artifacts)
    pages = Pages(client, poll_ms=poll_ms)
    routes: list[Any] = []
    closing = [pages.close]
    if api:
        from runstone.server.api import StoreApi

        store_api = StoreApi(client.uri, artifacts=client.artifacts_location, auth=auth)
        routes += store_api.routes()
        closing.append(store_api.close)
    if auth:
        routes.append(Route("/", _no_pages))
    else:
        routes += [*pages.routes(), Mount("/static", app=StaticFiles(directory=_STATIC), name="static")]
    return Starlette(
        routes=routes,
        exception_handlers=pages.exception_handlers(),
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts or LOOPBACK_NAMES)),
            Middleware(_SecurityHeaders),
        ],
        lifespan=_closing(closing),
    )


#: the store each worker of ``runstone server --workers N`` serves
ENV_SERVER_STORE = "RUNSTONE_SERVER_STORE"
ENV_SERVER_AUTH = "RUNSTONE_SERVER_AUTH"
ENV_SERVER_HOSTS = "RUNSTONE_SERVER_HOSTS"
ENV_SERVER_ARTIFACTS = "RUNSTONE_SERVER_ARTIFACTS"
ENV_SERVER_PARENT = "RUNSTONE_SERVER_PARENT"


def _no_pages(request: Any) -> Any:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse(
        "This runstone server wants API tokens, so it serves no pages. To browse its runs:\n"
        f"  RUNSTONE_TOKEN=... runstone ui --uri {request.base_url}\n"
    )


def app_from_environment() -> Any:
    """The server's app over the store ``RUNSTONE_SERVER_STORE`` names (for ``runstone server --workers``)."""
    _die_with(int(os.environ.get(ENV_SERVER_PARENT, "0")))
    hosts = [h for h in os.environ.get(ENV_SERVER_HOSTS, "").split(",") if h] or None
    return create_app(
        os.environ[ENV_SERVER_STORE],
        api=True,
        auth=os.environ.get(ENV_SERVER_AUTH) == "1",
        hosts=hosts,
        artifacts=os.environ.get(ENV_SERVER_ARTIFACTS) or None,
    )


def _die_with(parent: int) -> None:
    """Have the kernel stop this worker when the server's main process dies, even by SIGKILL
    (Linux): orphaned workers would go on serving the port, and a restart could not listen."""
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _closing(closers: list[Callable[[], None]]) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        for close in closers:
            close()

    return lifespan


class _SecurityHeaders:
    """Adds the headers in ``_HEADERS`` to every response (pure ASGI: responses stream through)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [
                    (k.encode(), v.encode()) for k, v in _HEADERS.items() if k.encode() not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The names (``Host`` headers) a server listening on ``host`` answers to.

    Every address (``0.0.0.0``, ``::``): any name. Otherwise this machine's
    loopback names, ``host`` itself, and ``extra`` (a proxy's public name).
    """
    if host in ("0.0.0.0", "::"):
        return ["*"]
    return [*LOOPBACK_NAMES, *([] if is_loopback(host) else [host]), *extra]


def link(host: str, port: int) -> str:
    """The URL to open for a server on ``host``:``port`` (this machine's own address for every address)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: a free one).

    Raises:
        OSError: the port is taken (``errno.EADDRINUSE``), the address is not
            this machine's, or the name does not resolve.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # named TCP, so asyncio turns Nagle's algorithm off on each connection (else a small answer
    # written as headers then body waits ~40 ms for the client's delayed ACK); and off here too
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(app: Any, sock: socket.socket, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on a listening socket until interrupted (Ctrl-C stops it cleanly)."""
    _require()
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover - uvicorn handles SIGINT itself
        sys.stderr.write("\n")
