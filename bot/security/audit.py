"""`decapod security audit`: risky settings in the config and on this host, and how to fix each."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config
from bot.http import is_loopback_host


@dataclass(frozen=True, slots=True)
class Finding:
    risk: str  # high | medium | low
    what: str
    fix: str


def _config_findings(config: Config) -> list[Finding]:
    found: list[Finding] = []
    if config.http.enabled and not is_loopback_host(config.http.host):
        found.append(
            Finding(
                "high",
                f"the HTTP server binds to {config.http.host}, reachable from other machines",
                'set [http] host = "127.0.0.1" and put an authenticated reverse proxy in front; '
                "create the admin token with the setup code before exposing anything",
            )
        )
    for name, channel in config.channels.items():
        access = getattr(channel, "access", None)
        if access is None:
            continue
        if access.dm_policy == "open":
            found.append(
                Finding(
                    "high",
                    f'channels.{name}: anyone can talk to the bot (dm_policy = "open")',
                    f'set [channels.{name}.access] dm_policy = "pairing" (or "allowlist")',
                )
            )
        wildcard = access.groups.get("*")
        if wildcard is not None and not wildcard.require_mention:
            found.append(
                Finding(
                    "medium",
                    f"channels.{name}: the bot answers every message in every group",
                    "list the allowed groups by id, and keep require_mention = true",
                )
            )
        if access.allow_bots:
            found.append(
                Finding(
                    "medium",
                    f"channels.{name}: other bots are answered (allow_bots = true)",
                    "set allow_bots = false unless two bots must talk; loops cost tokens",
                )
            )
    sandbox = config.sandbox
    if sandbox.allow_host_exec:
        found.append(
            Finding(
                "high",
                "sandbox.allow_host_exec = true: commands may run on this host unsandboxed",
                "set allow_host_exec = false and install bubblewrap or Docker",
            )
        )
    if sandbox.exec_for_users:
        found.append(
            Finding(
                "medium",
                "sandbox.exec_for_users = true: people other than the owner run commands",
                'keep it false, or set sandbox.approval = "always"',
            )
        )
    if sandbox.exec_in_groups:
        found.append(
            Finding(
                "medium",
                "sandbox.exec_in_groups = true: commands can be run from group chats",
                "set exec_in_groups = false",
            )
        )
    if sandbox.approval == "never" and (sandbox.exec_for_users or sandbox.exec_in_groups):
        found.append(
            Finding(
                "high",
                "commands from others run without the owner's approval",
                'set sandbox.approval = "ask" or "always"',
            )
        )
    if config.web.enabled and config.web.allow_private:
        found.append(
            Finding(
                "high",
                "web.allow_private = true: web_fetch reaches this machine and its network",
                "set allow_private = false and list what must be reachable in web.allow_hosts",
            )
        )
    if not config.gateway.owners:
        found.append(
            Finding(
                "low",
                "no owner is configured: nobody can approve pairing codes from chat",
                'add your identity key to [gateway] owners, e.g. ["telegram:123456789"]',
            )
        )
    return found


def _host_findings(config: Config, config_path: Path | None) -> list[Finding]:
    found: list[Finding] = []
    home = config.home
    if home.exists() and stat.S_IMODE(home.stat().st_mode) & 0o077:
        found.append(
            Finding(
                "high",
                f"{home} can be read by other users of this machine",
                f"chmod 700 {home}",
            )
        )
    path = config_path or home / "config.toml"
    from bot.security.files import shared_entries

    shared = shared_entries(home, [config.log_file])
    readable = [p for p in shared if p not in (home.resolve(), path.resolve())]
    if readable:
        found.append(
            Finding(
                # behind a private home folder nobody else can reach them
                "high" if home.resolve() in shared else "medium",
                f"other users can read {', '.join(str(p) for p in readable)}",
                f"chmod go-rwx {' '.join(str(p) for p in readable)} (decapod run also does this "
                "at start)",
            )
        )
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            found.append(
                Finding("medium", f"{path} can be read by other users", f"chmod 600 {path}")
            )
        from bot.security.redact import Redactor

        text = path.read_text(encoding="utf-8", errors="replace")
        kinds = sorted({f.kind for f in Redactor(entropy=True).find(text)})
        if kinds:
            found.append(
                Finding(
                    "high",
                    f"{path} seems to contain secrets ({', '.join(kinds)})",
                    "move each secret to an environment variable and name it with a *_env key",
                )
            )
    return found


def audit(config: Config, config_path: Path | None = None) -> list[Finding]:
    return _config_findings(config) + _host_findings(config, config_path)


def run_audit(config: Config, config_path: Path | None = None) -> int:
    findings = audit(config, config_path)
    if not findings:
        print("no risky settings found")
        return 0
    order = {"high": 0, "medium": 1, "low": 2}
    for f in sorted(findings, key=lambda f: order[f.risk]):
        print(f"[{f.risk}] {f.what}\n    fix: {f.fix}")
    return 1 if any(f.risk != "low" for f in findings) else 0
