"""Reminders and scheduled agent tasks: persisted, leased, delivered at least once.

    scheduler = Scheduler(store, deliverer, task_runner, config=config.scheduler)
    await scheduler.start()          # the delivery loop; APScheduler only for cron rules
    deps = dataclasses.replace(deps, scheduler=scheduler)
    for t in scheduler_tools(): registry.register(t)
    register_scheduler_commands(commands)

See service.py for the delivery guarantees and grammar.py for what `/remind` understands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.errors import ConversationGone
    from bot.scheduler.commands import register_scheduler_commands
    from bot.scheduler.config import SchedulerConfig
    from bot.scheduler.service import Deliverer, ScheduleError, Scheduler, TaskRunner
    from bot.scheduler.tools import scheduler_tools
    from bot.store.jobs import Job, JobKind, JobStatus

#: each name and the module it comes from, imported with the name's first use: every start
#: enters this package for `bot.scheduler.config` (the config's `[scheduler]`), while the
#: service, its commands and tools start after ready (a warm-up step, bot/features.py)
_EXPORTS = {
    "ConversationGone": "bot.errors",
    "Deliverer": "bot.scheduler.service",
    "Job": "bot.store.jobs",
    "JobKind": "bot.store.jobs",
    "JobStatus": "bot.store.jobs",
    "ScheduleError": "bot.scheduler.service",
    "Scheduler": "bot.scheduler.service",
    "SchedulerConfig": "bot.scheduler.config",
    "TaskRunner": "bot.scheduler.service",
    "register_scheduler_commands": "bot.scheduler.commands",
    "scheduler_tools": "bot.scheduler.tools",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "ConversationGone",
    "Deliverer",
    "Job",
    "JobKind",
    "JobStatus",
    "ScheduleError",
    "Scheduler",
    "SchedulerConfig",
    "TaskRunner",
    "register_scheduler_commands",
    "scheduler_tools",
]
