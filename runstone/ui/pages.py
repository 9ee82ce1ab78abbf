"""The UI's pages and the chart data they fetch, each answered through one ``Client``.

Handlers are plain functions: Starlette runs them in its thread pool, and the
store gives each thread its own connection. Every page is server-rendered
HTML; charts and the parallel-coordinates plot draw themselves from
``/api/series`` and data attributes (``static/charts.js``).
"""

from __future__ import annotations

import contextlib
import json
import math
import mimetypes
import re
import shlex
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from runstone._format import fmt_duration, fmt_number, fmt_size, fmt_time
from runstone.errors import FilterError, NotFoundError, RunstoneError, UsageError
from runstone.store.query import Field, field_value, parse_order
from runstone.ui.series import window

__all__ = ["Pages"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_FINGERPRINTS = "runstone."
_PER_PAGE = (25, 50, 100, 250, 500)
_PREVIEW_BYTES = 1 << 20  # text shown inline; bigger files are downloaded
_LOG_BYTES = 2 << 20  # the end of a long log is shown; all of it is a download
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}  # never SVG: it can hold script
_MAX_CHARTS = 24


class Pages:
    """The routes of the UI over one client."""

    def __init__(self, client: Any, *, poll_ms: int = 2000) -> None:
        import jinja2

        self.client = client
        self.poll_ms = poll_ms
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(
            time=fmt_time,
            duration=fmt_duration,
            number=fmt_number,
            size=fmt_size,
            short=lambda run_id: run_id[:12],
            json=lambda value: json.dumps(_json_safe(value), separators=(",", ":"), allow_nan=False),
            shown=lambda value: json.dumps(
                _json_safe(value, "shown"), separators=(", ", ": "), ensure_ascii=False
            ),
            path=lambda text: quote(str(text), safe=""),
            shell=lambda argv: shlex.join(argv) if argv else "-",
        )
        self.env.globals.update(url=_url, poll_ms=poll_ms)
        self._histories: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._reaped_at = 0.0

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/", self.runs, name="runs"),
            Route("/runs/{run}", self.overview, name="run"),
            Route("/runs/{run}/metrics", self.metrics, name="metrics"),
            Route("/runs/{run}/config", self.config, name="config"),
            Route("/runs/{run}/record", self.record, name="record"),
            Route("/runs/{run}/artifacts", self.artifacts, name="artifacts"),
            Route("/runs/{run}/checkpoints", self.checkpoints, name="checkpoints"),
            Route("/runs/{run}/log", self.log, name="log"),
            Route("/runs/{run}/log.txt", self.log_text, name="log_text"),
            Route("/runs/{run}/lineage", self.lineage, name="lineage"),
            Route("/runs/{run}/verify", self.verify, name="verify"),
            Route("/artifacts/{project}/{name:path}/v{version:int}", self.artifact, name="artifact"),
            Route("/artifacts/{project}/{name:path}/v{version:int}/raw", self.artifact_raw, name="raw"),
            Route("/compare", self.compare, name="compare"),
            Route("/api/series", self.api_series, name="api_series"),
            Route("/api/runs", self.api_runs, name="api_runs"),
            Route("/api/runs/{run}/status", self.api_status, name="api_status"),
        ]

    def exception_handlers(self) -> dict[Any, Any]:
        return {RunstoneError: self._error, 404: self._not_found, Exception: self._crash}

    def close(self) -> None:
        self.client.close()

    # --- rendering ----------------------------------------------------------------

    def _page(self, template: str, status_code: int = 200, **context: Any) -> Any:
        from starlette.responses import HTMLResponse

        html = self.env.get_template(template).render(store=self.client.uri, **context)
        return HTMLResponse(html, status_code=status_code)

    def _error(self, request: Any, exc: Exception) -> Any:
        from starlette.responses import JSONResponse

        status = getattr(exc, "http_status", 500) if isinstance(exc, RunstoneError) else 500
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return self._page("error.html", status_code=status, title="Error", message=str(exc), status=status)

    def _crash(self, request: Any, exc: Exception) -> Any:
        # the server logs the traceback; the page says what broke
        return self._error(
            request, RuntimeError(f"Internal error: {type(exc).__name__}: {exc} (a bug in runstone)")
        )

    def _not_found(self, request: Any, exc: Exception) -> Any:
        return self._error(request, NotFoundError(f"No page at {request.url.path}"))

    @staticmethod
    def _redirect(url: str) -> Any:
        from starlette.responses import RedirectResponse

        return RedirectResponse(url, status_code=303)

    def _run(self, request: Any) -> Any:
        self._settle()
        return self.client.get_run(request.path_params["run"])

    def _settle(self) -> None:
        """Mark runs whose process died as crashed, at most every 10 s (as ``runstone ls`` does)."""
        if time.monotonic() - self._reaped_at > 10:
            self._reaped_at = time.monotonic()
            with contextlib.suppress(NotFoundError):  # no store yet: no runs to settle
                self.client.reap()

    def _run_page(self, template: str, request: Any, run: Any, tab: str, **context: Any) -> Any:
        return self._page(
            template,
            title=f"{context.pop('heading', tab.title())} · {run.name}",
            run=run,
            tab=tab,
            verdict=self._verdict_of(run, context.get("reproductions")),
            metric_keys=_metric_keys(run),
            verdict_href=(
                f"/runs/{run.tags['reproduction_of']}/verify?other={run.id}"
                if run.tags.get("reproduction_of")
                else f"/runs/{run.id}/verify"
            ),
            **context,
        )

    def _reproductions(self, run_ids: list[str]) -> dict[str, list[Any]]:
        """The reproductions of these runs, newest first, per run."""
        if not run_ids:
            return {}
        quoted = ", ".join(f"'{i}'" for i in run_ids)
        found: dict[str, list[Any]] = {}
        for repro in self.client.find_runs(f"tags.reproduction_of in ({quoted})", order_by="-started"):
            found.setdefault(repro.tags["reproduction_of"], []).append(repro)
        return found

    def _verdict_of(self, run: Any, reproductions: list[Any] | None = None) -> str | None:
        """The badge a run carries: its own verdict as a reproduction, else its newest reproduction's."""
        if run.tags.get("verdict"):
            return str(run.tags["verdict"])
        newest = reproductions if reproductions is not None else self._reproductions([run.id]).get(run.id)
        return str(newest[0].tags["verdict"]) if newest and newest[0].tags.get("verdict") else None

    # --- the runs table -----------------------------------------------------------

    def _table(self, request: Any) -> dict[str, Any]:
        q = request.query_params
        filter_text = q.get("filter", "").strip()
        order_text = q.get("order", "").strip()
        project = q.get("project", "").strip() or None
        per = _int(q.get("per"), 50)
        per = per if per in _PER_PAGE else 50
        page = max(1, _int(q.get("page"), 1))
        asked = [c for c in q.getlist("col") if c.strip()]
        cols_text = ",".join([*asked, q.get("cols", "")]).strip(", ")
        error: FilterError | None = None
        runs: list[Any] = []
        total = 0
        fields: list[Field] = []
        try:
            fields = _fields(cols_text) if cols_text else []
        except FilterError as e:
            error = e
        if error is None:
            try:
                self._settle()
                total = self.client.count_runs(filter_text or None, project=project)
                pages = max(1, math.ceil(total / per))
                page = min(page, pages)
                runs = self.client.find_runs(
                    filter_text or None,
                    order_by=order_text or None,
                    limit=per,
                    offset=(page - 1) * per,
                    project=project,
                )
            except FilterError as e:
                error = e
        if not cols_text and runs:
            fields = _default_fields(runs)
        order = parse_order(order_text) if order_text and error is None else ()
        state = {"filter": filter_text, "order": order_text, "project": project or "", "per": per}
        state["cols"] = ",".join(f.to_text() for f in fields) if cols_text else ""
        return {
            "runs": runs,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / per)),
            "per": per,
            "per_choices": _PER_PAGE,
            "fields": fields,
            "order": order,
            "error": error,
            "state": state,
            "candidates": _candidates(runs, fields),
        }

    def runs(self, request: Any) -> Any:
        table = self._table(request)
        repros = self._reproductions([r.id for r in table["runs"]])
        rows = []
        for run in table["runs"]:
            verdict = run.tags.get("verdict")
            if not verdict and repros.get(run.id):
                verdict = repros[run.id][0].tags.get("verdict")
            cells = [_cell(field_value(run, f), f) for f in table["fields"]]
            rows.append(
                {"run": run, "verdict": verdict, "cells": cells, "repro_of": run.tags.get("reproduction_of")}
            )
        headers = []
        current = table["order"][0] if table["order"] else None
        for f in table["fields"]:
            descending = current is not None and current.field == f and not current.descending
            text = ("-" if descending else "") + f.to_text()
            sort = "none"
            if current is not None and current.field == f:
                sort = "descending" if current.descending else "ascending"
            headers.append(
                {"label": f.to_text(), "href": _url("/", table["state"], order=text, page=1), "sort": sort}
            )
        fixed = []
        for name in ("name", "status", "started", "duration_s"):
            f = Field("attr", name)
            descending = current is not None and current.field == f and not current.descending
            sort = "none"
            if current is not None and current.field == f:
                sort = "descending" if current.descending else "ascending"
            href = _url("/", table["state"], order=("-" if descending else "") + name, page=1)
            fixed.append({"label": {"duration_s": "duration"}.get(name, name), "href": href, "sort": sort})
        return self._page("runs.html", title="Runs", rows=rows, headers=headers, fixed=fixed, **table)

    def api_runs(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        table = self._table(request)
        if table["error"] is not None:
            raise table["error"]
        return JSONResponse(
            {
                "total": table["total"],
                "page": table["page"],
                "pages": table["pages"],
                "columns": [f.to_text() for f in table["fields"]],
                "runs": [
                    {
                        "id": r.id,
                        "name": r.name,
                        "status": r.status.value,
                        "started_ms": r.start_time_ms,
                        "values": [_json_safe(field_value(r, f)) for f in table["fields"]],
                    }
                    for r in table["runs"]
                ],
            }
        )

    # --- a run's pages ------------------------------------------------------------

    def overview(self, request: Any) -> Any:
        run = self._run(request)
        records = self.client.get_records(run.id)
        repros = self._reproductions([run.id]).get(run.id, [])
        of = run.tags.get("reproduction_of")
        original = self._find(of) if of else None
        summaries = sorted(
            (m for m in run.metrics.values() if not m.key.startswith(_FINGERPRINTS)), key=lambda m: m.key
        )
        return self._run_page(
            "overview.html",
            request,
            run,
            "overview",
            heading="Overview",
            manifest=(records.get("manifest") or {}).get("digest"),
            config_record=records.get("config") or {},
            summaries=summaries,
            fingerprints=[m for m in run.metrics.values() if m.key.startswith(_FINGERPRINTS)],
            reproductions=repros,
            original=original,
        )

    def _find(self, run_id: str) -> Any:
        try:
            return self.client.get_run(run_id)
        except NotFoundError:
            return None

    def metrics(self, request: Any) -> Any:
        run = self._run(request)
        keys = sorted(k for k in run.metrics if not k.startswith(_FINGERPRINTS))
        query = request.query_params.get("q", "").strip().lower()
        shown = [k for k in keys if query in k.lower()] if query else keys
        charts = [{"title": k, "series": [{"run": run.id, "key": k, "label": run.name}]} for k in shown]
        return self._run_page(
            "metrics.html",
            request,
            run,
            "metrics",
            charts=charts,
            keys=keys,
            query=query,
            live=run.status.value == "running",
        )

    def config(self, request: Any) -> Any:
        run = self._run(request)
        records = self.client.get_records(run.id)
        return self._run_page(
            "config.html",
            request,
            run,
            "config",
            record=records.get("config") or {},
            cmdline=records.get("cmdline"),
        )

    def record(self, request: Any) -> Any:
        run = self._run(request)
        records = self.client.get_records(run.id)
        code = records.get("code") or {}
        git = code.get("git") or {}
        diff = None
        if git.get("diff"):
            try:
                diff = self.client.read_object(git["diff"]["digest"]).decode("utf-8", "replace")
            except RunstoneError as e:
                diff = f"(the diff cannot be read: {e})"
        environment = records.get("environment") or {}
        return self._run_page(
            "record.html",
            request,
            run,
            "record",
            code=code,
            git=git,
            diff=_diff_lines(diff) if diff else None,
            environment=environment,
            system=records.get("system") or {},
            seeds=records.get("seeds") or {},
            launch=records.get("launch"),
            reproduction=records.get("reproduction"),
        )

    def artifacts(self, request: Any) -> Any:
        from runstone.api.checkpoints import Checkpoint

        run = self._run(request)
        uses = [u for u in self.client.artifacts(run.id) if Checkpoint.from_artifact(u.artifact) is None]
        return self._run_page("artifacts.html", request, run, "artifacts", uses=uses)

    def checkpoints(self, request: Any) -> Any:
        run = self._run(request)
        return self._run_page(
            "checkpoints.html", request, run, "checkpoints", checkpoints=self.client.checkpoints(run.id)
        )

    def log(self, request: Any) -> Any:
        run = self._run(request)
        data = self.client.read_output(run.id)
        cut = max(0, len(data) - _LOG_BYTES)
        if cut:  # from the start of a line
            newline = data.find(b"\n", cut)
            cut = newline + 1 if 0 <= newline < len(data) - 1 else cut
        text = _terminal_text(data[cut:].decode("utf-8", "replace"))
        return self._run_page("log.html", request, run, "log", text=text, size=len(data), cut=cut)

    def log_text(self, request: Any) -> Any:
        from starlette.responses import Response

        run = self._run(request)
        name = f"{run.name}-{run.id[:12]}.log"
        return Response(
            self.client.read_output(run.id),
            media_type="text/plain; charset=utf-8",
            headers={"content-disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
        )

    def lineage(self, request: Any) -> Any:
        from runstone.ui.graph import layout

        run = self._run(request)
        graph = self.client.lineage(f"run:{run.id}", direction="both", depth=4)
        return self._run_page(
            "lineage.html", request, run, "lineage", graph=layout(graph.to_dict(), root=f"run:{run.id}")
        )

    def verify(self, request: Any) -> Any:
        from runstone.api.verify import Policy
        from runstone.api.verify import verify as verify_runs

        run = self._run(request)
        q = request.query_params
        other = q.get("other", "").strip()
        if not other and run.tags.get("reproduction_of"):
            # a reproduction: against the run it reproduces
            original = self.client.get_run(run.tags["reproduction_of"])
            return self._redirect(f"/runs/{original.id}/verify?{_query(q, other=run.id)}")
        if not other:
            repros = self._reproductions([run.id]).get(run.id)
            if not repros:  # nothing to compare with yet: say how to get a verdict
                return self._run_page("verify.html", request, run, "verify", heading="Verify", result=None)
            other = repros[0].id
        rtol, atol = _float(q.get("rtol"), "rtol"), _float(q.get("atol"), "atol")
        policy = Policy().with_tolerance(rtol=rtol, atol=atol)
        result = verify_runs(self.client, run.id, other, policy=policy)
        charts: list[dict[str, Any]] = []
        for m in sorted(
            result.metrics, key=lambda m: (m.first_divergence is None, m.first_difference is None, m.key)
        ):
            if len(charts) >= _MAX_CHARTS or m.status in ("ignored", "timing"):
                continue
            markers = []
            if m.first_divergence is not None:
                markers.append({"x": m.first_divergence, "label": f"diverges at step {m.first_divergence}"})
            elif m.first_difference is not None:
                markers.append(
                    {"x": m.first_difference, "label": f"first differs at step {m.first_difference}"}
                )
            series = [
                {"run": r.id, "key": m.key, "label": f"{label} {r.name}"}
                for label, r in (("A", result.a), ("B", result.b))
                if m.key in r.metrics
            ]
            charts.append({"title": m.key, "series": series, "markers": markers, "status": m.status})
        return self._run_page(
            "verify.html",
            request,
            run,
            "verify",
            heading="Verify",
            result=result,
            charts=charts,
            policy=policy,
        )

    # --- artifacts ----------------------------------------------------------------

    def _artifact(self, request: Any) -> Any:
        p = request.path_params
        return self.client.get_artifact(f"{p['name']}@v{p['version']}", project=p["project"])

    def artifact(self, request: Any) -> Any:
        artifact = self._artifact(request)
        path = request.query_params.get("path", "").strip("/")
        users = self.client.artifact_runs(artifact)
        context: dict[str, Any] = {"artifact": artifact, "path": path, "users": users, "entries": None}
        context["crumbs"] = _crumbs(path)
        if artifact.stored:
            _, kind = self.client.artifact_object(artifact, path)
            if kind == "tree":
                context["entries"] = self.client.artifact_entries(artifact, path)
            else:
                context.update(self._preview(artifact, path))
        return self._page("artifact.html", title=f"{artifact.ref}", **context)

    def _preview(self, artifact: Any, path: str) -> dict[str, Any]:
        digest, size = self.client.artifact_file(artifact, path)
        name = path.rpartition("/")[2] or artifact.name
        media = mimetypes.guess_type(name)[0] or ""
        preview: dict[str, Any] = {"file": {"digest": digest, "size": size, "name": name}}
        if media in _IMAGE_TYPES:
            preview["image"] = True
        elif size <= _PREVIEW_BYTES:
            data = self.client.read_object(digest)
            if b"\0" not in data[:8192]:
                preview["text"] = data.decode("utf-8", "replace")
        return preview

    def artifact_raw(self, request: Any) -> Any:
        from starlette.responses import StreamingResponse

        artifact = self._artifact(request)
        path = request.query_params.get("path", "").strip("/")
        digest, size = self.client.artifact_file(artifact, path)
        name = path.rpartition("/")[2] or artifact.name
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        inline = request.query_params.get("inline") == "1" and media in _IMAGE_TYPES
        disposition = "inline" if inline else "attachment"
        return StreamingResponse(
            self.client.iter_object(digest),
            media_type=media if inline else "application/octet-stream",
            headers={
                "content-disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
                "content-security-policy": "default-src 'none'; sandbox",
                "content-length": str(size),
            },
        )

    # --- compare ------------------------------------------------------------------

    def compare(self, request: Any) -> Any:
        ids = [i.strip() for i in request.query_params.getlist("run") if i.strip()]
        if len(ids) > 50:
            raise UsageError(f"{len(ids)} runs picked; compare at most 50 at a time")
        runs: list[Any] = []
        for run_id in ids:
            run = self.client.get_run(run_id)
            if run.id not in {r.id for r in runs}:
                runs.append(run)
        if len(runs) < 2:
            raise UsageError(
                "Pick two or more different runs to compare: tick them in the runs table, then press Compare"
            )
        keys = sorted({k for r in runs for k in r.metrics if not k.startswith(_FINGERPRINTS)})
        charts = [
            {"title": k, "series": [{"run": r.id, "key": k, "label": r.name} for r in runs if k in r.metrics]}
            for k in keys[:_MAX_CHARTS]
        ]
        params = sorted({k for r in runs for k in r.params})
        rows = []
        for key in params:
            values = [r.params.get(key) for r in runs]
            rows.append(
                {
                    "key": key,
                    "values": values,
                    "differs": len({json.dumps(v, sort_keys=True) for v in values}) > 1,
                }
            )
        only_diff = request.query_params.get("all") != "1"
        color = request.query_params.get("color") or (keys[0] if keys else "")
        plot = _parcoords(runs, params, color)
        return self._page(
            "compare.html",
            title=f"Compare {len(runs)} runs",
            runs=runs,
            charts=charts,
            rows=[r for r in rows if r["differs"]] if only_diff else rows,
            hidden=sum(1 for r in rows if not r["differs"]) if only_diff else 0,
            ids=[r.id for r in runs],
            keys=keys,
            color=color,
            plot=plot,
            show_all=f"/compare?{_query(request.query_params, all=1, color=color)}",
            live=any(r.status.value == "running" for r in runs),
        )

    # --- chart data ---------------------------------------------------------------

    def api_status(self, request: Any) -> Any:
        """What a page showing a running run watches: its status and metric keys."""
        from starlette.responses import JSONResponse

        run = self._run(request)
        return JSONResponse({"id": run.id, "status": run.status.value, "metrics": _metric_keys(run)})

    def api_series(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        q = request.query_params
        run_id, key = q.get("run", ""), q.get("key", "")
        if not run_id or not key:
            raise UsageError("Give the run and the metric: /api/series?run=ID&key=KEY")
        axis = q.get("x", "step")
        if axis not in ("step", "time"):
            raise UsageError(f"x must be step or time, got {axis!r}")
        points = _int(q.get("points"), 2000)
        self._settle()
        run = self.client.get_run(run_id)
        history = self._history(run, key)
        data = window(
            history.steps,
            history.values,
            history.timestamps_ms,
            start_ms=run.start_time_ms,
            axis=axis,
            points=points,
            lo=_float(q.get("lo"), "lo"),
            hi=_float(q.get("hi"), "hi"),
        )
        return JSONResponse({"run": run.id, "key": key, "status": run.status.value, **data})

    def _history(self, run: Any, key: str) -> Any:
        """A metric's history; the last few read of ended runs are kept (until the run changes again)."""
        summary = run.metrics.get(key)
        count, last = (summary.count, summary.last_step) if summary else (0, 0)
        cache_key = (run.id, key, run.end_time_ms, count, last)
        if run.status.value == "running":
            return self.client.metric_history(run.id, key)
        with self._lock:
            found = self._histories.get(cache_key)
            if found is not None:
                self._histories.move_to_end(cache_key)
                return found
        history = self.client.metric_history(run.id, key)
        with self._lock:
            self._histories[cache_key] = history
            while len(self._histories) > 16:
                self._histories.popitem(last=False)
        return history


# --- helpers -----------------------------------------------------------------------


def _url(base: str, state: dict[str, Any] | None = None, /, **changes: Any) -> str:
    """``base`` with the query ``state`` updated by ``changes`` (empty values left out)."""
    params = {**(state or {}), **changes}
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{base}?{query}" if query else base


def _metric_keys(run: Any) -> list[str]:
    return sorted(k for k in run.metrics if not k.startswith(_FINGERPRINTS))


def _query(params: Any, **changes: Any) -> str:
    """A query string: ``params`` (a request's) with ``changes``."""
    items = [(k, v) for k, v in params.multi_items() if k not in changes]
    return urlencode(items + [(k, v) for k, v in changes.items() if v not in (None, "")])


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _float(text: str | None, what: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} must be finite, got {text!r}")
    return value


def _fields(text: str) -> list[Field]:
    fields: list[Field] = []
    for key in parse_order(text, what="columns"):
        if key.field not in fields:
            fields.append(key.field)
    return fields


def _default_fields(runs: list[Any]) -> list[Field]:
    """The params and metrics most of these runs have (three of each)."""
    params = Counter(k for r in runs for k in r.params)
    metrics = Counter(k for r in runs for k in r.metrics if not k.startswith(_FINGERPRINTS))
    ranked = [
        [Field(kind, k) for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]  # type: ignore[arg-type]
        for kind, counts in (("param", params), ("metric", metrics))
    ]
    return [f for fields in ranked for f in [f for f in fields if _round_trips(f)][:3]]


def _round_trips(field: Field) -> bool:
    """Whether the field's text parses back to it (a key holding a comma or backtick may not)."""
    try:
        return _fields(field.to_text()) == [field]
    except FilterError:
        return False


def _candidates(runs: list[Any], fields: list[Field]) -> list[dict[str, Any]]:
    """Columns to offer in the picker: the shown ones, then what these runs have."""
    offered: list[Field] = list(fields)
    for kind, keys in (
        ("param", sorted({k for r in runs for k in r.params})),
        ("metric", sorted({k for r in runs for k in r.metrics if not k.startswith(_FINGERPRINTS)})),
        ("tag", sorted({k for r in runs for k in r.tags})),
    ):
        for key in keys:
            variants = [Field(kind, key)]  # type: ignore[arg-type]
            if kind == "metric":
                variants += [Field("metric", key, "min"), Field("metric", key, "max")]
            offered += [f for f in variants if f not in offered and _round_trips(f)]
    offered += [
        f
        for f in (Field("attr", "host"), Field("attr", "user"), Field("attr", "exit_code"))
        if f not in offered
    ]
    return [{"text": f.to_text(), "checked": f in fields} for f in offered[:80]]


def _cell(value: Any, field: Field) -> dict[str, Any]:
    if field.kind == "attr" and field.name in ("started", "ended"):
        return {"text": fmt_time(value) if value else "", "numeric": False}
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"text": fmt_number(value), "numeric": numeric}


def _json_safe(value: Any, nonfinite: str = "null") -> Any:
    """``value`` with NaN and infinities as None (``null``), or as the text ``nan``/``inf`` (``shown``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return fmt_number(value) if nonfinite == "shown" else None
    if isinstance(value, dict):
        return {k: _json_safe(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, nonfinite) for v in value]
    return value


def _diff_lines(text: str) -> list[tuple[str, str]]:
    """A unified diff's lines with a class each: file, hunk, add, del or context."""
    out = []
    for line in text.splitlines():
        if line.startswith(("diff --git", "+++", "---", "index ", "new file", "deleted file", "rename ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def _terminal_text(text: str) -> str:
    """Output as a terminal left it: colour and cursor codes removed, a line redrawn with \\r shown last."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def _parcoords(runs: list[Any], params: list[str], color: str) -> dict[str, Any]:
    """The parallel-coordinates plot's data: params that vary (at most 12), coloured by a metric."""
    dims = []
    for key in params:
        values = [r.params.get(key) for r in runs]
        if len({json.dumps(v, sort_keys=True) for v in values}) < 2:
            continue
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        dims.append(
            {
                "name": f"params.{key}",
                "type": "number" if numeric else "category",
                "values": [
                    _json_safe(v) if numeric else (None if v is None else fmt_number(v)) for v in values
                ],
            }
        )
    colors = []
    for r in runs:
        summary = r.metrics.get(color)
        colors.append(_json_safe(summary.last_value) if summary else None)
    return {
        "runs": [{"id": r.id, "label": r.name, "href": f"/runs/{r.id}"} for r in runs],
        "dims": dims[:12],
        "color": {"name": f"metrics.{color}" if color else "", "values": colors},
    }
