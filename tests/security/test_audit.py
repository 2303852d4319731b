from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.cli import main
from bot.config import load_config
from bot.security.audit import audit


def _write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_safe_config_has_no_risky_findings(home: Path) -> None:
    path = _write(home, '[gateway]\nowners = ["telegram:1"]\n')
    assert audit(load_config(path, home), path) == []


def test_risky_settings_are_each_reported_with_a_fix(home: Path, capsys: Any) -> None:
    token = "123456789:" + "A" * 35
    path = _write(
        home,
        f"""
[http]
host = "0.0.0.0"
[sandbox]
allow_host_exec = true
exec_for_users = true
[channels.tg]
type = "telegram"
[channels.tg.access]
dm_policy = "open"
# pasted by mistake: {token}
""",
    )
    home.chmod(0o755)
    path.chmod(0o644)
    findings = audit(load_config(path, home), path)
    text = "\n".join(f.what for f in findings)
    for expected in (
        "binds to 0.0.0.0",
        "dm_policy",
        "allow_host_exec",
        "exec_for_users",
        "can be read by other users of this machine",
        "can be read by other users",
        "seems to contain secrets (telegram_token)",
        "no owner",
    ):
        assert expected in text, expected
    assert all(f.fix for f in findings)
    assert main(["security", "audit"]) == 1
    out = capsys.readouterr().out
    assert "fix: chmod 700" in out and token not in out
