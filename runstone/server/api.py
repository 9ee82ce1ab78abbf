"""The server's HTTP API: the ``Store`` interface over HTTP, for ``RemoteStore`` clients (layer 6).

``POST /api/v1/store/METHOD`` calls one method of the server's store with the
arguments in the body (``store.wire``) and answers its result, or its error
with the error's HTTP status. ``GET /api/v1/info`` says what this server is;
``GET /api/v1/openapi.json`` describes the API. A request body over
``MAX_BODY_BYTES`` is refused with 413 before it is read whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import itertools
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from runstone._version import __version__
from runstone.artifacts.base import CHUNK_BYTES, DIGEST, digest_file
from runstone.errors import (
    AccessError,
    AuthenticationError,
    NotFoundError,
    RunstoneError,
    StateError,
    StoreError,
    UsageError,
)
from runstone.store import wire
from runstone.store.base import RunQuery
from runstone.store.query import parse_filter, parse_order
from runstone.store.remote import API_VERSION
from runstone.store.sql.tokens import ALL_PROJECTS

__all__ = ["MAX_BODY_BYTES", "StoreApi"]

#: the largest request body the API reads: a run's writer sends at most 64 MiB of output a batch,
#: which base64 makes about 86 MiB
MAX_BODY_BYTES = 128 << 20


#: what each role may call (a role may call what the roles before it may)
WRITES = frozenset(
    {
        "create_run",
        "apply_batch",
        "heartbeat",
        "finish_run",
        "seal_run",
        "mark_crashed",
        "reopen_run",
        "supersede_metrics",
        "record_artifact",
    }
)
ADMIN = frozenset({"delete_artifact", "referenced_objects"})


class StoreApi:
    """The API's routes over the store at ``uri`` (opened, and created if need be, on first use).

    One store object serves every request thread (stores are thread-safe).
    With ``auth``, every call needs an API token (``Authorization: Bearer``)
    whose role allows the method and whose project holds what it touches.
    """

    def __init__(self, uri: str, *, artifacts: str, auth: bool = False) -> None:
        self.uri = uri
        self.artifacts = artifacts
        self.auth = auth
        self._store: Any = None
        self._objects: Any = None
        self._lock = threading.Lock()

    def objects(self) -> Any:
        with self._lock:
            if self._objects is None:
                from runstone.api.capture import open_objects

                self._objects = open_objects(self.artifacts)
            return self._objects

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
            Route("/api/v1/objects/{digest}", self.object, methods=["GET", "HEAD", "PUT"]),
        ]

    def info(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"api": API_VERSION, "runstone": __version__})

    async def call(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        method = request.path_params["method"]
        try:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                # a web page can POST text/plain to loopback without asking first: not this API
                raise _NotJson(f"Send the call as application/json (got {kind or 'no content type'!r})")
            if method not in wire.STORE_METHODS:
                raise _NotAMethod(
                    f"No store method {method!r}; the API has: {', '.join(sorted(wire.STORE_METHODS))}"
                )
            store = await run_in_threadpool(self.store)
            # who is asking, before the body is read: an unknown caller costs nothing
            token = await run_in_threadpool(self._token, store, request) if self.auth else None
            body = await _read_body(request)
            call = await run_in_threadpool(wire.loads, body) if body else {}
            if not isinstance(call, dict) or not set(call) <= {"args", "kwargs"}:
                raise UsageError('The body must be {"args": [...], "kwargs": {...}}')
            args, kwargs = call.get("args", []), call.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise UsageError('The body must be {"args": [...], "kwargs": {...}}')
            result = await run_in_threadpool(_invoke, store, method, args, kwargs, token)
        except _TooLarge as e:
            return Response(wire.error_body(e), status_code=413, media_type="application/json")
        except _NotJson as e:
            return Response(wire.error_body(e), status_code=415, media_type="application/json")
        except _NotAMethod as e:
            return Response(wire.error_body(e), status_code=404, media_type="application/json")
        except RunstoneError as e:
            return Response(wire.error_body(e), status_code=e.http_status, media_type="application/json")
        return Response(await run_in_threadpool(wire.dumps, result), media_type="application/json")

    async def object(self, request: Any) -> Any:
        """One object's bytes: ``HEAD`` (is it here?), ``GET`` (streamed), ``PUT`` (streamed in, checked).

        Objects are addressed by the SHA-256 of their content and shared by
        every project (the same bytes are stored once). Reading one needs a
        reader's token and its digest, which a project-scoped token learns
        only from its own project's records; asking whether one is here
        (``HEAD``) or storing one needs a writer's.
        """
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse, Response, StreamingResponse

        digest = request.path_params["digest"]
        try:
            if not DIGEST.fullmatch(digest):
                raise UsageError(f"{digest[:100]!r} is not an object digest: give sha256:<64 hex digits>")
            store = await run_in_threadpool(self.store)
            if self.auth:
                token = await run_in_threadpool(self._token, store, request)
                need = "reader" if request.method == "GET" else "writer"
                if not token.allows(need):
                    raise AccessError(
                        f"The token is a {token.role}'s; {request.method} of an object needs a {need}'s"
                    )
            objects = await run_in_threadpool(self.objects)
            if request.method == "HEAD":
                if await run_in_threadpool(objects.has, digest):
                    return Response(status_code=200)
                # how much of an interrupted upload is here: the client sends the rest
                held = await _held(_partial(objects, digest))
                return Response(status_code=404, headers={"x-upload-offset": str(held)})
            if request.method == "GET":
                start = _range_start(request.headers.get("range", ""))
                if start:  # the rest of a download that broke off: the client checks the whole
                    try:
                        size, chunks = await run_in_threadpool(objects.read_from, digest, start)
                    except UsageError as e:  # nothing after it
                        return Response(wire.error_body(e), status_code=416, media_type="application/json")
                    return StreamingResponse(
                        chunks,
                        status_code=206,
                        media_type="application/octet-stream",
                        headers={
                            "content-range": f"bytes {start}-{size - 1}/{size}",
                            "content-length": str(size - start),
                        },
                    )
                chunks = objects.iter_bytes(digest)
                first = await run_in_threadpool(
                    next, chunks, b""
                )  # a missing object is a 404, not a cut stream
                return StreamingResponse(
                    itertools.chain([first], chunks),
                    media_type="application/octet-stream",
                    headers={"x-content-digest": digest},
                )
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/octet-stream":
                raise _NotJson(
                    f"Send an object as application/octet-stream (got {kind or 'no content type'!r})"
                )
            size = await _receive_object(request, objects, digest)
        except _NotJson as e:
            return Response(wire.error_body(e), status_code=415, media_type="application/json")
        except _Resume as e:
            return Response(
                wire.error_body(e),
                status_code=409,
                media_type="application/json",
                headers={"x-upload-offset": str(e.offset)},
            )
        except RunstoneError as e:
            if request.method == "HEAD":  # no body: the message goes in a header
                said = str(e).encode("ascii", "replace").decode()[:500]
                return Response(status_code=e.http_status, headers={"x-runstone-error": said})
            return Response(wire.error_body(e), status_code=e.http_status, media_type="application/json")
        return JSONResponse({"digest": digest, "size": size}, status_code=201)

    @staticmethod
    def _token(store: Any, request: Any) -> Any:
        from runstone.store.sql.tokens import lookup_token

        scheme, _, text = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not text.strip():
            raise AuthenticationError(
                "This server wants an API token: send it as 'Authorization: Bearer TOKEN'"
            )
        token = lookup_token(store, text)
        if token is None:
            raise AuthenticationError(
                "The API token is not valid (mistyped, revoked, or from another server)"
            )
        return token

    def openapi(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(openapi_document())


class _TooLarge(UsageError):
    pass


class _NotAMethod(UsageError):
    pass


class _NotJson(UsageError):
    pass


class _NoLength(UsageError):
    http_status = 411


class _NoRoom(StoreError):
    http_status = 507


class _Busy(StateError):
    http_status = 409


class _Resume(StateError):
    """The upload does not go on from where the server's copy ends (``offset``)."""

    http_status = 409

    def __init__(self, offset: int) -> None:
        super().__init__(f"The server holds {offset} bytes of this upload: send the rest from there")
        self.offset = offset


