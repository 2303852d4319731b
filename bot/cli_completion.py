"""`decapod completion bash|zsh|fish`: shell completion generated from the argparse tree, so
every subcommand, option and choice the parser knows is completed, and nothing else.

Each script walks the words typed so far the same way: a word that names a subcommand of the
current command descends into it, an option that takes a value skips that value. Then it
offers the current command's subcommands and options, or the values of the option before the
cursor (choices, or file names for paths).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description=(
            "Print the completion script for a shell. bash: add "
            "'source <(decapod completion bash)' to ~/.bashrc; zsh: "
            "'source <(decapod completion zsh)' to ~/.zshrc (after compinit); fish: "
            "'decapod completion fish > ~/.config/fish/completions/decapod.fish'."
        ),
    )
    parser.add_argument("shell", choices=SHELLS)
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    from bot.cli import build_parser

    sys.stdout.write(SCRIPTS[args.shell](command_tree(build_parser())))
    return 0


# the tree ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Option:
    flags: tuple[str, ...]
    help: str
    #: None: a flag without a value; "file": a path; "any": free text; else the choices
    value: tuple[str, ...] | str | None


@dataclass(slots=True)
class Command:
    path: str  # "" for decapod itself, "memory search" for `decapod memory search`
    subcommands: list[tuple[str, str]] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    #: what a positional argument takes: choices, or "file"
    positional: tuple[str, ...] | str | None = None


def command_tree(parser: argparse.ArgumentParser) -> list[Command]:
    commands: list[Command] = []
    _walk(parser, "", commands)
    return commands


def _value_kind(action: argparse.Action) -> tuple[str, ...] | str | None:
    if action.nargs == 0:
        return None
    if action.choices is not None:
        return tuple(str(c) for c in action.choices)
    return "file" if action.type is Path else "any"


def _walk(parser: argparse.ArgumentParser, path: str, out: list[Command]) -> None:
    command = Command(path)
    out.append(command)
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                command.subcommands.append((name, helps.get(name, "")))
                children.append((name, child))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            command.options.append(
                Option(tuple(action.option_strings), action.help or "", _value_kind(action))
            )
        elif command.positional is None:
            kind = _value_kind(action)
            command.positional = kind if kind != "any" else None
    for name, child in children:
        _walk(child, f"{path} {name}".strip(), out)


def _valued(commands: list[Command]) -> list[tuple[str, str, Option]]:
    return [(c.path, f, o) for c in commands for o in c.options if o.value for f in o.flags]


def _words(command: Command) -> str:
    words = [name for name, _ in command.subcommands]
    words += [f for o in command.options for f in o.flags]
    if isinstance(command.positional, tuple):
        words += command.positional
    return " ".join(words)


# bash ----------------------------------------------------------------------------------------
def bash_script(commands: list[Command]) -> str:
    skip = " | ".join(f'"{p}|{f}"' for p, f, _ in _valued(commands))
    descend = " | ".join(f'"{c.path}|{name}"' for c in commands for name, _ in c.subcommands)
    values = []
    for path, flag, option in _valued(commands):
        if option.value == "file":
            reply = 'COMPREPLY=($(compgen -f -- "$cur"))'
        elif isinstance(option.value, tuple):
            reply = f'COMPREPLY=($(compgen -W "{" ".join(option.value)}" -- "$cur"))'
        else:
            reply = "COMPREPLY=()"
        values.append(f'        "{path}|{flag}") {reply}; return ;;')
    words = []
    for c in commands:
        files = ' $(compgen -f -- "$cur")' if c.positional == "file" else ""
        words.append(
            f'        "{c.path}") COMPREPLY=($(compgen -W "{_words(c)}" -- "$cur"){files}) ;;'
        )
    return f"""# bash completion for decapod: source <(decapod completion bash)
