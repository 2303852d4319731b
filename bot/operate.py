"""What the `decapod` subcommands do. Each returns a process exit code."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bot import __version__
from bot.cli_banner import start_banner
from bot.config import Config, HttpConfig, format_validation_error, load_config, missing_secrets
from bot.errors import StoreError
from bot.logging import setup_command_logging
from bot.operator_errors import explain


class CannotRun(Exception):
    """Something on this machine stops the command (a port in use, a read-only or full disk).
    The message is one line that names the cause and the fix; no traceback is shown."""


def dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "chat": cmd_chat,
        "doctor": cmd_doctor,
        "migrate": cmd_migrate,
        "config": cmd_config,
        "pairing": cmd_pairing,
        "providers": cmd_providers,
        "security": cmd_security,
        "sandbox": cmd_sandbox,
        "memory": cmd_memory,
        "models": cmd_memory,
        "reminders": cmd_reminders,
        "mcp": cmd_mcp,
        "skills": cmd_skills,
        "hooks": cmd_hooks,
    }
    # a command whose module set its own handler, else one of the table; any other command
    # is a channel's own (`decapod discord ...`)
    handler = getattr(args, "run_command", None) or handlers.get(args.command, cmd_channel)
    try:
        return handler(args)
    except (OSError, StoreError) as exc:
        line = explain(exc)
        if line is None:
            raise
        raise CannotRun(line) from exc


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.home)


async def _until_signal(done: Awaitable[Any] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.ensure_future(stop.wait())]
    if done is not None:
        waiters.append(asyncio.ensure_future(done))
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in pending:
        w.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


# run / chat ----------------------------------------------------------------------------------
def _setup_logging(
    args: argparse.Namespace, config: Config, stream_level: str | None = None
) -> None:
    setup_command_logging(
        args,
        config.logging.level,
        config.logging.format,
        config.log_file,
        stream_level=stream_level,
        max_bytes=int(config.logging.file_max_mb * 1024 * 1024),
        backups=config.logging.file_backups,
    )


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)
    _setup_logging(args, config)
    try:
        asyncio.run(_run(config))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        address = f"{config.http.host}:{config.http.port}"
        raise CannotRun(
            f"cannot listen on {address}: another program (another decapod?) uses that port; "
            "stop it, or set a free port in the config ([http] port = ...)"
        ) from None
    return 0


async def _run(config: Config) -> None:
    import os
    import time

    from bot.gateway import Gateway
    from bot.runtime import GatewayRuntime, local_url, remove_runtime, write_runtime

    async with Gateway(config) as gateway:
        runtime = None
        if gateway.http is not None:
            url = local_url(config.http.host, gateway.http.port)
            token = gateway.http.auth.issue_local_token()
            runtime = GatewayRuntime(url, token, os.getpid(), time.time())
            write_runtime(config.home, runtime)
        print(start_banner(gateway), flush=True)
        from bot.heap import settle_soon

        settling = settle_soon()
        _finish_code_cache()
        for channel in gateway.channels.values():
            channel.after_ready()
        try:
            await _until_signal()
        finally:
            settling.cancel()
            if runtime is not None:
                remove_runtime(config.home, runtime)


def _finish_code_cache() -> None:
    """The start is over: what it compiled goes to the table for the next start (in a
    thread: its encoding and write, a few ms on a first start, keep off the event loop)."""
    from bot import code_cache

    cache = code_cache.finish()  # the builtins back, the table's bytes let go, at once
    if cache is not None and cache.compiled:
        asyncio.get_running_loop().run_in_executor(None, cache.save)


def cmd_chat(args: argparse.Namespace) -> int:
    config = _config(args)
    # the terminal is for the conversation; logs go to the file, only errors to stderr
    _setup_logging(args, config, stream_level="ERROR")
    asyncio.run(_chat(config))
    return 0


async def _chat(config: Config) -> None:
    from bot.gateway import Gateway
    from channels.console import ConsoleChannel

    config = config.model_copy(update={"http": HttpConfig(enabled=False), "channels": {}})
    console = ConsoleChannel("console", files_dir=config.home / "outbox")
    print(
        f"Decapod {__version__}: chatting with {', '.join(config.models.chat)}. "
        "/help for commands, /exit or Ctrl-D to leave.",
        flush=True,
    )
    async with Gateway(config, channels={"console": console}):
        await _until_signal(console.closed.wait())


# config check / migrate / doctor -------------------------------------------------------------
def cmd_config(args: argparse.Namespace) -> int:
    config = load_config(args.path or args.config, args.home)
    missing = missing_secrets(config, os.environ)
    if missing:
        # the names only: a value never reaches a terminal
        for key, variable in missing:
            print(
                f"config error: {key}: environment variable {variable} is not set", file=sys.stderr
            )
        print("export them, then check again (decapod run stops at the first)", file=sys.stderr)
        return 2
    channels = ", ".join(f"{n} ({c.type})" for n, c in config.channels.items()) or "none"
    print(f"config ok: models {', '.join(config.models.chat)}; channels: {channels}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from bot.progress import Progress, interrupted

    config = _config(args)
    if getattr(args, "to", None):
        return _copy_to_postgres(config, args.to, args.password_env)
    progress = Progress("migrate", unit="migrations")

    async def go() -> list[str]:
        from bot.store.config import open_store

        async with open_store(config.store, config.home, migration_progress=progress) as store:
            return store.migrations_applied

    try:
        with progress:
            applied = asyncio.run(go())
    except KeyboardInterrupt:
        return interrupted(
            f"{progress.done} of {progress.total or 0} migrations applied, each one whole",
            "run `decapod migrate` again to apply the rest",
        )
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.config import config_location
    from bot.doctor import missing_config, run_doctor

    # before `decapod init` there is nothing to check, and opening the default store would
    # create a database in a home that was never set up
    home, path = config_location(args.config, args.home)
    missing = missing_config(path, home, os.environ)
    if missing is not None:
        print(missing)
        return 1
    config = _config(args)
    setup_command_logging(args, "ERROR", "text")  # the checks say it all; no stray warnings
    return asyncio.run(run_doctor(config))


# optional parts ------------------------------------------------------------------------------
def cmd_sandbox(args: argparse.Namespace) -> int:
    from bot.sandbox import cli

    return cli.run(args, _config(args).home)


def cmd_memory(args: argparse.Namespace) -> int:
    from bot.memory import cli

    config = _config(args)
    from bot.store.config import open_store

    return cli.run(args, config.home, open_store(config.store, config.home), config.memory)


def _copy_to_postgres(config: Config, url: str, password_env: str | None) -> int:
    from pydantic import ValidationError

    from bot.errors import ConfigError
    from bot.security.redact import scrub
    from bot.store.config import StoreConfig
    from bot.store.copy import copy_sqlite_to_postgres

    try:
        target = StoreConfig(url=url, password_env=password_env or "")
        if not target.is_postgres:
            raise ConfigError("--to: expected postgresql://user@host:port/database")
        copied = copy_sqlite_to_postgres(config.db_path, url, target.password())
    except ValidationError as exc:
        # pydantic's own text repeats the input: a secret typed as --password-env, or a
        # password in the --to URL, would be printed back
        flags = {"url": "--to", "password_env": "--password-env"}
        for problem in format_validation_error(exc).splitlines():
            key, _, msg = problem.partition(": ")
            print(f"error: {flags.get(key, key)}: {scrub(msg)}", file=sys.stderr)
        return 1
    except (ConfigError, StoreError, ValueError) as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return 1
    for c in copied:
        print(f"{c.table}: {c.source_rows} rows, {c.target_rows} there")
    print(f"copied {config.db_path} into {url}; set [store] url to use it")
    return 0


def cmd_reminders(args: argparse.Namespace) -> int:
    from bot.scheduler import cli
    from bot.store.config import open_store

    config = _config(args)
    return cli.run(args, open_store(config.store, config.home))


def cmd_skills(args: argparse.Namespace) -> int:
    from bot.skills import cli

    return cli.run(args, _config(args))


def cmd_hooks(args: argparse.Namespace) -> int:
    from bot.hooks import cli

    return cli.run(args, _config(args))


def cmd_channel(args: argparse.Namespace) -> int:
    from channels import run_channel_command

    return run_channel_command(args, _config(args))


def cmd_mcp(args: argparse.Namespace) -> int:
    from bot.mcp import cli

    config = _config(args)
    setup_command_logging(args, "ERROR", "text")  # a server's own chatter is not the answer
    return cli.run(args, config)


def cmd_security(args: argparse.Namespace) -> int:
    from bot.security.audit import run_audit

    return run_audit(_config(args), args.config)


# providers -----------------------------------------------------------------------------------
def cmd_providers(args: argparse.Namespace) -> int:
    config = _config(args)
    return asyncio.run(_providers_status(config))


async def _providers_status(config: Config) -> int:
    from bot.providers.build import ProviderSet
    from bot.security.redact import scrub

    failed = 0
    async with ProviderSet(config.providers, config.models) as providers:
        for name in providers.providers:
            error = await providers.probe_once(name)
            failed += error is not None
            # as in `decapod doctor`: a key in a base_url's query string is not printed
            print(
                scrub(
                    f"{'ok  ' if error is None else 'FAIL'} {name:<16} "
                    f"{config.providers[name].resolved_base_url()}  {error or ''}".rstrip()
                )
            )
        for purpose in ("chat", *config.models.routes):
            print(f"chain {purpose}: {' -> '.join(config.models.chain_for(purpose))}")
        for entry in providers.state():
            cooling = entry["cooldown_remaining_s"]
            print(
                f"  {entry['name']:<32} {entry['state']:<9}"
                + (f" cooling {cooling:.0f}s" if cooling else "")
            )
    return 0 if not failed else 1


# pairing -------------------------------------------------------------------------------------
def cmd_pairing(args: argparse.Namespace) -> int:
    config = _config(args)
    return asyncio.run(_pairing(config, args))


async def _pairing(config: Config, args: argparse.Namespace) -> int:
    from bot.store.config import open_store

    async with open_store(config.store, config.home) as store:
        if args.pairing_command == "approve":
            found = await store.access.approve(args.code, "cli")
            if found is None:
                print(f"no pending code {args.code.upper()} (expired or mistyped)")
                return 1
            print(f"approved {found.display_name or found.user_id} on {found.channel}")
        elif args.pairing_command == "revoke":
            channel, _, user_id = args.identity.partition(":")
            ok = await store.access.revoke(channel, user_id)
            print("revoked" if ok else "no such approval")
            return 0 if ok else 1
        else:
            pending = await store.access.pending()
            if not pending:
                print("no pending requests")
            for code in pending:
                print(f"pending  {code.code}  {code.channel}:{code.user_id}  {code.display_name}")
            for channel, user_id, name in await store.access.paired():
                print(f"approved {channel}:{user_id}  {name}")
            _print_pending_counts([code.channel for code in pending])
    return 0


def _print_pending_counts(channels: list[str]) -> None:
    from collections import Counter

    from bot.security.access import MAX_PENDING_PER_CHANNEL as cap

    for channel, count in sorted(Counter(channels).items()):
        full = count >= cap
        note = " - full: new people get no code until some are approved or expire" if full else ""
        print(f"{channel}: {count} of at most {cap} codes pending{note}")
