"""Reminders and scheduled agent tasks: persisted, leased, delivered at least once.

    scheduler = Scheduler(store, deliverer, task_runner, config=config.scheduler)
    await scheduler.start()          # the delivery loop; APScheduler only for cron rules
    deps = dataclasses.replace(deps, scheduler=scheduler)
    for t in scheduler_tools(): registry.register(t)
    register_scheduler_commands(commands)

See service.py for the delivery guarantees and grammar.py for what `/remind` understands.
"""

from bot.errors import ConversationGone
from bot.scheduler.commands import register_scheduler_commands
from bot.scheduler.config import SchedulerConfig
from bot.scheduler.service import (
    Deliverer,
    ScheduleError,
    Scheduler,
    TaskRunner,
)
from bot.scheduler.tools import scheduler_tools
from bot.store.jobs import Job, JobKind, JobStatus

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
