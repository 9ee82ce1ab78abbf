"""``import runstone`` stays light, and the public names are exactly ``__all__``."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import runstone

PROBE = """
import json, sys
before = set(sys.modules)
import runstone
after = set(sys.modules)
third_party = sorted({m.split('.')[0] for m in after - before} - set(sys.stdlib_module_names) - {'runstone'})
print(json.dumps({"third_party": third_party, "runstone": sorted(m for m in after if m.startswith('runstone'))}))
"""


def _probe(code: str = PROBE) -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_import_loads_no_third_party_module() -> None:
    loaded = _probe()
    assert loaded["third_party"] == []
    # and only the package's own lightest modules
    assert loaded["runstone"] == ["runstone", "runstone._version"]


def test_starting_a_run_loads_no_third_party_module_either() -> None:
    code = PROBE.replace(
        "import runstone\n",
        "import runstone, tempfile, os\nos.chdir(tempfile.mkdtemp())\nrunstone.init().finish()\n",
    )
    assert _probe(code)["third_party"] == []


def test_all_is_sorted_and_is_the_public_api() -> None:
    assert runstone.__all__ == sorted(runstone.__all__)
    public = {
        name
        for name in dir(runstone)
        if not name.startswith("_") and not isinstance(getattr(runstone, name), types.ModuleType)
    } | {"__version__"}
    assert public == set(runstone.__all__)
    for name in runstone.__all__:
        assert getattr(runstone, name) is not None


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        runstone.nope  # type: ignore[attr-defined]  # noqa: B018
