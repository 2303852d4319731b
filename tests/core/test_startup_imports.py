"""What a start does not import: parts that only some configurations or the first use need
stay out of `decapod run`'s start (time to ready, P4) and of an idle gateway (P5). Each
check runs in a fresh interpreter, since this test process has imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHECK = """
import asyncio, json, os, sys
from pathlib import Path

from bot.config import parse_config
from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from bot.store import Store
from channels import create_channel

home = Path(sys.argv[1])
config = parse_config(
    {
        "http": {"host": "127.0.0.1", "port": 0},
        "logging": {"file": ""},
        "channels": {"dc": {"type": "discord", "token_env": "DC_TOKEN"}},
    },
    home,
)
os.environ["DC_TOKEN"] = "MTIz.startup-imports.token"  # the channel reads it when made
create_channel("dc", config.channels["dc"], config)


class Deliverer:
    async def deliver(self, conversation, text):
        return "sent"


async def scheduler_runs() -> None:
    from bot.scheduler import Scheduler, SchedulerConfig

    async with Store(home / "decapod.db") as store:
        scheduler = Scheduler(store, Deliverer(), config=SchedulerConfig())
        await scheduler.start()
        await asyncio.sleep(0.05)  # its loop has made a pass and armed its wake-up
        await scheduler.stop()


async def gateway_starts() -> list[list[str]]:
    gateway = Gateway(config.model_copy(update={"channels": {}}), provider=ScriptedProvider([]))
    at_ready: list[str] = []
    begin = gateway.warmup.begin

    def ready() -> None:  # the channels are up: /health says ok from here
        at_ready.extend(sys.modules)
        begin()

    gateway.warmup.begin = ready
    async with gateway:
        await gateway.warmup.wait()
        return [sorted(at_ready), sorted(sys.modules)]


at_ready, warm = asyncio.run(gateway_starts())
asyncio.run(scheduler_runs())
print(json.dumps([at_ready, warm, sorted(sys.modules)]))
"""


def _modules_at_ready_and_after_warm_up(
    tmp_path: Path,
) -> tuple[set[str], set[str], set[str]]:
    """The modules at ready, after the warm-up, and after a scheduler ran as well."""
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    at_ready, warm, after = json.loads(out.strip().splitlines()[-1])
    return set(at_ready), set(warm), set(after)


def test_the_scheduler_memory_and_the_skills_load_after_ready(tmp_path: Path) -> None:
    at_ready, warm, _ = _modules_at_ready_and_after_warm_up(tmp_path)
    assert {"discord", "bot.scheduler.config", "bot.memory.config"} <= at_ready  # it ran
    # the scheduler's service, commands and tools, memory's service and the skills (their
    # YAML front matter) are warm-up steps, begun once the channels are up; the config's
    # `[scheduler]` and `[memory]` sections do not import their services
    after_ready = {
        "bot.scheduler.service",
        "bot.scheduler.commands",
        "bot.scheduler.tools",
        "bot.store.jobs",
        "bot.checkins",
        "bot.memory.service",
        "bot.memory.commands",
        "bot.skills.library",
        "bot.skills.runtime",
        "yaml",
    }
    assert not after_ready & at_ready
    assert after_ready <= warm
    # with no hook configured, the hooks' runners and bus are not loaded at all
    assert not {"bot.hooks.runners", "bot.hooks.bus"} & warm


def test_a_gateway_on_sqlite_its_channels_and_scheduler_import_only_what_they_use(
    tmp_path: Path,
) -> None:
    _, _, modules = _modules_at_ready_and_after_warm_up(tmp_path)
    assert {"discord", "bot.scheduler.service", "bot.skills.runtime"} <= modules  # it ran
    # the PostgreSQL store (and its SQL translation) is imported when one is opened, the
    # table of replicas (PostgreSQL's only) with a replica's heartbeats
    assert "bot.cluster.registry" in modules
    assert not {"bot.store.postgres", "bot.store.replicas"} & modules
    # cryptography checks the signatures of Discord's interactions mode only
    assert not {m for m in modules if m.split(".")[0] == "cryptography"}
    # the scheduler's wake-up is a timer of the loop; APScheduler only evaluates cron rules
    assert not {m for m in modules if m.startswith("apscheduler.schedulers")}
    # the skills' folder is watched from a little after the start on
    assert "watchfiles" not in modules
    # /remind's grammar is compiled with the first /remind; its command is registered
    assert "bot.scheduler.commands" in modules
    assert "bot.scheduler.grammar" not in modules
    # memory's exports and its extraction before compaction load with their first use
    assert "bot.memory.service" in modules
    assert not {"bot.memory.export", "bot.memory.extract"} & modules
    # the web tools are on: a page's extraction loads with the first fetch, the search
    # APIs (and their HTML parser) with a configured provider; speech with a `[speech]` chain
    assert {"bot.web.tools", "bot.media.voice"} <= modules
    assert not {"bot.web.extract", "bot.web.search", "html.parser", "bot.media.speech"} & modules
    # the web UI is mounted; its usage chart loads with the first usage page
    assert "bot.webui.panel" in modules
    assert "bot.webui.charts" not in modules


PROVIDERS_CHECK = """
import json, sys

from bot.providers.build import make_provider
from bot.providers.config import ProviderConfig

loaded = []
for config in (ProviderConfig(preset="ollama"), ProviderConfig(type="anthropic", api_key_env="K")):
    make_provider("p", config, environ={"K": "key"})
    loaded.append(sorted(m for m in sys.modules if m.startswith("bot.providers.")))
print(json.dumps(loaded))
"""


def test_a_provider_imports_the_client_module_of_its_own_api_only() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROVIDERS_CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    openai_only, both = (set(m) for m in json.loads(out.strip().splitlines()[-1]))
    assert "bot.providers.openai" in openai_only
    assert "bot.providers.anthropic" not in openai_only
    assert "bot.providers.anthropic" in both
