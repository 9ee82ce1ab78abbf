"""A store on a runstone server, over HTTP (``http://HOST:PORT`` or ``https://...``).

Layer 4. Each ``Store`` method is one ``POST /api/v1/store/METHOD`` whose body
and answer are the wire schema (``store.wire``); the helpers ``Store`` builds
on its primitives (resolving IDs, names and artifact references) run here, on
the client. Only the standard library's ``http.client`` is used: one
keep-alive connection per thread, so a writer thread and readers never wait
on each other. A connection the server closed while idle is reopened and the
request sent again (the server never saw it); any other failure is a
``StoreError`` that names the server.
"""

from __future__ import annotations

import http.client
import io
import os
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from runstone.artifacts.base import ObjectInfo, ObjectStore, Progress, check_digest
from runstone.entities import (
    Artifact,
    ArtifactSpec,
    ArtifactUse,
    Batch,
    MetricHistory,
    MetricSeries,
    Run,
    RunSpec,
    RunStatus,
)
from runstone.errors import (
    AccessError,
    AuthenticationError,
    NotFoundError,
    StoreError,
    UnreachableError,
    UsageError,
)
from runstone.store import wire
from runstone.store.base import LiveRun, RunQuery, Store

__all__ = ["API_VERSION", "RESUMES", "RemoteObjectStore", "RemoteStore"]

#: the wire API's version: a server answers ``GET /api/v1/info`` with it
API_VERSION = 1
#: calls whose second run differs from the first (in effect or in answer): never sent twice
_ONCE = frozenset({"reopen_run", "supersede_metrics", "seal_run", "mark_crashed", "delete_artifact"})
_STALE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    http.client.CannotSendRequest,
)


