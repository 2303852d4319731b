"""`decapod run` imports pydantic's plugin loader through bot/pydantic_lean.py: with no
plugin installed the config's models are built without importlib.metadata, and a plugin an
operator installed is still found and used. Each check runs in a fresh interpreter, since
this test process has imported pydantic's loader and importlib.metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CHECK = """
import json, sys

if sys.argv[1] == "run":  # through `decapod run`'s entry, its work (and its imports) stubbed out
    import types

    operate = types.ModuleType("bot.operate")  # the real one imports the config's models
    operate.dispatch = lambda args: 0
    sys.modules["bot.operate"] = operate
    from bot import cli

    cli.main(["run"])
else:
    from bot.pydantic_lean import import_plugin_loader

    import_plugin_loader()
    import_plugin_loader()  # a second call finds the loader imported and changes nothing

from bot.config import parse_config
from pydantic.plugin._loader import get_plugins

metadata_at_build = "importlib.metadata" in sys.modules
config = parse_config({"logging": {"file": ""}}, __import__("pathlib").Path("."))
plugins = [type(p).__name__ for p in get_plugins()]
metadata_after = "importlib.metadata" in sys.modules
import importlib.metadata

import plugin_probe  # written by the test: the plugin, or a module that records nothing

print(json.dumps({
    "metadata_at_build": metadata_at_build,
    "metadata_after": metadata_after,
    "plugins": plugins,
    "validated": plugin_probe.SEEN,
    "real_metadata": hasattr(importlib.metadata, "distributions"),
}))
"""

#: a pydantic plugin that records the models it is asked about
PLUGIN = """
SEEN = []


class Probe:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config,
                             plugin_settings):
        SEEN.append(schema_type_path.name)
        return None, None, None


plugin = Probe()
"""


def _check(how: str, tmp_path: Path, *, plugin: bool) -> dict[str, Any]:
    site = tmp_path / "site"
    site.mkdir()
    if plugin:
        (site / "plugin_probe.py").write_text(PLUGIN)
        info = site / "plugin_probe-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-probe\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text("[pydantic]\nprobe = plugin_probe:plugin\n")
    else:
        (site / "plugin_probe.py").write_text("SEEN = []\n")
    return _run(CHECK, tmp_path, how)


def _run(code: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    """What `code` prints last, as JSON, run in a fresh interpreter with tmp_path/site first
    on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path / "site"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_without_a_plugin_the_models_are_built_without_importlib_metadata(tmp_path: Path) -> None:
    got = _check("import", tmp_path, plugin=False)
    assert got["plugins"] == []
    assert got["metadata_at_build"] is False
    assert got["metadata_after"] is False  # the config's models are built: still not imported
    assert got["real_metadata"] is True  # importing it later gives the real module


def test_decapod_run_imports_the_loader_through_it(tmp_path: Path) -> None:
    got = _check("run", tmp_path, plugin=False)
    assert got["plugins"] == []
    assert got["metadata_after"] is False


def test_an_installed_plugin_is_found_and_sees_the_config_models(tmp_path: Path) -> None:
    got = _check("run", tmp_path, plugin=True)
    assert got["plugins"] == ["Probe"]
    assert got["metadata_after"] is True  # found through importlib.metadata, as pydantic does
    assert "Config" in got["validated"]


#: a loader as pydantic before 2.14 wrote it: the module kept, `distributions()` called later
OLD_LOADER = """
import importlib.metadata as importlib_metadata


def get_plugins():
    found = importlib_metadata.distributions()
    return [d for d in found if d.entry_points.select(group="pydantic")]
"""

OLD_CHECK = """
import json, sys

from bot import pydantic_lean

pydantic_lean._LOADER = "old_plugin._loader"
pydantic_lean.import_plugin_loader()
left = "old_plugin._loader" in sys.modules
attribute = hasattr(sys.modules["old_plugin"], "_loader")
from old_plugin._loader import get_plugins

print(json.dumps({"left": left, "attribute": attribute, "plugins": len(get_plugins())}))
"""


def test_a_loader_that_keeps_the_module_is_imported_again_with_the_real_one(
    tmp_path: Path,
) -> None:
    package = tmp_path / "site" / "old_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_loader.py").write_text(OLD_LOADER)
    got = _run(OLD_CHECK, tmp_path)
    assert got == {"left": False, "attribute": False, "plugins": 0}
