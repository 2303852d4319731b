"""`decapod doctor`: checks the config, storage, providers and channels, and says how to fix."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.config import Config

Check = tuple[str, bool, str]  # (what, ok, detail)


async def check_storage(config: Config) -> list[Check]:
    from bot.store import Store, sqlite

    info = sqlite.info()
    checks: list[Check] = [
        ("sqlite", True, f"{info.module} (SQLite {info.sqlite_version})"),
        (
            "fts5",
            info.fts5,
            "full-text search" if info.fts5 else "FTS5 missing: keyword search off",
        ),
        (
            "sqlite-vec",
            info.vec_version is not None,
            info.vec_version or f"{info.vec_error}; memory falls back to keyword-only search",
        ),
    ]
    try:
        async with Store(config.db_path) as store:
            await store.read(lambda c: c.execute("PRAGMA quick_check").fetchone())
        checks.append(("database", True, str(config.db_path)))
    except Exception as exc:
        checks.append(("database", False, f"{config.db_path}: {exc}"))
    return checks


async def check_providers(config: Config) -> list[Check]:
    import aiohttp

    checks: list[Check] = []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for name, provider in config.providers.items():
            base = provider.resolved_base_url().rstrip("/")
            url = f"{base}/models" if provider.type == "openai" else f"{base}/v1/models"
            try:
                async with http.get(url) as resp:
                    # 401 still proves the server answers; the key is checked on first use
                    ok = resp.status < 500
                    checks.append((f"provider {name}", ok, f"{url} answered {resp.status}"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                hint = "is the server running?" if provider.is_local() else "network?"
                checks.append((f"provider {name}", False, f"{url}: {exc or 'timeout'} ({hint})"))
    return checks


async def check_channels(config: Config) -> list[Check]:
    """Each adapter module may offer `async doctor(name, channel_config) -> list[Check]`."""
    import importlib

    from channels import ADAPTERS

    checks: list[Check] = []
    for name, ch_cfg in config.channels.items():
        module_name = ADAPTERS[ch_cfg.type].partition(":")[0]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            checks.append((f"channel {name}", False, f"adapter not installed: {exc}"))
            continue
        doctor = getattr(module, "doctor", None)
        if doctor is not None:
            checks.extend(await doctor(name, ch_cfg))
    return checks


async def check_sandbox(config: Config) -> list[Check]:
    from bot.sandbox import select_backend

    backend, why = await select_backend(config.sandbox, config.home)
    if backend is not None:
        await backend.aclose()
    # no sandbox is not a failure: the exec tool is simply off, and this says why
    return [("sandbox", True, why if backend is not None else f"exec tool off: {why}")]


async def check_memory(config: Config) -> list[Check]:
    if not config.memory.enabled:
        return [("memory", True, "disabled in config")]
    from bot.memory import MemoryService
    from bot.security.redact import default_redactor
    from bot.store import Store

    async with Store(config.db_path) as store:
        memory = MemoryService(store, config.memory, config.home, redact=default_redactor().redact)
        await memory.start(watch=False)
        try:
            await asyncio.wait_for(memory.wait_ready(), 30)
            status = memory.status()
        finally:
            await memory.stop()
    detail = status.mode + (
        f" with {status.embedder} ({status.dim} dims)" if status.embedder else ""
    )
    if status.reason:
        detail += f"; {status.reason}"
    return [("memory", True, detail)]


async def check_skills(config: Config) -> list[Check]:
    if not config.skills.enabled:
        return [("skills", True, "disabled in config")]
    from bot.skills.cli import load_report

    current, drafts = await asyncio.to_thread(load_report, config)
    summary = (
        f"{len(current.available)} available, {len(current.unavailable)} unavailable, "
        f"{len(drafts)} drafts waiting"
    )
    checks: list[Check] = [("skills", True, summary)]
    checks += [(f"skill {b.folder.name}", False, b.reason) for b in current.broken]
    return checks


async def check_hooks(config: Config) -> list[Check]:
    from bot.hooks.cli import hook_lines

    lines = await asyncio.to_thread(hook_lines, config.hooks, config.home)
    return [(f"hook {line.name}", line.ok, line.detail) for line in lines]


#: extra checks that optional parts add
EXTRA_CHECKS: list[Callable[[Config], Awaitable[list[Check]]]] = [
    check_sandbox,
    check_memory,
    check_skills,
    check_hooks,
]


async def run_doctor(config: Config) -> int:
    checks: list[Check] = [("config", True, f"home {config.home}")]
    groups: list[Awaitable[list[Check]]] = [
        check_storage(config),
        check_providers(config),
        check_channels(config),
    ]
    groups += [extra(config) for extra in EXTRA_CHECKS]
    for result in await asyncio.gather(*groups):
        checks.extend(result)
    failed = 0
    for what, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what:<18} {detail}")
        failed += not ok
    print("all good" if not failed else f"{failed} check(s) failed")
    return 0 if not failed else 1