_decapod() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local path="" word i=1
    while [ "$i" -lt "$COMP_CWORD" ]; do
        word="${{COMP_WORDS[i]}}"
        case "$path|$word" in
        {skip}) i=$((i + 1)) ;;
        {descend}) path="${{path:+$path }}$word" ;;
        esac
        i=$((i + 1))
    done
    case "$path|$prev" in
{chr(10).join(values)}
    esac
    case "$path" in
{chr(10).join(words)}
    esac
}}
complete -F _decapod decapod
"""


# zsh -----------------------------------------------------------------------------------------
def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def zsh_script(commands: list[Command]) -> str:
    skip = "|".join(f'"{p}|{f}"' for p, f, _ in _valued(commands))
    descend = "|".join(f'"{c.path}|{name}"' for c in commands for name, _ in c.subcommands)
    values = []
    for path, flag, option in _valued(commands):
        if option.value == "file":
            action = "_files"
        elif isinstance(option.value, tuple):
            action = "compadd -- " + " ".join(option.value)
        else:
            action = "_message value"
        values.append(f'    "{path}|{flag}") {action}; return ;;')
    entries = []
    for c in commands:
        items = [f"{name}:{text}" for name, text in c.subcommands]
        items += [f"{flag}:{o.help}" for o in c.options for flag in o.flags]
        if isinstance(c.positional, tuple):
            items += list(c.positional)
        listed = " ".join(_zsh_quote(i.replace("\n", " ")) for i in items)
        files = "; _files" if c.positional == "file" else ""
        entries.append(f'    "{c.path}") choices=({listed}){files} ;;')
    return f"""#compdef decapod
# zsh completion for decapod: source <(decapod completion zsh), after compinit
_decapod() {{
  local cmdpath="" word prev="${{words[CURRENT-1]}}"
  local -a choices
  local -i i=2
  while (( i < CURRENT )); do
    word="${{words[i]}}"
    case "$cmdpath|$word" in
    {skip}) (( i++ )) ;;
    {descend}) cmdpath="${{cmdpath:+$cmdpath }}$word" ;;
    esac
    (( i++ ))
  done
  case "$cmdpath|$prev" in
{chr(10).join(values)}
  esac
  case "$cmdpath" in
{chr(10).join(entries)}
  esac
  _describe -t commands decapod choices
}}
if [[ "${{funcstack[1]}}" == _decapod ]]; then
  _decapod "$@"
else
  compdef _decapod decapod
fi
"""


# fish ----------------------------------------------------------------------------------------
def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", " ") + "'"


def fish_script(commands: list[Command]) -> str:
    skip = " ".join(_fish_quote(f"{p}|{f}") for p, f, _ in _valued(commands))
    descend = " ".join(
        _fish_quote(f"{c.path}|{name}") for c in commands for name, _ in c.subcommands
    )
    lines = [
        "# fish completion for decapod: decapod completion fish > "
        "~/.config/fish/completions/decapod.fish",
        "function __decapod_path",
        "    set -l tokens (commandline -opc)",
        "    set -l cmdpath ''",
        "    set -l skip 0",
        "    for word in $tokens[2..-1]",
        "        if test $skip = 1",
        "            set skip 0",
        "            continue",
        "        end",
        '        switch "$cmdpath|$word"',
        f"            case {skip}",
        "                set skip 1",
        f"            case {descend}",
        '                set cmdpath (string trim -- "$cmdpath $word")',
        "        end",
        "    end",
        '    echo "$cmdpath"',
        "end",
        "function __decapod_at",
        '    test (__decapod_path) = "$argv[1]"',
        "end",
        "complete -c decapod -f",
    ]
    for c in commands:
        at = f"-n {_fish_quote('__decapod_at ' + _fish_quote(c.path))}"
        for name, text in c.subcommands:
            lines.append(f"complete -c decapod {at} -a {name} -d {_fish_quote(text)}")
        if isinstance(c.positional, tuple):
            lines.append(f"complete -c decapod {at} -a {_fish_quote(' '.join(c.positional))}")
        elif c.positional == "file":
            lines.append(f"complete -c decapod {at} -F")
        for option in c.options:
            flags = " ".join(
                f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}" for f in option.flags
            )
            if option.value == "file":
                value = " -r -F"
            elif isinstance(option.value, tuple):
                value = f" -x -a {_fish_quote(' '.join(option.value))}"
            elif option.value == "any":
                value = " -x"
            else:
                value = ""
            lines.append(f"complete -c decapod {at} {flags}{value} -d {_fish_quote(option.help)}")
    return "\n".join(lines) + "\n"


SCRIPTS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
