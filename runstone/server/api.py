"""The server's HTTP API: the ``Store`` interface over HTTP, for ``RemoteStore`` clients (layer 6).

``POST /api/v1/store/METHOD`` calls one method of the server's store with the
arguments in the body (``store.wire``) and answers its result, or its error
with the error's HTTP status. ``GET /api/v1/info`` says what this server is;
``GET /api/v1/openapi.json`` describes the API. A request body over
``MAX_BODY_BYTES`` is refused with 413 before it is read whole.
"""

from __future__ import annotations

import threading
from typing import Any

from runstone._version import __version__
from runstone.errors import RunstoneError, UsageError
from runstone.store import wire
from runstone.store.remote import API_VERSION

__all__ = ["MAX_BODY_BYTES", "StoreApi"]

#: the largest request body (a batch of metrics, a record) the API reads
MAX_BODY_BYTES = 64 << 20


class StoreApi:
    """The API's routes over the store at ``uri`` (opened, and created if need be, on first use).

    One store object serves every request thread (stores are thread-safe).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._store: Any = None
        self._lock = threading.Lock()

    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from runstone.store.factory import open_store

                self._store = open_store(self.uri)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/api/v1/info", self.info, methods=["GET"]),
            Route("/api/v1/openapi.json", self.openapi, methods=["GET"]),
            Route("/api/v1/store/{method}", self.call, methods=["POST"]),
        ]

    def info(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"api": API_VERSION, "runstone": __version__})

    async def call(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        method = request.path_params["method"]
        try:
            if method not in wire.STORE_METHODS:
                raise _NotAMethod(
                    f"No store method {method!r}; the API has: {', '.join(sorted(wire.STORE_METHODS))}"
                )
            body = await _read_body(request)
            call = wire.loads(body) if body else {}
            if not isinstance(call, dict) or not set(call) <= {"args", "kwargs"}:
                raise UsageError('The body must be {"args": [...], "kwargs": {...}}')
            args, kwargs = call.get("args", []), call.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise UsageError('The body must be {"args": [...], "kwargs": {...}}')
            store = await run_in_threadpool(self.store)
            result = await run_in_threadpool(_invoke, store, method, args, kwargs)
        except _TooLarge as e:
            return Response(wire.error_body(e), status_code=413, media_type="application/json")
        except _NotAMethod as e:
            return Response(wire.error_body(e), status_code=404, media_type="application/json")
        except RunstoneError as e:
            return Response(wire.error_body(e), status_code=e.http_status, media_type="application/json")
        return Response(wire.dumps(result), media_type="application/json")

    def openapi(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(openapi_document())


class _TooLarge(UsageError):
    pass


class _NotAMethod(UsageError):
    pass


async def _read_body(request: Any) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _TooLarge(f"The request body is over {MAX_BODY_BYTES >> 20} MiB; send smaller batches")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge(f"The request body is over {MAX_BODY_BYTES >> 20} MiB; send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


def _invoke(store: Any, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    try:
        return getattr(store, method)(*args, **kwargs)
    except TypeError as e:  # wrong arguments for the method (not an error inside the store)
        if e.__traceback__ is not None and e.__traceback__.tb_next is None:
            raise UsageError(f"Bad arguments for {method}: {e}") from None
        raise
    except (AttributeError, ValueError) as e:
        if isinstance(e, RunstoneError):
            raise
        raise UsageError(f"Bad arguments for {method}: {type(e).__name__}: {e}") from None


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 description."""
    error = {"$ref": "#/components/schemas/Error"}
    call_body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Call"}}},
    }
    paths: dict[str, Any] = {
        "/api/v1/info": {
            "get": {
                "operationId": "info",
                "summary": "What this server is: its API version, runstone version and store",
                "responses": {
                    "200": {
                        "description": "the server",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    }
    for method in sorted(wire.STORE_METHODS):
        paths[f"/api/v1/store/{method}"] = {
            "post": {
                "operationId": method,
                "summary": f"Store.{method} (arguments and result in the wire schema of runstone.store.wire)",
                "requestBody": call_body,
                "responses": {
                    "200": {"description": "the result", "content": {"application/json": {"schema": {}}}},
                    **{
                        str(code): {"description": text, "content": {"application/json": {"schema": error}}}
                        for code, text in (
                            (400, "malformed request or bad arguments"),
                            (404, "no such run, metric or artifact"),
                            (409, "the run's state does not allow it"),
                            (413, "the body is too large"),
                        )
                    },
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "runstone server", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {
                "Call": {
                    "type": "object",
                    "properties": {"args": {"type": "array"}, "kwargs": {"type": "object"}},
                    "additionalProperties": False,
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
            }
        },
    }
