"""`decapod doctor`: checks the config, storage, providers and channels, and says how to fix."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

from bot.config import Config
from bot.errors import ConfigError
from bot.providers.config import ProviderConfig, split_model_ref
from bot.proxy_env import ProxyLookup, check_proxy_env

if TYPE_CHECKING:
    import aiohttp

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
    if config.store.is_postgres:
        checks.append(await _check_postgres(config))
        return checks
    try:
        async with Store(config.db_path) as store:
            # a damaged file often opens and answers: quick_check then returns its problems
            # as rows instead of raising, and only "ok" means none were found
            rows = await store.read(lambda c: c.execute("PRAGMA quick_check(5)").fetchall())
        problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
        if problems:
            found = "; ".join(" ".join(p.split()) for p in problems)[:300]
            checks.append(
                (
                    "database",
                    False,
                    f"{config.db_path} is damaged ({found}); stop the gateway, keep a copy of "
                    "the file, and restore a backup or rebuild it with sqlite3's .recover",
                )
            )
        else:
            checks.append(("database", True, str(config.db_path)))
    except Exception as exc:
        checks.append(("database", False, f"{config.db_path}: {exc}"))
    return checks


async def _check_postgres(config: Config) -> Check:
    """The PostgreSQL store answers and is migrated; names the server's version."""
    from bot.store.pg_store import PgStore

    try:
        password = config.store.password()
        store = PgStore(config.store.url, password=password, pool_size=1)
        async with store:
            version = await store.server_version()
        return (
            "database",
            True,
            f"PostgreSQL {version} at {store.label}; memory vector search: "
            f"{store.vector_support.describe()}",
        )
    except Exception as exc:
        return ("database", False, f"PostgreSQL: {exc}")


async def check_providers(config: Config) -> list[Check]:
    """Each provider: its key variables are set, the server takes the key, and it serves every
    model the chains name. A 401 is a failure here, not proof that the server answers."""
    import aiohttp

    wanted: dict[str, list[str]] = {}
    for ref in [*config.models.chat, *(r for refs in config.models.routes.values() for r in refs)]:
        provider, model = split_model_ref(ref)
        if model not in wanted.setdefault(provider, []):
            wanted[provider].append(model)
    try:
        check_proxy_env()
    except ConfigError as exc:
        return [("providers", False, str(exc))]
    # the proxy from the environment, as the providers' own sessions take it
    proxies = ProxyLookup()
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=5), trust_env=False
    ) as http:
        results = await asyncio.gather(
            *(
                _check_provider(http, proxies, name, provider, wanted.get(name, []))
                for name, provider in config.providers.items()
            )
        )
    return [check for checks in results for check in checks]


async def _check_provider(
    http: aiohttp.ClientSession,
    proxies: ProxyLookup,
    name: str,
    provider: ProviderConfig,
    models: list[str],
) -> list[Check]:
    import aiohttp

    what = f"provider {name}"
    keys: list[tuple[str | None, str | None]] = []
    for path, env in provider.key_env_names():
        value = os.environ.get(env, "").strip()
        if not value:
            return [(what, False, f"${env} is not set (providers.{name}.{path}): export it")]
        keys.append((env, value))
    base = provider.resolved_base_url().rstrip("/")
    listing = "/models" if provider.type == "openai" else "/v1/models"
    url = base + listing
    served: set[str] | None = None
    for variable, key in keys or [(None, None)]:
        try:
            proxy = await proxies.for_url(url)
            # no redirect, as the provider's own requests follow none: the model calls
            # would not reach where a redirect leads
            async with http.get(
                url, headers=_auth_headers(provider, key), proxy=proxy, allow_redirects=False
            ) as resp:
                status = resp.status
                location = resp.headers.get("Location", "")
                body = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
            hint = "is the server running?" if provider.is_local() else "network?"
            return [(what, False, f"{url}: {exc or 'timeout'} ({hint})")]
        if status in (401, 403):
            whose = f"the key in ${variable}" if variable else "requests without a key"
            return [(what, False, f"{url} refused {whose} ({status}): check the key")]
        if status == 404:
            return [(what, False, f"{url} not found: is base_url right (often it ends in /v1)?")]
        if status != 200:
            moved = f" ({_redirect_advice(url, location, listing)})" if location else ""
            return [(what, False, f"{url} answered {status}{moved}")]
        if served is None:
            served = _model_ids(body)
    checks: list[Check] = [(what, True, f"{url} answered" + (" (key accepted)" if keys else ""))]
    for model in models:
        if served is not None and not _serves(served, model):
            listed = ", ".join(sorted(served)[:8]) + (", …" if len(served) > 8 else "")
            checks.append(
                (
                    f"model {name}:{model}",
                    False,
                    f"{name} has no model {model!r} (it has: {listed or 'none'}); "
                    "fix [models] or install the model on the server",
                )
            )
    return checks


def _redirect_advice(url: str, location: str, listing: str) -> str:
    """Where a redirect of the model list leads, and the base_url that would reach it when the
    Location (maybe relative) is the list's new place; one elsewhere (a login page) gives no
    base_url to suggest."""
    target = urljoin(url, location)
    parts = urlsplit(target)
    path = parts.path.rstrip("/")
    if not path.endswith(listing):
        return f"it leads to {target}"
    base = urlunsplit((parts.scheme, parts.netloc, path.removesuffix(listing), "", ""))
    return f"it leads to {target}: base_url should probably be {base.rstrip('/')}"


def _auth_headers(provider: ProviderConfig, key: str | None) -> dict[str, str]:
    if provider.type == "anthropic":
        return {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {})}
    return {"Authorization": f"Bearer {key}"} if key else {}