class RemoteStore(Store):
    """The store a runstone server serves.

    Args:
        uri: ``http://HOST[:PORT][/PREFIX]`` or ``https://...``.
        token: the API token sent as ``Authorization: Bearer`` (default: ``RUNSTONE_TOKEN``).
        timeout_s: how long one request may take.

    Raises:
        UsageError: the URI is not an HTTP(S) URL.
        StoreError: no runstone server answers there.
    """

    def __init__(self, uri: str, *, token: str | None = None, timeout_s: float = 60.0) -> None:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"Not a server URL: {uri!r}; use http://HOST:PORT or https://HOST")
        port = f":{parts.port}" if parts.port else ""
        self.uri = f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}"  # no credentials
        self._parts = parts
        self._prefix = parts.path.rstrip("/")
        self._token = token if token is not None else os.environ.get("RUNSTONE_TOKEN") or None
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        try:
            info = self._request("GET", "/api/v1/info")
        except BaseException:
            self.close()  # no connection outlives a store that could not open
            raise
        if not isinstance(info, dict) or info.get("api") != API_VERSION:
            self.close()
            raise StoreError(
                f"{self.uri} answers, but not as a runstone server of API version {API_VERSION} "
                f"(it said {str(info)[:200]!r}); check the URL, or upgrade runstone on the older side"
            )
        self.server_info: dict[str, Any] = info

    # --- transport ----------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if os.getpid() != self._pid:  # a forked child never shares its parent's connections
            self._local, self._connections, self._lock, self._pid = (
                threading.local(),
                [],
                threading.Lock(),
                os.getpid(),
            )
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            host, port = self._parts.hostname or "", self._parts.port
            if self._parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=self._timeout_s, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self._timeout_s)
            self._local.conn = conn
            self._local.used = False
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _request(self, method: str, path: str, body: bytes | None = None, *, idempotent: bool = True) -> Any:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        for attempt in (1, 2):
            conn = self._connection()
            reused = self._local.used
            try:
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE as e:
                self._drop_connection()
                # a reused connection the server had closed while idle: sent again on a new one, unless
                # the call must not run twice (the server may have done it before the connection broke)
                if reused and attempt == 1 and idempotent:
                    continue
                raise StoreError(
                    f"The runstone server at {self.uri} dropped the connection: {e}"
                    + ("" if idempotent else "; it may or may not have done it: check before trying again")
                ) from None
            except http.client.HTTPException as e:
                self._drop_connection()
                raise StoreError(f"The runstone server at {self.uri} sent a broken answer: {e!r}") from None
            except OSError as e:
                self._drop_connection()
                raise UnreachableError(
                    f"Cannot reach the runstone server at {self.uri}: {e.strerror or e}; "
                    "is it running, and is the URL right?"
                ) from None
            self._local.used = True
            if response.getheader("connection", "").lower() == "close":
                self._drop_connection()
            return self._answer(response.status, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, status: int, data: bytes) -> Any:
        readable = True
        try:
            value = wire.loads(data) if data else None
        except UsageError:
            value, readable = None, False
        if status >= 400:
            if status == 401:
                said = value.get("error", {}).get("message", "") if isinstance(value, dict) else ""
                raise AuthenticationError(
                    f"The runstone server at {self.uri} refused the request: {said or 'no API token'}; "
                    "set RUNSTONE_TOKEN to a token its admin made with 'runstone token create'"
                )
            if status == 400 and data.startswith(b"Invalid host header"):
                raise StoreError(
                    f"The runstone server at {self.uri} does not answer to the name "
                    f"{self._parts.hostname!r}: allow that name on the server, or use its own address"
                )
            wire.raise_error(
                value if value is not None else {"error": data[:300].decode("utf-8", "replace")}, status
            )
        if not readable:
            raise StoreError(f"The runstone server at {self.uri} answered {status} with something not JSON")
        return value

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        body = wire.dumps({"args": list(args), "kwargs": kwargs})
        return self._request("POST", f"/api/v1/store/{method}", body, idempotent=method not in _ONCE)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    # --- writes -------------------------------------------------------------------

    def create_run(self, spec: RunSpec) -> None:
        self._call("create_run", spec)

    def apply_batch(self, batch: Batch) -> bool:
        return bool(self._call("apply_batch", batch))

    def heartbeat(self, run_id: str, time_ms: int) -> None:
        self._call("heartbeat", run_id, time_ms)

    def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time_ms: int,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        self._call(
            "finish_run", run_id, status=status, end_time_ms=end_time_ms, exit_code=exit_code, error=error
        )

    def seal_run(self, run_id: str, manifest: dict[str, Any]) -> bool:
        return bool(self._call("seal_run", run_id, manifest))

    def mark_crashed(self, run_id: str, *, end_time_ms: int) -> bool:
        return bool(self._call("mark_crashed", run_id, end_time_ms=end_time_ms))

    def reopen_run(self, run_id: str, *, time_ms: int, host: str, pid: int, entry: dict[str, Any]) -> Run:
        run: Run = self._call("reopen_run", run_id, time_ms=time_ms, host=host, pid=pid, entry=entry)
        return run

    def supersede_metrics(self, run_id: str, after_step: int) -> dict[str, int]:
        dropped: dict[str, int] = self._call("supersede_metrics", run_id, after_step)
        return dropped

    def record_artifact(
        self, run_id: str, spec: ArtifactSpec, *, direction: str, path: str, time_ms: int
    ) -> Artifact:
        artifact: Artifact = self._call(
            "record_artifact", run_id, spec, direction=direction, path=path, time_ms=time_ms
        )
        return artifact

    def delete_artifact(self, artifact: Artifact, run_id: str) -> bool:
        return bool(self._call("delete_artifact", artifact, run_id))

    # --- reads --------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        run: Run = self._call("get_run", run_id)
        return run

    def match_run_ids(self, prefix: str, *, limit: int) -> list[str]:
        return list(self._call("match_run_ids", prefix, limit=limit))

    def run_ids(self) -> list[str]:
        return list(self._call("run_ids"))

    def find_runs(self, query: RunQuery) -> list[Run]:
        return list(self._call("find_runs", query))

    def count_runs(self, query: RunQuery) -> int:
        return int(self._call("count_runs", query))

    def live_runs(self) -> list[LiveRun]:
        return list(self._call("live_runs"))

    def metric_history(self, run_id: str, key: str) -> MetricHistory:
        history: MetricHistory = self._call("metric_history", run_id, key)
        return history

    def metric_digests(self, run_id: str) -> dict[str, dict[str, Any]]:
        digests: dict[str, dict[str, Any]] = self._call("metric_digests", run_id)
        return digests

    def metric_chunks(self, run_id: str) -> list[MetricSeries]:
        return list(self._call("metric_chunks", run_id))

    def get_records(self, run_id: str) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = self._call("get_records", run_id)
        return records

    def read_output(self, run_id: str) -> bytes:
        return bytes(self._call("read_output", run_id))

    def run_artifacts(self, run_id: str) -> list[ArtifactUse]:
        return list(self._call("run_artifacts", run_id))

    def artifact_versions(self, project: str | None, name: str) -> list[Artifact]:
        return list(self._call("artifact_versions", project, name))

    def artifacts_by_digest(self, prefix: str) -> list[Artifact]:
        return list(self._call("artifacts_by_digest", prefix))

    def artifact_users(self, artifact: Artifact) -> list[tuple[str, str]]:
        return [(str(run_id), str(direction)) for run_id, direction in self._call("artifact_users", artifact)]

    def referenced_objects(self) -> dict[str, bool]:
        found: dict[str, bool] = self._call("referenced_objects")
        return found


