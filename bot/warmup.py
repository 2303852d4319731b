"""Start-up steps that nothing needs before the gateway is ready: the scheduler (its service,
/remind, its tools, the check-ins), memory (its package and its background start) and the
skills (their YAML front matter, the library). They run in that order, in one task begun once
the channels are up and `/health` says ok; whatever needs them (a turn, a scheduled task, the
web UI's memory, skills and reminders pages) awaits `WarmUp.wait()` first, so a
message that arrives meanwhile waits and then gets the full prompt, tools and memory.

A step that fails (or is still running after `STEP_TIMEOUT_S`) is logged, shown by `/health`
(status degraded, `warm_up`) and `decapod status`, and raised to every waiter as
`StartUpStepFailed`: a turn says so and its message stays pending for the next start, as when
a start fails. Security parts (the redactor, the sandbox's choice, the allow-lists) are never
steps here: they are settled before ready."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.errors import DecapodError
from bot.tasks import cancel_and_wait

log = logging.getLogger("decapod.gateway")

#: a step still running after this long fails: what waits for it (turns, scheduled tasks,
#: web UI pages) would otherwise wait, unanswered and unexplained, until a restart; memory's
#: and the skills' steps take well under a second
STEP_TIMEOUT_S = 120.0

#: one step: it may push its own stop onto the stack it is given
Step = Callable[[contextlib.AsyncExitStack], Awaitable[None]]
StepState = Literal["waiting", "running", "done", "failed"]


class StartUpStepFailed(DecapodError):
    """A start-up step run after ready failed; what needs it cannot work until a restart."""

    def __init__(self, step: str, cause: BaseException) -> None:
        reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        super().__init__(f"start-up step {step!r} failed: {reason}")
        self.step = step
        self.user_message = (
            f"Sorry, part of my start-up ({step}) failed, so I cannot answer yet. "
            "Your message is kept; the owner can see why with `decapod status`."
        )


@dataclass(slots=True)
class _StepRun:
    name: str
    step: Step
    imports: tuple[str, ...]
    state: StepState = "waiting"
    error: StartUpStepFailed | None = None
    #: set once the step has run or failed
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class WarmUp:
    """The steps, added during the start (in the order they must run) and begun once ready."""

    def __init__(self) -> None:
        self._steps: list[_StepRun] = []
        self._task: asyncio.Task[None] | None = None
        self._begun = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._ok = False

    def add(self, name: str, step: Step, *, imports: tuple[str, ...] = ()) -> None:
        """`imports`: the modules the step needs, imported in a worker thread before it runs
        (the GIL is handed back every few ms, so /health and the channels keep answering;
        imported on the loop, they would hold it for tens of ms just after ready)."""
        if self._task is not None:
            raise RuntimeError(f"warm-up step {name!r} added after the warm-up began")
        self._steps.append(_StepRun(name, step, imports))

    def begin(self) -> None:
        """Run the steps, one after the other (a later one may need what an earlier one
        registered: the skills check their `tools` against every tool)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="warm-up")
            self._begun.set()

    async def wait(self) -> None:
        """Until every step has run; raises the first failure. Waits for `begin()` as well:
        a turn resumed during the start runs once the steps have."""
        if self._ok:  # every turn asks: after the warm-up, without an await
            return
        await self._begun.wait()
        assert self._task is not None
        await asyncio.shield(self._task)
        for run in self._steps:
            if run.error is not None:
                raise run.error

    async def wait_for(self, name: str) -> None:
        """Until step `name` has run; raises its failure or an earlier step's (a later
        step's failure does not matter to what needs this one only)."""
        for run in self._steps:
            await run.ended.wait()
            if run.error is not None:
                raise run.error
            if run.name == name:
                return
        raise KeyError(f"no warm-up step {name!r}")

    def state(self) -> dict[str, str]:
        """Each step's state for /health and `decapod status`, a failure with its reason."""
        return {r.name: str(r.error) if r.error is not None else r.state for r in self._steps}

    @property
    def failed(self) -> bool:
        return any(r.error is not None for r in self._steps)

    async def aclose(self) -> None:
        """Stop a warm-up still running, then what its steps started (last first)."""
        await cancel_and_wait(self._task)
        await self._stack.aclose()

    async def _run(self) -> None:
        for run in self._steps:
            run.state = "running"
            bound = asyncio.timeout(STEP_TIMEOUT_S)
            try:
                async with bound:
                    if run.imports:
                        await asyncio.to_thread(_import_all, run.imports)
                    await run.step(self._stack)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the warm-up itself is stopped (aclose)
                # raised by the step itself: as any failure, or the step would show
                # "running" for good and every waiter would be cancelled
                self._fail(run, exc)
                return
            except Exception as exc:
                late = TimeoutError(f"still running after {STEP_TIMEOUT_S:g} s")
                self._fail(run, late if bound.expired() else exc)
                return  # the later steps may need this one: none of them runs
            run.state = "done"
            run.ended.set()
        self._ok = True

    @staticmethod
    def _fail(run: _StepRun, exc: BaseException) -> None:
        run.state = "failed"
        run.error = StartUpStepFailed(run.name, exc)
        run.ended.set()
        log.error("%s; turns wait for a restart", run.error, exc_info=exc)


def _import_all(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)
