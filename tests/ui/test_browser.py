"""The UI in a real headless browser: Debian's chromium driven by Playwright (never ``playwright install``).

Set ``RUNSTONE_SCREENSHOTS=DIR`` to keep screenshots of the main pages in DIR
(the ones in docs/images/ come from here).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import Server, get

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    return os.environ.get("RUNSTONE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("RUNSTONE_REQUIRE_BROWSER"):
            pytest.fail(
                "no chromium or playwright: install them (apt-get install chromium; pip install playwright)"
            )
        pytest.skip("no chromium browser here (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, ui: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=ui.url)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.problems = problems
    yield pg
    context.close()
    # 4xx pages log a console error for the failed document load; the tests expect none
    assert not problems, problems


def shot(pg: Any, name: str) -> None:
    folder = os.environ.get("RUNSTONE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        pg.evaluate("document.querySelector('.store').style.visibility = 'hidden'")  # a temporary path
        pg.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def drawn(pg: Any, selector: str = ".rs-chart", count: int | None = None) -> list[Any]:
    pg.wait_for_function(
        "([sel, n]) => { const c = [...document.querySelectorAll(sel)];"
        " return c.length > 0 && (n === null || c.length === n) && c.every(e => e.dataset.state === 'drawn'); }",
        arg=[selector, count],
        timeout=20_000,
    )
    return pg.query_selector_all(selector)


def test_table_filter_sort_select_compare(page: Any, ui_store: dict[str, Any]) -> None:
    pg = page
    pg.goto("/")
    assert pg.title() == "Runs · runstone"
    assert len(pg.query_selector_all("#runs tbody tr[data-id]")) == 6
    shot(pg, "runs")

    pg.fill("#filter", "params.optimizer.lr >= 0.1 and name != 'long'")
    pg.press("#filter", "Enter")
    pg.wait_for_url("**filter=*")
    names = pg.eval_on_selector_all("#runs tbody td.name > a", "els => els.map(e => e.textContent)")
    assert sorted(names) == ["base", "base-repro1", "drift", "wide"]

    pg.fill("#filter", "metrics.loss >")
    pg.press("#filter", "Enter")
    pg.wait_for_selector("#filter-error")
    assert "filter" in pg.inner_text("#filter-error").lower()
    assert pg.get_attribute("#filter", "aria-invalid") == "true"

    # sort by the lr column: click its header twice for descending
    pg.goto("/?cols=params.optimizer.lr,metrics.loss")
    pg.click("th >> text=params.optimizer.lr")
    pg.wait_for_url("**order=params.optimizer.lr*")
    pg.click("th >> text=params.optimizer.lr")
    pg.wait_for_url("**order=-params.optimizer.lr*")
    first = pg.inner_text("#runs tbody tr:first-child td.name a")
    assert first == "wide"

    # keyboard: move down the rows, select two with Space, open the comparison
    pg.focus("#runs tbody tr:first-child")
    pg.keyboard.press("Space")
    pg.keyboard.press("ArrowDown")
    pg.keyboard.press("Space")
    assert pg.inner_text("#selected") == "2 selected"
    assert pg.is_enabled("#compare")
    pg.click("#compare")
    pg.wait_for_url("**/compare?*")
    assert pg.title().startswith("Compare 2 runs")
    charts = drawn(pg)
    assert all(c.get_attribute("data-series-drawn") == "2" for c in charts)
    pg.wait_for_selector(".rs-parcoords[data-state=drawn]")
    assert pg.get_attribute(".rs-parcoords", "data-lines") == "2"
    shot(pg, "compare")


def test_run_page_chart_hover_zoom_log_scale(page: Any, ui_store: dict[str, Any]) -> None:
    pg = page
    pg.goto(f"/runs/{ui_store['base']}")
    assert pg.title() == "Overview · base · runstone"
    pg.click("nav.tabs >> text=Metrics")
    charts = drawn(pg, count=2)
    assert [c.get_attribute("data-series-drawn") for c in charts] == ["1", "1"]
    assert charts[0].get_attribute("data-points") == "120"
    shot(pg, "metrics")

    chart = charts[1]
    canvas = chart.query_selector("canvas")
    box = canvas.bounding_box()
    pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = chart.wait_for_selector(".rs-tooltip", state="visible")
    assert "base" in tooltip.inner_text()

    assert "log scale" not in canvas.get_attribute("aria-label")
    pg.check(".rs-chart-controls input[type=checkbox]")  # log scale
    pg.wait_for_function("el => el.getAttribute('aria-label').includes('log scale')", arg=canvas)
    assert chart.get_attribute("data-series-drawn") == "1"
    pg.uncheck(".rs-chart-controls input[type=checkbox]")  # (kept in localStorage otherwise)

    # drag to zoom: the chart asks the server for the window and draws fewer points
    pg.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
    pg.mouse.up()
    pg.wait_for_function("el => el.dataset.state === 'drawn' && +el.dataset.points < 120", arg=chart)


def test_long_series_draws_downsampled(page: Any, ui_store: dict[str, Any]) -> None:
    pg = page
    pg.goto(f"/runs/{ui_store['long']}/metrics")
    (chart,) = drawn(pg, count=1)
    assert 0 < int(chart.get_attribute("data-points")) <= 4000
    assert pg.evaluate("performance.getEntriesByName('rs-first-chart').length") == 1


def test_verify_report_marks_the_divergence(page: Any, ui_store: dict[str, Any]) -> None:
    pg = page
    pg.goto(f"/runs/{ui_store['base']}/verify?other={ui_store['drift']}&rtol=0&atol=0")
    assert "DIVERGED at step 40" in pg.inner_text("section.verdict")
    charts = drawn(pg)
    loss = pg.query_selector(".rs-chart[data-title=loss]")
    assert loss.get_attribute("data-series-drawn") == "2"
    assert '"x":40' in loss.get_attribute("data-markers")
    assert pg.query_selector_all("ol.causes li")
    assert charts
    shot(pg, "verify")


def test_lineage_graph_is_drawn_and_clickable(page: Any, ui_store: dict[str, Any]) -> None:
    pg = page
    pg.goto(f"/runs/{ui_store['base']}/lineage")
    nodes = pg.query_selector_all("svg.lineage g.node")
    assert len(nodes) == 2
    pg.click(f"svg.lineage a[href='/runs/{ui_store['twin']}']")
    pg.wait_for_url(f"**/runs/{ui_store['twin']}")


def test_live_run_updates_without_reload(browser: Any, tmp_path: Path) -> None:
    import runstone

    uri = str(tmp_path / "runstone.db")
    run = runstone.init("live", name="live", uri=uri, flush_interval_s=0.05)
    stop = threading.Event()
    second_metric = threading.Event()

    def train() -> None:
        step = 0
        while not stop.is_set():
            run.log({"loss": 1.0 / (step + 1)}, step=step)
            if second_metric.is_set():
                run.log({"lr": 0.1}, step=step)
            step += 1
            time.sleep(0.02)

    run.log({"loss": 1.0}, step=0)
    run.flush()
    worker = threading.Thread(target=train, daemon=True)
    with Server(uri, poll_ms=200) as server:
        pg = browser.new_page(base_url=server.url)
        try:
            pg.goto(f"/runs/{run.id}/metrics")
            (chart,) = drawn(pg, count=1)
            worker.start()
            points = int(chart.get_attribute("data-points"))
            pg.wait_for_function(
                "([el, n]) => +el.dataset.points > n + 5", arg=[chart, points], timeout=20_000
            )
            assert pg.is_visible(".badge.status-running")
            # a metric logged for the first time gets its chart
            second_metric.set()
            drawn(pg, count=2)
            stop.set()
            worker.join()
            run.finish()
            # once the run ends, the page shows it ended and the charts hold the last points
            pg.wait_for_selector(".run-head .badge.status-finished", timeout=20_000)
            charts = drawn(pg, count=2)
            final = json.loads(get(f"{server.url}/api/series?run={run.id}&key=loss")[2])
            loss = next(c for c in charts if c.get_attribute("data-title") == "loss")
            assert loss.get_attribute("data-points") == str(final["returned"])
            assert loss.get_attribute("data-polling") == "false"
        finally:
            stop.set()
            pg.close()
