"""The `[hooks]` section of the config file."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from bot.config_base import Section, empty_list


class HookEventName(StrEnum):
    MESSAGE_RECEIVED = "message_received"
    BEFORE_MODEL = "before_model"
    #: the only event whose hooks are waited for: one may block the call
    BEFORE_TOOL = "before_tool"
    AFTER_TOOL = "after_tool"
    REPLY_SENT = "reply_sent"
    SESSION_RESET = "session_reset"
    JOB_FIRED = "job_fired"


class CommandHookConfig(Section):
    """A program run once per event, with the event as JSON on its stdin."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    #: argv, run directly (no shell); the first item is an absolute path or found on PATH
    command: list[str] = Field(min_length=1)
    events: list[HookEventName] = Field(min_length=1)
    #: seconds before the program is killed (a timeout counts as a failure)
    timeout_s: float | None = Field(default=None, gt=0, le=300)
    #: a before_tool hook that is only advisory: when it fails (error, timeout, bad output,
    #: switched off), the call runs. Off by default: a failing guard blocks the calls it sees
    fail_open: bool = False

    @field_validator("command")
    @classmethod
    def _no_empty(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the program to run must not be empty")
        return value


class HooksConfig(Section):
    commands: list[CommandHookConfig] = Field(default_factory=empty_list)
    #: load the Python hooks that installed packages declare (entry point group
    #: decapod.hooks). Off by default: a hook sees every message, so a package installed for
    #: something else must not start reading them unasked (and the scan costs the start time)
    entry_points: bool = False
    #: names of hooks (commands or entry points) that stay off
    disabled: list[str] = Field(default_factory=empty_list)
    #: the default time a hook may take
    timeout_s: float = Field(default=5.0, gt=0, le=300)
    #: consecutive failures (errors, timeouts, bad output) that switch a hook off for a while
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=60.0, gt=0)
    #: events waiting per hook; past it, new events for that hook are dropped (and logged)
    queue_size: int = Field(default=100, ge=1)

    @field_validator("commands")
    @classmethod
    def _unique(cls, value: list[CommandHookConfig]) -> list[CommandHookConfig]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"hook names must be unique; repeated: {', '.join(dupes)}")
        return value
