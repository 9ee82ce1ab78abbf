"""Records and names the UI must survive, and requests it must refuse (each found by review or trial)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import runstone
from tests.ui.conftest import Server, get


def test_odd_records_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "data").symlink_to("/nonexistent/datasets")  # an untracked symlink: recorded without a size
    monkeypatch.chdir(repo)
    uri = str(tmp_path / "store" / "runstone.db")
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("hello")
    config = {"grid": [math.nan, 1.0, math.inf], "odd": {"c,d": 1, "sp ace": 2, "tick`key": 3, "ünï": "x"}}
    with runstone.init("odd", name="odd <b>", uri=uri, config=config) as run:
        run.log({"loss": 1.0, "a+b": 2.0}, step=0)
        run.log_artifact(files, name="data#1", metadata={"score": math.nan})
    other = runstone.init("odd", name="other", uri=uri, config={"grid": [1.0]})
    other.log({"a+b": 1.0}, step=0)
    other.finish()
    with Server(uri) as ui:
        for page in ("", "/config", "/record", "/artifacts", "/metrics"):
            _, _, body = get(f"{ui.url}/runs/{run.id}{page}")
            assert b"odd &lt;b&gt;" in body and b"odd <b>" not in body
        record = get(f"{ui.url}/runs/{run.id}/record")[2].decode()
        assert "/nonexistent/datasets" in record
        config_page = get(f"{ui.url}/runs/{run.id}/config")[2].decode()
        assert "[null" not in config_page and "nan" in config_page and "inf" in config_page
        # keys that do not round-trip through the column syntax are not offered, and the table still loads
        table = get(ui.url + "/")[2].decode()
        assert "c,d" not in table and 'role="alert"' not in table
        data = json.loads(get(ui.url + "/api/runs?cols=params.grid")[2])
        assert data["runs"][1]["values"] == [[None, 1.0, None]]
        # artifact names are encoded in links, and their pages open
        artifacts = get(f"{ui.url}/runs/{run.id}/artifacts")[2].decode()
        assert 'href="/artifacts/odd/data%231/v1"' in artifacts
        page = get(ui.url + "/artifacts/odd/data%231/v1")[2].decode()
        assert "a.txt" in page and "nan" in page
        # a metric with a + in its name colours the comparison
        compare = get(f"{ui.url}/compare?run={run.id}&run={other.id}&color={quote('a+b')}")[2].decode()
        assert "<option selected>a+b</option>" in compare


def test_requests_for_other_host_names_are_refused(ui: Any) -> None:
    request = urllib.request.Request(ui.url + "/", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400
    e.value.close()
    request = urllib.request.Request(ui.url + "/", headers={"Host": "localhost"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_resumed_run_is_not_served_from_the_cache(tmp_path: Path) -> None:
    uri = str(tmp_path / "runstone.db")
    with runstone.init("resume", name="r", uri=uri) as run:
        for step in range(3):
            run.log({"loss": 1.0}, step=step)
    with Server(uri) as ui:
        url = f"{ui.url}/api/series?run={run.id}&key=loss"
        assert json.loads(get(url)[2])["returned"] == 3
        with runstone.init(resume=run.id, uri=uri) as again:
            for step in range(3, 10):
                again.log({"loss": 0.5}, step=step)
        assert json.loads(get(url)[2])["returned"] == 10


def test_verify_tab_of_a_reproduction_compares_it_with_its_original(
    ui: Any, ui_store: dict[str, Any]
) -> None:
    _, _, body = get(f"{ui.url}/runs/{ui_store['twin']}/verify")
    page = body.decode()
    assert "IDENTICAL" in page and f'A: <a href="/runs/{ui_store["base"]}">' in page


def test_compare_needs_two_different_runs(ui: Any, ui_store: dict[str, Any]) -> None:
    _, _, body = get(f"{ui.url}/compare?run={ui_store['base']}&run={ui_store['base'][:12]}", expect=400)
    assert b"two or more different runs" in body


def test_no_store_yet_shows_the_hint_every_time(tmp_path: Path) -> None:
    with Server(str(tmp_path / "nothing" / "runstone.db")) as ui:
        for _ in range(2):
            assert b"No runs yet" in get(ui.url + "/")[2]


def test_project_survives_the_column_picker(ui: Any) -> None:
    page = get(ui.url + "/?project=vision")[2].decode()
    picker = page[page.index('<details class="columns">') :]
    assert 'name="project" value="vision"' in picker[: picker.index("</details>")]


def test_large_download_streams(tmp_path: Path) -> None:
    uri = str(tmp_path / "runstone.db")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 16) * 64)  # 4 MiB
    with runstone.init("dl", name="dl", uri=uri) as run:
        run.log_artifact(big, name="big")
    with Server(uri) as ui:
        _, headers, body = get(ui.url + "/artifacts/dl/big/v1/raw")
    assert body == big.read_bytes() and headers["content-length"] == str(len(body))


def test_log_shows_what_the_terminal_showed() -> None:
    from runstone.ui.pages import _terminal_text

    raw = "\x1b[32mok\x1b[0m done\n 10%|#  \r 50%|##  \r100%|###\nend\r\n"
    assert _terminal_text(raw) == "ok done\n100%|###\nend\n"


def test_a_bad_sort_is_blamed_on_the_sort(ui: Any) -> None:
    page = get(ui.url + "/?order=" + quote("metrics.loss +"))[2].decode()
    assert "Fix the sort" in page and "clear it" in page