class RemoteObjectStore(ObjectStore):
    """The object store behind a runstone server: artifact bytes streamed through it.

    ``PUT /api/v1/objects/DIGEST`` uploads one object as it is read from disk
    (the server hashes it on the way and refuses it under the wrong digest);
    ``GET`` streams it back and the reader checks the digest again (``ObjectStore``).
    Neither side holds an object whole in memory. Transfers borrow a
    keep-alive connection from a small pool, since a download can be read
    from several threads (a web response) and must not share one with calls.

    Args:
        uri: the server's ``http(s)://HOST:PORT``.
        token: the API token (default: ``RUNSTONE_TOKEN``).
    """

    def __init__(self, uri: str, *, token: str | None = None, timeout_s: float = 300.0) -> None:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"Not a server URL: {uri!r}; use http://HOST:PORT or https://HOST")
        port = f":{parts.port}" if parts.port else ""
        self.location = f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}"
        self._parts = parts
        self._prefix = parts.path.rstrip("/") + "/api/v1/objects/"
        self._token = token if token is not None else os.environ.get("RUNSTONE_TOKEN") or None
        self._timeout_s = timeout_s
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # --- transport ----------------------------------------------------------------

    def _borrow(self) -> tuple[http.client.HTTPConnection, bool]:
        if os.getpid() != self._pid:  # a forked child never shares its parent's connections
            self._idle, self._lock, self._pid = [], threading.Lock(), os.getpid()
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        host, port = self._parts.hostname or "", self._parts.port
        if self._parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self._timeout_s, context=ssl.create_default_context(), blocksize=_BLOCK
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._timeout_s, blocksize=_BLOCK)
        return conn, False

    def _give_back(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        if response.isclosed() and response.getheader("connection", "").lower() != "close":
            with self._lock:
                if len(self._idle) < 8:
                    self._idle.append(conn)
                    return
        conn.close()

    def _send(
        self, method: str, digest: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request; the answer's body is left to read. A pooled connection the server
        closed while idle is replaced and the request sent again (every object call is idempotent)."""
        sent = {"accept": "*/*", **(headers or {})}
        if self._token:
            sent["authorization"] = f"Bearer {self._token}"
        path = self._prefix + check_digest(digest)
        start = body.tell() if hasattr(body, "tell") else 0  # a resumed upload starts past 0
        while True:
            conn, reused = self._borrow()
            try:
                if hasattr(body, "seek"):
                    body.seek(start)
                conn.request(method, path, body=body, headers=sent)
                return conn, conn.getresponse()
            except _STALE as e:
                early = _early_answer(conn) if body is not None else None
                if early is not None:  # it answered before reading the whole body (413 from a proxy, ...)
                    return conn, early
                conn.close()
                if reused and not hasattr(body, "tell"):  # a file's upload goes on from what arrived
                    continue
                raise StoreError(
                    f"The runstone server at {self.location} dropped the connection: {e}"
                ) from None
            except http.client.HTTPException as e:
                conn.close()
                raise StoreError(
                    f"The runstone server at {self.location} sent a broken answer: {e!r}"
                ) from None
            except OSError as e:
                conn.close()
                raise StoreError(
                    f"Cannot reach the runstone server at {self.location}: {e.strerror or e}; "
                    "is it running, and is the URL right?"
                ) from None

    def _fail(
        self, digest: str, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        data = response.read(64 * 1024)
        conn.close()
        if response.status == 404:
            raise NotFoundError(f"No object {digest} on the runstone server at {self.location}")
        try:
            body = wire.loads(data) if data.startswith(b"{") else None
        except UsageError:
            body = None
        said = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        said = said or response.getheader("x-runstone-error", "")  # a HEAD's answer has no body
        if not body and said:
            body = {"error": {"type": "", "message": said}}
        if response.status == 401:
            raise AuthenticationError(
                f"The runstone server at {self.location} refused the request: {said or 'no API token'}; "
                "set RUNSTONE_TOKEN to a token its admin made with 'runstone token create'"
            )
        if response.status == 403:
            raise AccessError(
                f"The runstone server at {self.location} refused: {said or 'the token may not do this'}"
            )
        wire.raise_error(
            body if body is not None else {"error": data[:300].decode("utf-8", "replace")}, response.status
        )

    # --- primitives ---------------------------------------------------------------

    def has(self, digest: str) -> bool:
        conn, response = self._send("HEAD", digest)
        response.read()
        if response.status == 404:
            self._give_back(conn, response)
            return False
        if response.status >= 400:
            self._fail(digest, conn, response)
        self._give_back(conn, response)
        return True

    def _store(self, digest: str, source: Path | bytes, size: int, progress: Progress | None) -> None:
        """Upload an object. A file whose upload breaks off goes on from what the server holds
        (it keeps what arrived), up to ``RESUMES`` times, waiting a little longer each time."""
        headers = {"content-type": "application/octet-stream", "content-length": str(size)}
        if isinstance(source, bytes):
            conn, response = self._send("PUT", digest, source, headers)
            self._done(digest, conn, response)
            return
        # a large file may have been partly sent before (a process killed mid-upload): go on from there
        held = self.uploaded(digest) if size > _RESUMABLE_BYTES else 0
        if held is None:
            return  # it is there whole
        offset, tries = held, 0
        while True:
            try:
                with open(source, "rb") as f:
                    f.seek(offset)
                    sent = {
                        **headers,
                        "content-length": str(size - offset),
                        "x-upload-offset": str(offset),
                        "x-upload-length": str(size),
                    }
                    conn, response = self._send("PUT", digest, _Reading(f, size, progress, offset), sent)
            except StoreError:  # the connection broke: the server keeps what arrived
                if tries >= RESUMES:
                    raise
                tries += 1
                time.sleep(min(0.25 * (2**tries - 2), 8.0))  # at once, then 0.5 s, 1.5 s, ...
                try:
                    held = self.uploaded(digest)
                except StoreError:
                    continue  # still away: the next try's answer says where to go on from
                if held is None:
                    return  # it arrived whole after all
                offset = held
                continue
            there = response.getheader("x-upload-offset") or ""
            if response.status == 409 and there.isdigit() and tries < RESUMES:
                offset, tries = int(there), tries + 1  # it holds another part: go on from there
                response.read()
                self._give_back(conn, response)
                continue
            self._done(digest, conn, response)  # any other answer is final
            return

    def _done(
        self, digest: str, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        if response.status >= 400:
            self._fail(digest, conn, response)
        response.read()
        self._give_back(conn, response)

    def uploaded(self, digest: str) -> int | None:
        """How many bytes of an interrupted upload of the object the server holds; None: it has it whole."""
        conn, response = self._send("HEAD", digest)
        response.read()
        if response.status == 200:
            self._give_back(conn, response)
            return None
        if response.status != 404:
            self._fail(digest, conn, response)
        held = response.getheader("x-upload-offset") or "0"
        self._give_back(conn, response)
        return int(held) if held.isdigit() else 0

    def _open(self, digest: str) -> BinaryIO:
        conn, response = self._send("GET", digest)
        if response.status >= 400:
            self._fail(digest, conn, response)
        return _Download(self, digest, conn, response)  # type: ignore[return-value]

    def _rest(
        self, digest: str, start: int
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse | None]:
        """The object's bytes from ``start`` on: the rest of a download that broke off."""
        conn, response = self._send("GET", digest, headers={"range": f"bytes={start}-"})
        if response.status == 416:  # nothing after ``start``: the download had everything
            response.read()
            self._give_back(conn, response)
            return conn, None
        if response.status >= 400:
            self._fail(digest, conn, response)
        if response.status == 200:  # the whole object again: skip what arrived before
            skip = start
            while skip:
                skipped = response.read(min(skip, _BLOCK))
                if not skipped:
                    raise StoreError(f"The runstone server at {self.location} sent less than before")
                skip -= len(skipped)
        return conn, response

    def delete(self, digest: str) -> None:
        raise UsageError(_WHERE_STORED.format(uri=self.location, verb="delete objects"))

    def list_objects(self) -> Iterator[ObjectInfo]:
        raise UsageError(_WHERE_STORED.format(uri=self.location, verb="list every object"))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _early_answer(conn: http.client.HTTPConnection) -> http.client.HTTPResponse | None:
    """The answer a server sent before it stopped reading an upload, if one came."""
    try:
        response = conn.getresponse()
    except (OSError, http.client.HTTPException):
        return None
    return response if response.status >= 400 else None


#: how many times a transfer that broke off goes on from where it stopped
RESUMES = 4
#: a file larger than this asks the server first how much of it an earlier upload left there
_RESUMABLE_BYTES = 8 << 20
#: bytes sent or read at a time in an object transfer
_BLOCK = 1 << 20
_WHERE_STORED = (
    "A client of the runstone server at {uri} cannot {verb}: run runstone fsck and runstone gc on the "
    "server's machine, with --uri naming its store and RUNSTONE_ARTIFACTS its objects"
)


class _Reading(io.RawIOBase):
    """A file being uploaded, read in blocks, with progress reported."""

    def __init__(self, f: BinaryIO, size: int, progress: Progress | None, done: int = 0) -> None:
        self._f, self._size, self._progress, self._done = f, size, progress, done

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._f.seek(offset, whence)
        self._done = position
        return position

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._done += len(data)
        if self._progress is not None and data:
            self._progress(self._done, self._size)
        return data


class _Download(io.RawIOBase):
    """An object's bytes as they arrive; its connection goes back to the pool once read to the end."""

    def __init__(
        self,
        owner: RemoteObjectStore,
        digest: str,
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
    ) -> None:
        self._owner, self._digest, self._conn = owner, digest, conn
        self._response: http.client.HTTPResponse | None = response
        self._got, self._resumed = 0, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:  # everything, a block at a time (each block can resume)
            return b"".join(iter(lambda: self.read(_BLOCK), b""))
        while True:
            if self._response is None:  # the server had nothing after the bytes already read
                return b""
            try:
                data = self._response.read(n)
                if not data and n and self._response.length:  # a ranged answer cut short
                    raise http.client.IncompleteRead(b"", self._response.length)
            except http.client.IncompleteRead as e:
                self._got += len(e.partial)  # what did arrive counts; the rest is asked for after it
                self._broken(e)
                if e.partial:
                    return bytes(e.partial)
                continue
            except (OSError, http.client.HTTPException) as e:
                self._broken(e)
                continue
            self._got += len(data)
            return data

    def _broken(self, error: Exception) -> None:
        """Ask for the rest, from where the download broke off; the reader checks the digest of the whole."""
        self._conn.close()
        if self._resumed >= RESUMES:
            raise StoreError(
                f"The download from the runstone server at {self._owner.location} broke off: {error!r}"
            ) from None
        self._resumed += 1
        time.sleep(min(0.25 * (2**self._resumed - 2), 8.0))  # at once, then 0.5 s, 1.5 s, ...
        self._conn, self._response = self._owner._rest(self._digest, self._got)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            if self._response is None:
                pass  # its connection went back to the pool already
            elif self._response.isclosed():  # read to the end: the connection can carry the next one
                self._owner._give_back(self._conn, self._response)
            else:
                self._conn.close()
        super().close()