#: how long an upload waits for another one of the same object to end
_BUSY_WAIT_S = 10.0
#: free space an upload leaves on the server's disk
_HEADROOM_BYTES = 256 << 20


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


async def _receive_object(request: Any, objects: Any, digest: str) -> int:
    """Receive an object's bytes, or the rest of them (a resumed upload); store it once whole and
    its SHA-256 is ``digest``.

    The bytes go to ``upload-<hex>.part`` where the object store stages
    writes (its ``tmp/``, which ``gc`` cleans), else a ``runstone-uploads``
    folder in the system's temporary directory, and stay there when the
    connection breaks: the client asks (``HEAD``, header ``x-upload-offset``)
    how much arrived and sends the rest with ``x-upload-offset: N`` and
    ``x-upload-length: TOTAL``. One upload of an object at a time; the body must
    declare its length, and there must be room for it.
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    declared = _number(request.headers.get("content-length"), "Content-Length", missing=_NoLength)
    offset = _number(request.headers.get("x-upload-offset", "0"), "x-upload-offset")
    total = _number(request.headers.get("x-upload-length", str(offset + declared)), "x-upload-length")
    if offset + declared != total:
        raise UsageError("x-upload-offset plus Content-Length must be x-upload-length")
    part = _partial(objects, digest)
    room = shutil.disk_usage(part.parent).free
    if declared + _HEADROOM_BYTES > room:
        raise _NoRoom(
            f"The server has {room >> 20} MiB free for uploads; this object needs {declared >> 20} MiB"
        )
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await _lock(fd, fcntl.LOCK_EX)  # a connection that broke a moment ago may still hold it
        have = os.fstat(fd).st_size
        if offset == 0 and have:
            os.ftruncate(fd, 0)  # a new upload from the start
        elif have != offset:
            raise _Resume(have)
        os.lseek(fd, offset, os.SEEK_SET)
        sha = hashlib.sha256() if offset == 0 else None  # a resumed upload is hashed whole at the end
        received, pending = 0, bytearray()

        def write(data: bytes) -> None:
            if sha is not None:
                sha.update(data)
            os.write(fd, data)

        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > declared:
                    raise UsageError("The body is longer than its Content-Length")
                pending += chunk
                if len(pending) >= CHUNK_BYTES:
                    await run_in_threadpool(write, bytes(pending))
                    pending.clear()
        except ClientDisconnect:
            raise UsageError(f"The upload broke off after {offset + received} of {total} bytes") from None
        finally:  # what arrived before a broken connection is kept, for the rest to follow
            await run_in_threadpool(write, bytes(pending))
        if received < declared:
            raise UsageError(f"The body ended after {offset + received} of {total} bytes; send the rest")
        if sha is not None:
            got = "sha256:" + sha.hexdigest()
        else:  # a resumed upload: hashed whole, from disk
            got = (await run_in_threadpool(digest_file, part))[0]
        if got != digest:
            part.unlink(missing_ok=True)
            raise UsageError(f"The body's digest is {got}, not {digest}: it changed or broke off on the way")

        def store() -> None:
            with objects.writing():
                objects.adopt(part, digest)  # moved into place where it can be, else copied

        await run_in_threadpool(store)
        return total
    except OSError as e:
        raise StoreError(f"The server could not keep the upload: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _range_start(header: str) -> int:
    """N of ``Range: bytes=N-`` (the only form asked for); 0 for anything else (the whole object)."""
    match = re.fullmatch(r"bytes=(\d+)-", header.strip())
    return int(match.group(1)) if match else 0


def _number(text: str | None, name: str, *, missing: type[UsageError] = UsageError) -> int:
    if text is None or not text.isdigit():
        raise missing(f"Send an object with its {name} (a number of bytes)")
    return int(text)


def _partial(objects: Any, digest: str) -> Path:
    """Where an object's upload in progress is kept."""
    staging = objects.staging_dir() or Path(tempfile.gettempdir()) / "runstone-uploads"
    staging.mkdir(parents=True, exist_ok=True)
    return staging / f"upload-{digest.partition(':')[2]}.part"


