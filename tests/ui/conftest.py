"""A store with runs worth looking at, and the UI serving it from a real uvicorn server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runstone
from tests.conftest import AppServer


def png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (red pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    rows = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _train(
    uri: str,
    name: str,
    *,
    lr: float,
    depth: int,
    perturb_at: int | None = None,
    tags: Any = None,
    steps: int = 120,
) -> str:
    rng = np.random.default_rng(7)
    with runstone.init(
        "vision",
        name=name,
        uri=uri,
        config={"optimizer": {"lr": lr}, "model": {"depth": depth, "act": "relu"}},
        tags=tags,
    ) as run:
        loss = 2.0
        for step in range(steps):
            loss = loss * (1 - lr * 0.05) + 0.01 * rng.standard_normal()
            if perturb_at is not None and step >= perturb_at:
                loss += 1e-3
            run.log({"loss": loss, "acc": 1 - loss / 3}, step=step)
        print(f"trained {name}: loss {loss:.4f}")
        return run.id


@pytest.fixture(scope="session")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs of one project: a base run, its identical reproduction, a diverging run, a long series, files."""
    root = tmp_path_factory.mktemp("ui-store")
    uri = str(root / "store" / "runstone.db")
    ids: dict[str, Any] = {"uri": uri, "root": root}
    ids["base"] = _train(uri, "base", lr=0.1, depth=3)
    ids["twin"] = _train(
        uri, "base-repro1", lr=0.1, depth=3, tags={"reproduction_of": ids["base"], "verdict": "IDENTICAL"}
    )
    ids["drift"] = _train(uri, "drift", lr=0.1, depth=3, perturb_at=40)
    ids["wide"] = _train(uri, "wide", lr=0.3, depth=5)
    script = root / "train.py"
    script.write_text(
        "import runstone\n"
        "with runstone.init(name='wrapped', config={'optimizer': {'lr': 0.05}}) as run:\n"
        "    for i in range(5):\n"
        "        run.log({'loss': 1 / (i + 1)}, step=i)\n"
        "        print(f'epoch {i} loss {1 / (i + 1):.3f}')\n"
    )
    command = [
        sys.executable,
        "-m",
        "runstone",
        "run",
        "--uri",
        uri,
        "--name",
        "wrapped",
        "--",
        sys.executable,
        str(script),
    ]
    subprocess.run(
        command, cwd=root, env={**os.environ, "RUNSTONE_PROJECT": "vision"}, check=True, capture_output=True
    )
    ids["wrapped"] = runstone.Client(uri).find_runs("name = 'wrapped'")[0].id
    files = root / "files"
    (files / "report" / "plots").mkdir(parents=True)
    (files / "report" / "summary.txt").write_text("accuracy 0.93\n<script>alert(1)</script>\n")
    (files / "report" / "plots" / "curve.png").write_bytes(png())
    (files / "report" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    with runstone.init(
        "vision", name="long", uri=uri, config={"optimizer": {"lr": 0.01}, "model": {"depth": 1}}
    ) as run:
        n = 200_000
        values = np.sin(np.arange(n) / 5000.0)
        values[123_457] = 50.0  # one spike the charts must keep
        values[150_000] = np.nan
        for step in range(n):
            run.log({"signal": float(values[step])}, step=step)
        run.log_artifact(files / "report", name="report")
        ids["long"] = run.id
    return ids


class Server(AppServer):
    """The UI (``create_app``) over the store at ``uri``, on a free loopback port."""

    def __init__(self, uri: str, poll_ms: int = 300, **kw: Any) -> None:
        from runstone.server.app import create_app

        super().__init__(create_app(uri, poll_ms=poll_ms, **kw))


@pytest.fixture(scope="session")
def ui(ui_store: dict[str, Any]) -> Any:
    with Server(ui_store["uri"]) as server:
        yield server


def get(url: str, *, expect: int = 200) -> tuple[str, dict[str, str], bytes]:
    """GET a URL; returns (content type, headers, body) after checking the status."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status, headers, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            status, headers, body = e.code, dict(e.headers), e.read()
    assert status == expect, f"{url}: {status}\n{body[:2000]!r}"
    return headers.get("content-type", ""), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
def store_dir(ui_store: dict[str, Any]) -> Path:
    return Path(ui_store["root"])
