"""`decapod completion bash|zsh|fish`: every command of the parser, and its options, complete
in the real shells."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from bot.cli_completion import Command, command_tree

TREE = command_tree(build_parser())


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def _expected(command: Command) -> set[str]:
    words = {name for name, _ in command.subcommands}
    words |= {flag for option in command.options for flag in option.flags}
    if isinstance(command.positional, tuple):
        words |= set(command.positional)
    return words


def _shell(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_the_tree_has_every_command_and_nested_action() -> None:
    paths = {c.path for c in TREE}
    for expected in (
        "",
        "ask",
        "status",
        "logs",
        "init",
        "memory reindex",
        "pairing list",
        "mcp list",
        "mcp test",
    ):
        assert expected in paths, expected
    logs = next(c for c in TREE if c.path == "logs")
    level = next(o for o in logs.options if "--level" in o.flags)
    assert level.value == ("debug", "info", "warning", "error", "critical")


def test_bash_registers_and_completes_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bash = _shell("bash")
    script = tmp_path / "decapod.bash"
    script.write_text(_script("bash", capsys))
    # one bash run asks for the completions at every command of the tree
    cases = [(c, ["decapod", *c.path.split(), ""]) for c in TREE]
    probes = "\n".join(
        "COMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
        f"COMP_CWORD={len(words) - 1}\n_decapod\n"
        'printf "%s\\n" "@@ ${COMPREPLY[*]}"'
        for _, words in cases
    )
    empty = tmp_path / "empty"  # where a path argument finds no file to offer
    empty.mkdir()
    out = subprocess.run(
        [bash, "-c", f"source {script}\ncomplete -p decapod\n{probes}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=empty,
    ).stdout.splitlines()

    assert out[0] == "complete -F _decapod decapod"
    replies = [line[3:].split() for line in out[1:] if line.startswith("@@")]
    for (command, _), reply in zip(cases, replies, strict=True):
        assert set(reply) == _expected(command), command.path


def test_bash_completes_values_and_skips_them_when_walking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bash = _shell("bash")
    script = tmp_path / "decapod.bash"
    script.write_text(_script("bash", capsys))

    (tmp_path / "config.toml").write_text("")

    def complete(*words: str) -> list[str]:
        quoted = " ".join(f"'{w}'" for w in words)
        probe = f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _decapod"
        run = subprocess.run(
            [bash, "-c", f'source {script}\n{probe}; echo "${{COMPREPLY[*]}}"'],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        return run.stdout.split()

    assert complete("decapod", "logs", "--level", "w") == ["warning"]
    assert complete("decapod", "completion", "z") == ["zsh"]
    assert complete("decapod", "--home", "/tmp/x", "memory", "re") == ["reindex"]
    assert complete("decapod", "init", "--provider", "o") == ["ollama", "openai", "openrouter"]
    assert complete("decapod", "memory", "search", "--person", "ali", "--l") == ["--limit"]
    assert complete("decapod", "config", "check", "conf") == ["config.toml"]
    assert complete("decapod", "--config", "con") == ["config.toml"]


def test_zsh_script_is_valid_and_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zsh = _shell("zsh")
    script = tmp_path / "_decapod"
    script.write_text(_script("zsh", capsys))
    subprocess.run([zsh, "-n", str(script)], check=True)
    # the completion system's builtins, stood in for, print what they were given
    stubs = (
        "compdef() { :; }\n"
        f"source {script}\n"
        '_describe() { print -l -- "${(@P)4}"; }\n'
        'compadd() { print -l -- "${@:2}"; }\n'
    )
    probe = 'words=(decapod memory ""); CURRENT=3; _decapod; print @@; '
    probe += 'words=(decapod --home /x logs --level ""); CURRENT=6; _decapod'
    out = subprocess.run(
        [zsh, "-f", "-c", stubs + probe], capture_output=True, text=True, check=True
    ).stdout
    memory, levels = out.split("@@\n")
    assert {line.split(":")[0] for line in memory.splitlines()} == _expected(
        next(c for c in TREE if c.path == "memory")
    )
    assert levels.split() == ["debug", "info", "warning", "error", "critical"]


def test_fish_script_is_valid_and_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fish = _shell("fish")
    script = tmp_path / "decapod.fish"
    script.write_text(_script("fish", capsys))
    subprocess.run([fish, "--no-execute", str(script)], check=True)

    def complete(line: str) -> set[str]:
        run = subprocess.run(
            [fish, "--no-config", "-c", f"source {script}; complete -C'{line}'"],
            capture_output=True,
            text=True,
            check=True,
        )
        return {entry.split("\t")[0] for entry in run.stdout.splitlines()}

    memory = next(c for c in TREE if c.path == "memory")
    assert complete("decapod memory ") == {name for name, _ in memory.subcommands}
    assert complete("decapod --home /x logs --level ") == {
        "debug",
        "info",
        "warning",
        "error",
        "critical",
    }
    assert "--resume" in complete("decapod memory reindex --")