async def _held(part: Path) -> int:
    """How many bytes of an interrupted upload the server holds (0: none), once no request is
    still writing them (a connection that broke a moment ago may be)."""
    try:
        fd = os.open(part, os.O_RDONLY)
    except OSError:
        return 0
    try:
        await _lock(fd, fcntl.LOCK_SH)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


async def _lock(fd: int, kind: int) -> None:
    """Take a lock on an upload in progress, waiting up to ``_BUSY_WAIT_S`` for another request's."""
    deadline = time.monotonic() + _BUSY_WAIT_S
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise _Busy("Another upload of this object is under way; try again in a moment") from None
            await asyncio.sleep(0.05)


def _invoke(store: Any, method: str, args: list[Any], kwargs: dict[str, Any], token: Any = None) -> Any:
    named = wire.check_call(method, args, kwargs)  # types checked here, so the store sees only good calls
    if token is not None:
        return _Scoped(store, token).call(method, named)
    return getattr(store, method)(**named)


class _Scoped:
    """A store call as one token may make it: its role allows the method, and it sees its project only.

    Runs and artifacts of other projects are reported as not found (their IDs
    and names do not leak); naming another project outright is refused.
    """

    def __init__(self, store: Any, token: Any) -> None:
        self.store, self.token = store, token

    def call(self, method: str, named: dict[str, Any]) -> Any:
        need = "admin" if method in ADMIN else "writer" if method in WRITES else "reader"
        if not self.token.allows(need):
            raise AccessError(f"The token is a {self.token.role}'s; {method} needs a {need}'s")
        a = dict(named)
        if self.token.project == ALL_PROJECTS:
            return getattr(self.store, method)(**a)
        project = self.token.project
        if "run_id" in a:
            self._own_run(a["run_id"])
        if "batch" in a:
            self._own_run(a["batch"].run_id)
        if "artifact" in a and a["artifact"].project != project:
            raise NotFoundError(f"No artifact {a['artifact'].ref}")
        if method == "create_run" and a["spec"].project != project:
            raise AccessError(f"The token is for project {project!r}, not {a['spec'].project!r}")
        if method in ("find_runs", "count_runs"):
            a["query"] = self._own_query(a["query"])
        if method == "artifact_versions":
            if a["project"] not in (None, project):
                raise AccessError(f"The token is for project {project!r}, not {a['project']!r}")
            a["project"] = project
        if method == "referenced_objects":
            raise AccessError(
                "Every project's objects: only an admin token for every project ('*') may list them"
            )
        if method == "run_ids":
            return sorted(r.id for r in self.store.find_runs(RunQuery(project=project)))
        if method == "match_run_ids":
            prefix = str(a["prefix"]).lower().replace("-", "")
            if not re.fullmatch(r"[0-9a-f]{0,32}", prefix):
                return []
            query = RunQuery(
                filter=parse_filter(f"id like '{prefix}%'"),
                order_by=parse_order("id"),
                project=project,
                limit=a["limit"],
            )
            return sorted(r.id for r in self.store.find_runs(query))
        if method == "live_runs":
            running = self.store.find_runs(RunQuery(filter=parse_filter("status = running"), project=project))
            ids = {r.id for r in running}
            return [r for r in self.store.live_runs() if r.id in ids]
        result = getattr(self.store, method)(**a)
        if method == "artifacts_by_digest":
            return [x for x in result if x.project == project]
        return result

    def _own_run(self, run_id: str) -> None:
        try:
            mine = self.store.get_run(run_id).project == self.token.project
        except NotFoundError:
            mine = False
        if not mine:  # the same answer whether it is missing or another project's
            raise NotFoundError(f"No run {run_id} in project {self.token.project!r}")

    def _own_query(self, query: Any) -> Any:
        if query.project not in (None, self.token.project):
            raise AccessError(f"The token is for project {self.token.project!r}, not {query.project!r}")
        return dataclasses.replace(query, project=self.token.project)


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
    digest_param = {
        "name": "digest",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
    }
    octets = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": error}}}
        for code, text in (
            (400, "not a digest, or the body does not have it"),
            (401, "no API token, or a bad one"),
            (403, "the token's role does not allow it"),
            (404, "no such object"),
        )
    }
    paths["/api/v1/objects/{digest}"] = {
        "parameters": [digest_param],
        "get": {
            "operationId": "get_object",
            "summary": "An object's bytes, streamed (a reader's token); check them against the digest. "
            "Range: bytes=N- asks for the rest of a download that broke off",
            "responses": {
                "200": {"description": "the bytes", "content": octets},
                "206": {"description": "the bytes from N on", "content": octets},
                "416": {"description": "nothing after N"},
                **errors,
            },
        },
        "head": {
            "operationId": "has_object",
            "summary": "Whether the object is stored (a writer's token)",
            "responses": {
                "200": {"description": "stored"},
                "404": {
                    "description": "not stored; x-upload-offset: the bytes of an interrupted upload held"
                },
            },
        },
        "put": {
            "operationId": "put_object",
            "summary": "Store an object, streamed (a writer's token): refused unless its SHA-256 matches",
            "requestBody": {"required": True, "content": octets},
            "responses": {
                "201": {
                    "description": "stored",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "409": {
                    "description": "x-upload-offset is not where the held part ends (the header says where)"
                },
                "411": {"description": "no Content-Length"},
                "415": {"description": "not application/octet-stream"},
                "507": {"description": "no room for it on the server"},
                **errors,
            },
        },
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