def _model_ids(body: object) -> set[str] | None:
    """The ids in an OpenAI/Anthropic model list; None when the body is not one."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return {str(m["id"]) for m in data if isinstance(m, dict) and "id" in m}


def _serves(served: set[str], model: str) -> bool:
    # Ollama lists "llama3.2:latest" for the "llama3.2" it also answers to
    return model in served or f"{model}:latest" in served


async def check_channels(config: Config) -> list[Check]:
    from channels import adapter_checks

    checks: list[Check] = []
    for name, ch_cfg in config.channels.items():
        checks.extend(await adapter_checks(name, ch_cfg))
    return checks


async def check_sandbox(config: Config) -> list[Check]:
    """Which backend runs commands, and which limits it enforces here. Run it as the
    service runs (its user, its cgroup): a limit depends on both."""
    from bot.sandbox import choose_backend

    selection = await choose_backend(config.sandbox, config.home)
    if selection.backend is not None:
        await selection.backend.aclose()
    # no sandbox is not a failure: the exec tool is simply off, and this says why; unless
    # the config names a backend, which asks for exec, and that backend did not start (one
    # that started but lacks a limit fails the "sandbox limits" row below)
    enforced = selection.enforcement
    if selection.backend is not None:
        checks: list[Check] = [("sandbox", True, selection.line)]
    elif config.sandbox.backend in ("docker", "bwrap") and enforced is None:
        detail = (
            f"exec tool off: {selection.line}; sandbox.backend = "
            f'"{config.sandbox.backend}" asks for it: fix that, or set backend = "none"'
        )
        checks = [("sandbox", False, detail)]
    else:
        checks = [("sandbox", True, f"exec tool off: {selection.line}")]
    if enforced is None:
        return checks
    if not enforced.missing:
        checks.append(("sandbox limits", True, f"all enforced: {enforced.summary()}"))
    elif selection.backend is not None:
        detail = f"NOT enforced: {enforced.missing_text()} (allowed by allow_unenforced_limits)"
        checks.append(("sandbox limits", True, detail))
    else:
        detail = (
            f"NOT enforced: {enforced.missing_text()}; so exec is off. Run under systemd with "
            "Delegate=yes (systemd/decapod.service) or as root, or set "
            "sandbox.allow_unenforced_limits = true"
        )
        checks.append(("sandbox limits", False, detail))
    return checks


async def check_memory(config: Config) -> list[Check]:
    if not config.memory.enabled:
        return [("memory", True, "disabled in config")]
    from bot.memory import MemoryService
    from bot.security.redact import default_redactor
    from bot.store.config import open_store

    async with open_store(config.store, config.home) as store:
        memory = MemoryService(store, config.memory, config.home, redact=default_redactor().redact)
        await memory.start(watch=False)
        try:
            async with asyncio.timeout(30):
                await memory.wait_ready()
                if memory.status().embedder:  # a packaged model loads on first use: try it
                    await memory.chain.embed(["doctor probe"])
            status = memory.status()
            classes = memory.class_words_status()
        finally:
            await memory.stop()
    detail = status.mode + (
        f", embedder {status.embedder} ({status.dim} dims)" if status.embedder else ""
    )
    detail += f", {classes}"
    if status.reason:
        detail += f"; {status.reason}"
    return [("memory", True, detail)]


async def check_mcp(config: Config) -> list[Check]:
    """Each MCP server started, listed and stopped, as the gateway would."""
    from bot.mcp.cli import doctor_checks

    return await doctor_checks(config)


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
    check_mcp,
    check_skills,
    check_hooks,
]


async def _guarded(
    group: Callable[[Config], Awaitable[list[Check]]], config: Config
) -> list[Check]:
    """A group of checks that cannot run at all (a read-only home, say) is one failed check,
    not the end of the report."""
    try:
        return await group(config)
    except Exception as exc:
        from bot.operator_errors import explain

        what = group.__name__.removeprefix("check_")
        return [(what, False, explain(exc) or f"{type(exc).__name__}: {exc}")]


def missing_config(path: Path, home: Path, environ: Mapping[str, str]) -> str | None:
    """What `decapod doctor` says before `decapod init`: no config file at `path`, no
    `DECAPOD_*` key in `environ` and no database in `home` (`decapod run` starts from the
    defaults and those keys, so a home set up that way has something to check). None when
    there is something."""
    from bot.config_env import env_overrides
    from bot.store.config import StoreConfig

    if path.is_file() or env_overrides(environ) or StoreConfig().sqlite_path(home).exists():
        return None
    return _line(
        "config",
        False,
        f"no config file at {path}: run `decapod init` to create one, pass --config PATH, "
        "or set the keys as DECAPOD_<TABLE>__<KEY> environment variables",
    )


def _line(what: str, ok: bool, detail: str) -> str:
    """One check as `decapod doctor` prints it."""
    return f"{'ok  ' if ok else 'FAIL'} {what:<18} {detail}"


async def run_doctor(config: Config) -> int:
    checks: list[Check] = [("config", True, f"home {config.home}")]
    groups = [check_storage, check_providers, check_channels, *EXTRA_CHECKS]
    for result in await asyncio.gather(*(_guarded(group, config) for group in groups)):
        checks.extend(result)
    from bot.security.redact import scrub

    failed = 0
    for what, ok, detail in checks:
        # details quote URLs and errors from the config and servers: a key in a base_url's
        # query string, a password in a redirect's Location, or a key a server echoed back
        # must not reach the terminal or a pasted report
        print(_line(what, ok, scrub(detail)))
        failed += not ok
    print("all good" if not failed else f"{failed} check(s) failed")
    return 0 if not failed else 1
