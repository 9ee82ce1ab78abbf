"""Every page of the UI, served by a real server on loopback over a real store."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from typing import Any
from urllib.parse import quote

import pytest

from tests.ui.conftest import get, png


def html(ui: Any, path: str, expect: int = 200) -> str:
    kind, _, body = get(ui.url + path, expect=expect)
    assert kind.startswith("text/html")
    return body.decode()


def test_runs_table_lists_filters_sorts_and_pages(ui: Any, ui_store: dict[str, Any]) -> None:
    page = html(ui, "/")
    assert "<title>Runs · runstone</title>" in page
    for name in ("base", "base-repro1", "drift", "wide", "long"):
        assert f">{name}</a>" in page
    # default columns: the common params and metrics
    assert "params.optimizer.lr" in page and "metrics.loss" in page
    # the reproduction's verdict shows on the run it reproduces and on itself
    row = page[page.index(f'data-id="{ui_store["base"]}"') :]
    assert "verdict-identical" in row[: row.index("</tr>")]

    page = html(ui, "/?filter=" + quote("params.optimizer.lr = 0.3"))
    assert ">wide</a>" in page and ">base</a>" not in page
    assert 'class="count">1<' in page

    # a bad filter is shown inline, with the page still there
    page = html(ui, "/?filter=" + quote("metrics.loss >"))
    assert 'role="alert"' in page and "aria-invalid" in page
    assert "Fix the filter" in page

    page = html(
        ui,
        "/?order="
        + quote("-params.optimizer.lr")
        + "&cols="
        + quote("params.optimizer.lr,min(metrics.loss)"),
    )
    names = re.findall(r'class="name"><a href="/runs/\w+" tabindex="-1" title="[^"]*">([\w-]+)</a>', page)
    assert names[0] == "wide"
    assert 'aria-sort="descending"' in page and "min(metrics.loss)" in page

    page = html(ui, "/?per=25&page=99")  # past the end: the last page
    assert "page 1 of 1" in page

    # the column picker offers what the runs have
    assert 'value="max(metrics.acc)"' in page and 'value="tags.verdict"' in page


def test_runs_json(ui: Any, ui_store: dict[str, Any]) -> None:
    _, _, body = get(ui.url + "/api/runs?order=name&cols=" + quote("params.model.depth,metrics.loss"))
    data = json.loads(body)
    assert data["total"] == 6 and data["columns"] == ["params.model.depth", "metrics.loss"]
    assert [r["name"] for r in data["runs"]] == ["base", "base-repro1", "drift", "long", "wide", "wrapped"]
    assert data["runs"][-2]["values"][0] == 5
    _, _, body = get(ui.url + "/api/runs?filter=" + quote("bogus ="), expect=400)
    assert "error" in json.loads(body)


def test_run_pages(ui: Any, ui_store: dict[str, Any]) -> None:
    run = ui_store["base"]
    page = html(ui, f"/runs/{run}")
    assert "<title>Overview · base · runstone</title>" in page
    for text in (
        "command",
        "manifest",
        "sha256:",
        "base-repro1",
        f"/runs/{run}/verify?other={ui_store['twin']}",
    ):
        assert text in page
    page = html(ui, f"/runs/{run}/metrics")
    charts = re.findall(r'class="rs-chart" data-title="([^"]+)"', page)
    assert charts == ["acc", "loss"]
    assert "rs-chart-controls" in page
    page = html(ui, f"/runs/{run}/metrics?q=los")
    assert re.findall(r'class="rs-chart" data-title="([^"]+)"', page) == ["loss"]
    page = html(ui, f"/runs/{run}/config")
    assert 'data-key="optimizer"' in page and 'data-key="lr"' in page and "config-search" in page
    page = html(ui, f"/runs/{run}/record")
    assert "Packages" in page and "numpy" in page and "Hardware" in page
    page = html(ui, f"/runs/{ui_store['wrapped']}/log")
    assert "epoch 4 loss 0.200" in page
    _, headers, body = get(ui.url + f"/runs/{ui_store['wrapped']}/log.txt")
    assert b"epoch 4 loss 0.200" in body and "attachment" in headers["content-disposition"]
    page = html(ui, f"/runs/{run}/lineage")
    assert "<svg" in page and f'href="/runs/{ui_store["twin"]}"' in page and "edge-reproduced" in page
    html(ui, f"/runs/{run}/checkpoints")
    html(ui, f"/runs/{run}/artifacts")


def test_pages_answer_unknown_runs_and_paths_with_404(ui: Any) -> None:
    page = html(ui, "/runs/ffffffffffff", expect=404)
    assert "No run" in page and "Back to the runs" in page
    html(ui, "/no/such/page", expect=404)
    _, _, body = get(ui.url + "/api/series?run=ffffffffffff&key=loss", expect=404)
    assert "No run" in json.loads(body)["error"]


def test_security_headers(ui: Any) -> None:
    _, headers, _ = get(ui.url + "/")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_series_downsampled_keeps_peaks_and_gaps(ui: Any, ui_store: dict[str, Any]) -> None:
    run = ui_store["long"]
    _, _, body = get(ui.url + f"/api/series?run={run}&key=signal&points=1000")
    data = json.loads(body)
    assert data["total"] == 200_000 and data["downsampled"] and data["returned"] <= 1000
    assert max(v for v in data["y"] if v is not None) == 50.0
    assert None in data["y"]  # the NaN is a gap
    assert data["x"][0] == 0 and data["x"][-1] == 199_999
    # a zoomed window: finer, bounded by the range (plus one point each side)
    _, _, body = get(ui.url + f"/api/series?run={run}&key=signal&points=1000&lo=123000&hi=124000")
    zoom = json.loads(body)
    assert zoom["returned"] <= 1000 and 122_999 <= zoom["x"][0] <= 123_000 and zoom["x"][-1] <= 124_001
    assert 50.0 in zoom["y"]
    # wall time: seconds since the start, ascending
    _, _, body = get(ui.url + f"/api/series?run={ui_store['base']}&key=loss&x=time")
    timed = json.loads(body)
    assert timed["axis"] == "time" and timed["returned"] == 120 and timed["x"][0] >= 0
    for bad in ("x=wall", "lo=abc", "lo=nan"):
        _, _, body = get(ui.url + f"/api/series?run={run}&key=signal&{bad}", expect=400)
        assert json.loads(body)["error"]
    _, _, body = get(ui.url + f"/api/series?run={run}&key=nope", expect=404)
    assert "signal" in json.loads(body)["error"]  # names the metrics there are


def test_compare(ui: Any, ui_store: dict[str, Any]) -> None:
    page = html(ui, f"/compare?run={ui_store['base']}&run={ui_store['wide']}")
    assert "<title>Compare 2 runs · runstone</title>" in page
    # only differing params by default, highlighted
    assert "optimizer.lr" in page and "model.depth" in page and "model.act" not in page
    assert 'class="differs"' in page and "1 param with the same value in every run is hidden" in page
    series = json.loads(
        re.search(r'data-title="loss" data-series="([^"]+)"', page).group(1).replace("&#34;", '"')
    )
    assert {s["run"] for s in series} == {ui_store["base"], ui_store["wide"]}
    plot = re.search(r'class="rs-parcoords" data-plot="([^"]+)"', page).group(1).replace("&#34;", '"')
    data = json.loads(plot)
    assert [d["name"] for d in data["dims"]] == ["params.model.depth", "params.optimizer.lr"]
    assert data["color"]["name"] == "metrics.acc" and len(data["runs"]) == 2
    page = html(ui, f"/compare?run={ui_store['base']}&run={ui_store['wide']}&all=1")
    assert "model.act" in page
    page = html(ui, f"/compare?run={ui_store['base']}", expect=400)
    assert "two or more different runs" in page


def test_verify_view(ui: Any, ui_store: dict[str, Any]) -> None:
    page = html(ui, f"/runs/{ui_store['base']}/verify")  # its newest reproduction
    assert "IDENTICAL" in page and ui_store["twin"][:12] in page
    page = html(ui, f"/runs/{ui_store['base']}/verify?other={ui_store['drift']}&rtol=0&atol=0")
    assert "DIVERGED at step 40" in page
    marker = re.search(r'data-title="loss" data-series="[^"]+" data-markers="([^"]+)"', page).group(1)
    assert json.loads(marker.replace("&#34;", '"'))[0]["x"] == 40
    assert "Likely causes" in page
    page = html(ui, f"/runs/{ui_store['wide']}/verify")  # not reproduced: how to get a verdict
    assert f"runstone reproduce {ui_store['wide'][:12]} --verify" in page and 'name="other"' in page
    html(ui, f"/runs/{ui_store['base']}/verify?other={ui_store['drift']}&rtol=-1", expect=400)


def test_artifact_browse_preview_download(ui: Any, ui_store: dict[str, Any]) -> None:
    page = html(ui, f"/runs/{ui_store['long']}/artifacts")
    assert 'href="/artifacts/vision/report/v1"' in page
    page = html(ui, "/artifacts/vision/report/v1")
    assert "plots/" in page and "summary.txt" in page
    page = html(ui, "/artifacts/vision/report/v1?path=summary.txt")
    assert "accuracy 0.93" in page and "&lt;script&gt;" in page and "<script>alert" not in page
    page = html(ui, "/artifacts/vision/report/v1?path=plots/curve.png")
    assert '<img class="preview"' in page
    kind, headers, body = get(ui.url + "/artifacts/vision/report/v1/raw?path=plots/curve.png&inline=1")
    assert kind == "image/png" and body == png() and headers["content-disposition"].startswith("inline")
    kind, headers, body = get(ui.url + "/artifacts/vision/report/v1/raw?path=blob.bin")
    assert kind == "application/octet-stream" and body == bytes(range(256)) * 4
    assert headers["content-disposition"].startswith("attachment")
    page = html(ui, "/artifacts/vision/report/v1?path=blob.bin")
    assert "No preview" in page
    for bad in ("../../etc/passwd", "plots/../../x", "nothing.txt"):
        html(ui, f"/artifacts/vision/report/v1?path={quote(bad)}", expect=404)
        get(ui.url + f"/artifacts/vision/report/v1/raw?path={quote(bad)}", expect=404)
    html(ui, "/artifacts/vision/report/v9", expect=404)


def test_running_run_updates_without_reload(tmp_path: Any) -> None:
    import runstone
    from tests.ui.conftest import Server

    uri = str(tmp_path / "runstone.db")
    run = runstone.init("live", name="live", uri=uri, flush_interval_s=0.05)
    try:
        run.log({"loss": 1.0}, step=0)
        run.flush()
        with Server(uri) as server:
            page = html(server, f"/runs/{run.id}/metrics")
            assert 'data-live="1"' in page and "running" in page
            first = json.loads(get(server.url + f"/api/series?run={run.id}&key=loss")[2])
            assert first["status"] == "running" and first["returned"] == 1
            for step in range(1, 5):
                run.log({"loss": 1.0 / (step + 1)}, step=step)
            run.flush()
            later = json.loads(get(server.url + f"/api/series?run={run.id}&key=loss")[2])
            assert later["returned"] == 5
    finally:
        run.finish()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_serves_prints_the_link_and_stops_on_ctrl_c(ui_store: dict[str, Any]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstone", "ui", "--uri", ui_store["uri"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        link = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert link, line + proc.stderr.read()
        _, _, body = get(link.group(0))
        assert b"base-repro1" in body
        # the port is taken now: a second UI on it says so
        port = link.group(0).rsplit(":", 1)[1].strip("/")
        taken = subprocess.run(
            [sys.executable, "-m", "runstone", "ui", "--uri", ui_store["uri"], "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taken.returncode == 2 and "choose another --port" in taken.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_cli_warns_when_not_on_loopback(ui_store: dict[str, Any]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runstone",
            "ui",
            "--uri",
            ui_store["uri"],
            "--host",
            "0.0.0.0",
            "--port",
            str(_free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "runstone ui: http://127.0.0.1:" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "WARNING" in err and "no login" in err


def test_ui_modules_stay_out_of_import_runstone() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runstone; print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'jinja2')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_missing_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from runstone.errors import MissingDependencyError
    from runstone.server import app

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'runstone\[ui\]'"):
        app.create_app()
