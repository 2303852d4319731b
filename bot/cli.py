"""`decapod` command line: argument parsing only; the work lives in bot/operate.py.

Nothing heavy is imported here, so `decapod --version` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot import __version__

#: commands parsed without the rest of the tree: `decapod run`'s start does not wait for
#: the imports of every other command's parser (~0.1-0.2 s)
LEAN_COMMANDS = frozenset({"run"})


def command_word(argv: list[str]) -> str | None:
    """The subcommand in `argv`, past the global options."""
    words = iter(argv)
    for word in words:
        if word in ("--home", "--config"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(*, full: bool = True) -> argparse.ArgumentParser:
    """The whole command tree; `full=False`: the global options and `run` only."""
    parser = argparse.ArgumentParser(prog="decapod", description="Decapod assistant gateway")
    parser.add_argument("--version", action="version", version=f"decapod {__version__}")
    parser.add_argument(
        "--home", type=Path, help="home folder (default ~/.decapod or $DECAPOD_HOME)"
    )
    parser.add_argument("--config", type=Path, help="config file (default HOME/config.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("run", help="start the gateway with the configured channels")
    if not full:
        return parser
    sub.add_parser("chat", help="chat with the assistant in this terminal")
    _add_operator_commands(sub)
    sub.add_parser("doctor", help="check the config, providers, storage and channels")
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument(
        "--to",
        metavar="URL",
        help="copy this home's SQLite database into PostgreSQL (postgresql://user@host/db)",
    )
    migrate.add_argument(
        "--password-env", metavar="VAR", help="the environment variable holding its password"
    )
    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = cfg_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", nargs="?", type=Path)
    providers = sub.add_parser("providers", help="LLM providers")
    providers_sub = providers.add_subparsers(
        dest="providers_command", metavar="ACTION", required=True
    )
    providers_sub.add_parser("status", help="probe each provider and show the chain's state")
    pairing = sub.add_parser("pairing", help="approve people who asked to talk to the bot")
    pairing_sub = pairing.add_subparsers(dest="pairing_command", metavar="ACTION", required=True)
    pairing_sub.add_parser("list", help="pending codes and approved people")
    approve = pairing_sub.add_parser("approve", help="approve a pairing code")
    approve.add_argument("code")
    revoke = pairing_sub.add_parser("revoke", help="withdraw an approval")
    revoke.add_argument("identity", help="channel:user_id")
    security = sub.add_parser("security", help="security checks")
    security_sub = security.add_subparsers(dest="security_command", metavar="ACTION", required=True)
    security_sub.add_parser("audit", help="check the config and this host for risky settings")
    _add_optional_parts(sub)
    from bot import cli_completion

    cli_completion.add_subparsers(sub)  # last in the list: a tool about all the others
    return parser


def _add_operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands whose module adds its own parser and handler (`set_defaults(run_command=)`)."""
    from bot import cli_ask, cli_init, cli_logs, cli_status

    cli_init.add_subparsers(sub)
    cli_ask.add_subparsers(sub)
    cli_status.add_subparsers(sub)
    cli_logs.add_subparsers(sub)


def _add_optional_parts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bot.hooks import cli as hooks_cli
    from bot.mcp import cli as mcp_cli
    from bot.memory import cli as memory_cli
    from bot.sandbox import cli as sandbox_cli
    from bot.scheduler import cli as scheduler_cli
    from bot.skills import cli as skills_cli

    sandbox_cli.add_subparsers(sub)
    memory_cli.add_subparsers(sub)
    scheduler_cli.add_subparsers(sub)
    mcp_cli.add_subparsers(sub)
    skills_cli.add_subparsers(sub)
    hooks_cli.add_subparsers(sub)
    from channels import add_channel_commands

    add_channel_commands(sub)  # `decapod discord ...`, through the channel registry


def main(argv: list[str] | None = None, *, configure_logging: bool = True) -> int:
    """Run one command. configure_logging=False: leave the root logger (its level, handlers,
    the log file) as the calling program set it, only with the redaction filters put on its
    handlers and the HTTP and SDK loggers (httpx, httpcore, openai, anthropic, ...) raised to
    WARNING; for a command run in-process."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:
        # answered before the subcommand tree is built: that imports the optional parts
        print(f"decapod {__version__}")
        return 0
    args = build_parser(full=command_word(argv) not in LEAN_COMMANDS).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    args.configure_logging = configure_logging
    if args.command == "run":
        from bot import code_cache

        code_cache.install()  # first: the start's generated methods compiled once, not each time
        from bot.heap import hold_collections_until_settled

        hold_collections_until_settled()  # until the gateway is up (bot/heap.py)
        from bot.aiohttp_lean import import_aiohttp

        import_aiohttp()  # first: its non-verifying TLS context skips the CA store
        from bot.pydantic_lean import import_plugin_loader

        import_plugin_loader()  # before the config's models: no importlib.metadata
    from bot import operate
    from bot.errors import ConfigError

    try:
        return operate.dispatch(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except operate.CannotRun as exc:
        print(f"decapod: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
