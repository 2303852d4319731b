"""The platforms' tests share checks in command_attachments.py: its asserts are rewritten as
a test module's are, so a failure shows the values compared."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.channels.command_attachments")
