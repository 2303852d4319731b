"""`decapod init`: a short wizard that writes HOME/config.toml.

It asks for the LLM provider (a local server's base URL, or the variable that holds a paid
API's key), the model, a chat channel (the variable that holds its token, which is verified
live through the adapter's own doctor check: Telegram getMe, Slack auth.test, Discord
users/@me) and the owner, then writes the file and ends with the next command to run.

Answers are read from stdin, terminal or not, so a script can pipe them in; at the end of
stdin the remaining questions take their defaults. Flags answer their question in advance,
and `--yes` asks nothing. An answer that cannot be right (an address without http://, a
secret where its variable's name belongs) is asked again on a terminal and ends a piped run
(exit 2), never echoed if it may be a secret.
Nothing is written when a check fails, unless the person says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Config

#: name: (type, default model, key variable or None for a server on this machine)
PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "ollama": ("openai", "llama3.2", None),
    "vllm": ("openai", "meta-llama/Llama-3.1-8B-Instruct", None),
    "llamacpp": ("openai", "default", None),
    "lmstudio": ("openai", "default", None),
    "openai": ("openai", "gpt-4o-mini", "OPENAI_API_KEY"),
    "openrouter": ("openai", "openai/gpt-4o-mini", "OPENROUTER_API_KEY"),
    "anthropic": ("anthropic", "claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
}
CHANNELS = ("telegram", "slack", "discord")


@dataclass(frozen=True, slots=True)
class TokenVariable:
    key: str  # the channel config's key that names the variable
    default: str
    what: str


#: per channel type: the variables its token(s) live in, and the key of its API address
CHANNEL_TOKENS: dict[str, tuple[TokenVariable, ...]] = {
    "telegram": (TokenVariable("token_env", "TELEGRAM_BOT_TOKEN", "the token @BotFather gave"),),
    "slack": (
        TokenVariable("bot_token_env", "SLACK_BOT_TOKEN", "the xoxb- bot token"),
        TokenVariable("app_token_env", "SLACK_APP_TOKEN", "the xapp- app-level token"),
    ),
    "discord": (TokenVariable("token_env", "DISCORD_BOT_TOKEN", "the bot's token"),),
}
CHANNEL_API_KEY = {"telegram": "api_base_url", "slack": "api_url", "discord": "api_base_url"}


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser(
        "init",
        help="set up HOME/config.toml: provider, model, a chat channel, the owner",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    init.add_argument("--provider", choices=list(PROVIDERS))
    init.add_argument("--model", help="model name, e.g. llama3.2 or gpt-4o-mini")
    init.add_argument("--base-url", help="the model server's URL (for a local server)")
    init.add_argument("--api-key-env", help="the variable that holds the provider's API key")
    init.add_argument("--channel", choices=[*CHANNELS, "none"], help="a chat platform to set up")
    init.add_argument("--token-env", help="the variable that holds the channel's bot token")
    init.add_argument("--app-token-env", help="Slack: the variable of the xapp- app token")
    init.add_argument(
        "--channel-api-url", help="the platform's API address (a self-hosted Bot API server)"
    )
    init.add_argument("--owner", help="your identity key, e.g. telegram:123456789")
    init.add_argument("--yes", "-y", action="store_true", help="no questions: flags or defaults")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.add_argument(
        "--skip-check", action="store_true", help="write the config even if a check fails"
    )
    init.set_defaults(run_command=run)


class Questions:
    """Asks on stdout, reads stdin; at its end (or with --yes) every answer is the default."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def ask(
        self, question: str, default: str, *, shown: Callable[[str], bool] | None = None
    ) -> str:
        if not self.interactive:
            return default
        print(f"{question} [{default}]: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input: defaults from here on
            self.interactive = False
            print()
            return default
        answer = line.strip()
        if not sys.stdin.isatty():
            # a piped answer shows up beside its question, unless it may be a secret
            print(answer if shown is None or shown(answer) else "")
        return answer or default

    def refused(self, why: str) -> None:
        """Say why an answer cannot be right. Only a terminal is asked again: piped answers
        are read in order, so the next line is the next question's answer, and taking it
        for this one would shift every answer after it into the wrong key."""
        print(f"  {why}")
        if not self.interactive or not sys.stdin.isatty():
            raise SystemExit(2)

    def checked(
        self,
        question: str,
        default: str,
        problem: Callable[[str], str | None],
        shown: Callable[[str], bool] | None = None,
    ) -> str:
        """An answer `problem` finds nothing wrong with; else it says why and, on a terminal,
        asks again, so one bad answer does not cost the others."""
        while True:
            answer = self.ask(question, default, shown=shown)
            why = problem(answer)
            if why is None:
                return answer
            self.refused(why)

    def variable(self, question: str, default: str) -> str:
        """The name of an environment variable. A secret pasted in its place is asked for
        again, never echoed or written; quotes around a name are dropped."""
        from bot.config_base import ENV_NAME

        def is_name(answer: str) -> bool:
            return ENV_NAME.fullmatch(answer.strip("\"' ")) is not None

        def problem(answer: str) -> str | None:
            if is_name(answer):
                return None
            return (
                "that is not a variable's name (letters, digits and _): put the secret "
                f"itself in the environment (export {default}=...) and give the name here"
            )

        return self.checked(question, default, problem, shown=is_name).strip("\"' ")

    def choose(self, question: str, choices: list[str], default: str) -> str:
        while True:
            answer = self.ask(f"{question} ({', '.join(choices)})", default).lower()
            if answer in choices:
                return answer
            self.refused(f"{answer!r} is not one of {', '.join(choices)}")


@dataclass(slots=True)
class Choices:
    provider: str = "ollama"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    channel: str | None = None
    token_envs: tuple[str, ...] = ()
    channel_api_url: str | None = None
    owner: str | None = None


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string escapes like JSON


def render_config(c: Choices) -> str:
    kind, default_model, _ = PROVIDERS[c.provider]
    lines = [
        "# Decapod configuration, written by `decapod init`.",
        "# Every key is described in config.example.toml.",
        "",
    ]
    if c.owner:
        lines += ["[gateway]", f"owners = [{_toml(c.owner)}]", ""]
    lines += [f"[providers.{c.provider}]", f"type = {_toml(kind)}"]
    if kind == "openai":
        lines.append(f"preset = {_toml(c.provider)}")
    if c.base_url:
        lines.append(f"base_url = {_toml(c.base_url)}")
    if c.api_key_env:
        lines.append(f"api_key_env = {_toml(c.api_key_env)}")
    lines += ["", "[models]", f"chat = [{_toml(f'{c.provider}:{c.model or default_model}')}]"]
    if c.channel:
        lines += ["", f"[channels.{c.channel}]", f"type = {_toml(c.channel)}"]
        for variable, env in zip(CHANNEL_TOKENS[c.channel], c.token_envs, strict=True):
            lines.append(f"{variable.key} = {_toml(env)}")
        if c.channel_api_url:
            lines.append(f"{CHANNEL_API_KEY[c.channel]} = {_toml(c.channel_api_url)}")
    return "\n".join(lines) + "\n"


def _url_problem(answer: str) -> str | None:
    from urllib.parse import urlsplit

    usage = "the address starts with http:// or https://, e.g. http://127.0.0.1:11434/v1"
    try:
        parts = urlsplit(answer)
        host = parts.hostname
    except ValueError:  # "http://[::1" and the like
        return usage
    if parts.scheme not in ("http", "https") or not host:
        return usage
    if parts.username is not None or parts.password is not None:
        # the config would refuse it (providers.<name>.base_url): asked again, not echoed
        return (
            "no user name or password in the address: put the server's key in an environment "
            "variable and give its name with --api-key-env"
        )
    return None


def gather(args: argparse.Namespace, q: Questions) -> Choices:
    c = Choices()
    c.provider = args.provider or q.choose("LLM provider", list(PROVIDERS), "ollama")
    _, default_model, key_env = PROVIDERS[c.provider]
    if key_env is None:
        from bot.providers.config import PRESET_BASE_URLS

        c.base_url = args.base_url or q.checked(
            f"base URL of your {c.provider} server",
            PRESET_BASE_URLS[c.provider],
            _url_problem,
            shown=lambda answer: "@" not in answer,  # user:password@ stays off the screen
        )
        if c.base_url == PRESET_BASE_URLS[c.provider]:
            c.base_url = None  # the preset says it already
        c.api_key_env = args.api_key_env  # a local server started with a key (vLLM --api-key)
    else:
        c.base_url = args.base_url
        c.api_key_env = args.api_key_env or q.variable(
            "environment variable that holds the API key", key_env
        )
    c.model = args.model or q.ask("model", default_model)
    c.channel = args.channel or q.choose("chat channel", [*CHANNELS, "none"], "none")
    if c.channel == "none":
        c.channel = None
    if c.channel is not None:
        flags = (args.token_env, args.app_token_env)
        c.token_envs = tuple(
            flag or q.variable(f"environment variable that holds {variable.what}", variable.default)
            for variable, flag in zip(CHANNEL_TOKENS[c.channel], flags, strict=False)
        )
        c.channel_api_url = args.channel_api_url
    owner = args.owner
    if owner is None and c.channel is not None:
        owner = q.ask(
            f"your user id on {c.channel}, for owner rights (blank: none yet; "
            "`decapod pairing list` shows it after you write to the bot)",
            "",
        )
    if owner and ":" not in owner and c.channel is not None:
        owner = f"{c.channel}:{owner}"  # the bare id the question asked for
    c.owner = owner or None
    return c


def run(args: argparse.Namespace) -> int:
    from bot.config import default_home

    home = (args.home or default_home()).expanduser()
    path = args.config or home / "config.toml"
    if path.exists() and not args.force:
        print(f"{path} exists already; use --force to overwrite it.", file=sys.stderr)
        return 1
    q = Questions(interactive=not args.yes)
    choices = gather(args, q)
    text = render_config(choices)
    config = _validated(text, home)  # never write a file that would not load
    if choices.channel is not None and not _channel_works(config, choices.channel, args, q):
        print(f"nothing written: fix the token, then run `decapod init` again ({path})")
        return 1
    _write_private(path, text)
    print(f"wrote {path}")
    _next_steps(choices, config)
    return 0


def _validated(text: str, home: Path) -> Config:
    import tomllib

    from bot.config import parse_config

    return parse_config(tomllib.loads(text), home)


def _channel_works(config: Config, name: str, args: argparse.Namespace, q: Questions) -> bool:
    """The adapter's own doctor checks, live against the platform."""
    import asyncio

    from channels import adapter_checks

    print(f"checking the {name} token with {name.capitalize()}…", flush=True)
    checks = asyncio.run(adapter_checks(name, config.channels[name]))
    for what, ok, detail in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: {detail}")
    if all(ok for _, ok, _ in checks) or args.skip_check:
        return True
    return q.ask("write the config anyway? (y/n)", "n").lower().startswith("y")


def _write_private(path: Path, text: str) -> None:
    import os

    from bot.security.files import PRIVATE_FILE, private_dirs

    private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), PRIVATE_FILE)
        out.write(text)


def _next_steps(choices: Choices, config: Config) -> None:
    from channels import SETUP_STEPS

    provider = config.providers[choices.provider]
    for _, env in provider.key_env_names():
        print(f"put the API key in the environment: export {env}=...")
    if choices.channel is not None:
        print(SETUP_STEPS[choices.channel])
        print("next: decapod run")
    else:
        print("next: decapod chat   (or `decapod run` for the HTTP server and reminders)")
