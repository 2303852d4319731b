"""The platforms' tests share checks in command_attachments.py: its asserts are rewritten as
a test module's are, so a failure shows the values compared. `runs_a_command` is the model
of their buttons' tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider

pytest.register_assert_rewrite("tests.channels.command_attachments")


def runs_a_command() -> FunctionProvider:
    """A model that asks to run a command (one the sandbox asks approval for), then answers
    with what it printed."""

    async def model(request: ChatRequest) -> Any:
        last = request.messages[-1]
        if last.role == "user":
            return [ToolCall("x1", "exec", json.dumps({"command": "echo ran-$((40+2))"}))]
        return "result: " + last.content

    return FunctionProvider(model)
