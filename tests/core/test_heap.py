"""The serving gateway's collector settings, in a process of its own (they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    code = (
        "import gc, json\n"
        "from bot.heap import SERVING_THRESHOLDS, settle_after_start\n"
        "before = gc.get_freeze_count()\n"
        "settle_after_start()\n"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold(),"
        " list(SERVING_THRESHOLDS)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    before, frozen, thresholds, wanted = json.loads(out.stdout)

    assert before == 0 and frozen > 1000
    assert thresholds == wanted and thresholds[0] > 700  # 700: the interpreter's default


def test_run_holds_collections_until_the_gateway_is_up_then_collects_and_freezes() -> None:
    code = (
        "import gc, json\n"
        "import bot.operate\n"
        "from bot import cli, heap\n"
        "seen = {}\n"
        "def dispatch(args):\n"
        "    seen['during start'] = gc.isenabled()\n"
        "    heap.settle_after_start()\n"
        "    seen['after'] = [gc.isenabled(), gc.get_freeze_count() > 1000]\n"
        "    return 0\n"
        "bot.operate.dispatch = dispatch\n"
        "seen['before'] = gc.isenabled()\n"
        "cli.main(['run'])\n"
        "print(json.dumps(seen))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)

    assert json.loads(out.stdout) == {"before": True, "during start": False, "after": [True, True]}


def test_run_settles_the_heap_a_little_after_the_gateway_is_up_not_before_it_answers() -> None:
    # the settling collection holds the loop for ~40 ms: /health and the first requests are
    # answered before it, so it comes SETTLE_DELAY_S after ready
    code = (
        "import asyncio, gc, json\n"
        "import bot.gateway, bot.operate\n"
        "from bot import heap\n"
        "from bot.config import parse_config\n"
        "seen = {}\n"
        "class Gateway:\n"
        "    http = None\n"
        "    channels = {}\n"
        "    def __init__(self, config): pass\n"
        "    async def __aenter__(self): return self\n"
        "    async def __aexit__(self, *exc): return None\n"
        "async def until_signal():\n"
        "    seen['at ready'] = gc.isenabled()\n"
        "    await asyncio.sleep(heap.SETTLE_DELAY_S + 0.5)\n"
        "    seen['after the delay'] = [gc.isenabled(), gc.get_freeze_count() > 1000]\n"
        "bot.gateway.Gateway = Gateway\n"
        "bot.operate.start_banner = lambda gateway: 'up'\n"
        "bot.operate._until_signal = until_signal\n"
        "heap.hold_collections_until_settled()\n"
        "config = parse_config({'http': {'enabled': False}, 'logging': {'file': ''}}, None)\n"
        "asyncio.run(bot.operate._run(config))\n"
        "print(json.dumps(seen))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)

    assert json.loads(out.stdout.splitlines()[-1]) == {
        "at ready": False,
        "after the delay": [True, True],
    }
