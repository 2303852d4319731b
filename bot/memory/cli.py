"""`decapod memory forget|export|reindex|search` and `decapod models pull`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.memory.config import MemoryConfig
from bot.memory.local_embedders import pull_model
from bot.memory.search import render_hits
from bot.memory.service import MemoryRequestError, MemoryService, NoEmbedder
from bot.store import Store, sqlite

Action = Callable[[argparse.Namespace, MemoryService, Path], Awaitable[int]]


def add_subparsers(sub: Any) -> None:
    """Add `memory` and `models` to the main parser's subcommands (`sub`)."""
    memory = sub.add_parser("memory", help="search, forget, export or reindex memory")
    msub = memory.add_subparsers(dest="memory_command", required=True)

    p = msub.add_parser("search", help="search one person's memory (and shared knowledge)")
    p.add_argument("--person", required=True, help="person id or identity key, e.g. telegram:42")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--mode", choices=("hybrid", "keyword", "vector"), default="hybrid")
    p.set_defaults(memory_action=_search, memory_needs_embedder=True)

    p = msub.add_parser("forget", help="delete memory for good (rows, index, vectors)")
    p.add_argument("--person", required=True, help="person id or identity key")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--all", action="store_true", help="everything of this person")
    what.add_argument("--id", type=int, action="append", dest="ids", help="an item id")
    what.add_argument("--matching", help="items containing all these words")
    p.set_defaults(memory_action=_forget, memory_needs_embedder=False)

    p = msub.add_parser("export", help="write Markdown, one file per person")
    p.add_argument("--person", help="only this person")
    p.add_argument("--out", type=Path, help="folder (default: <home>/exports/memory)")
    p.set_defaults(memory_action=_export, memory_needs_embedder=False)

    p = msub.add_parser("reindex", help="rebuild the vector index with the configured embedder")
    p.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted reindex: keep the vectors made, embed the rest",
    )
    p.set_defaults(memory_action=_reindex, memory_needs_embedder=False)

    models = sub.add_parser("models", help="local embedding models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser("pull", help="install a model2vec model (hub name or local folder)")
    p.add_argument("name", help="e.g. minishlab/potion-base-32M, or a folder to copy")
    p.add_argument("--dest", type=Path, help="default: <home>/models/<name>")
    p.set_defaults(memory_action=None, models_action=_pull)


#: get one: said when reindex finds no embedder
_EMBEDDER_HINT = (
    "to get one: `pip install 'decapod[memory]'` brings what the default embedder needs "
    "(potion-base-8M, its weights inside Decapod's package); or `decapod models pull "
    "minishlab/potion-base-32M` "
    'and an [[memory.embedders]] table with type = "model2vec" and its path; or one with '
    'type = "openai" for an embeddings server (OpenAI, or Ollama with nomic-embed-text)'
)


def run(
    args: argparse.Namespace,
    home: Path,
    store_path: Path | Store,
    config: MemoryConfig | None = None,
) -> int:
    """Run a `memory` or `models` subcommand; returns the exit code."""
    from bot.progress import Progress

    action = _action_of(args)
    # on stderr: the actions' results stay alone on stdout
    args.progress = Progress(_PROGRESS_LABELS.get(action, ""), unit=_PROGRESS_UNITS.get(action, ""))
    try:
        with args.progress:
            return _run(args, home, store_path, config)
    except KeyboardInterrupt:
        return _interrupted(args)


def _run(
    args: argparse.Namespace, home: Path, store_path: Path | Store, config: MemoryConfig | None
) -> int:
    if getattr(args, "models_action", None) is not None:
        return int(args.models_action(args, home))
    action: Action | None = getattr(args, "memory_action", None)
    if action is None:
        print("usage: decapod memory {search,forget,export,reindex} | decapod models pull NAME")
        return 2
    # the configured store (not started), or the path of a SQLite one
    store = store_path if isinstance(store_path, Store) else Store(store_path)
    code = asyncio.run(_with_service(args, action, home, store, config or MemoryConfig()))
    if code == 0 and action is _forget and store.backend == "sqlite":
        # Deleted rows can leave copies in free pages; rebuilding the file removes them.
        conn = sqlite.connect(store.path)
        try:
            conn.execute("VACUUM")
        finally:
            conn.close()
    return code


async def _with_service(
    args: argparse.Namespace, action: Action, home: Path, store: Store, config: MemoryConfig
) -> int:
    from bot.security.redact import default_redactor

    async with store:
        service = MemoryService(store, config, home, redact=default_redactor().redact)
        if args.memory_needs_embedder:
            await service.start(watch=False)
            await service.wait_ready()
        try:
            if getattr(args, "person", None):
                args.person = await store.identities.person_id(args.person) or args.person
            return await action(args, service, home)
        except MemoryRequestError as exc:
            print(f"error: {exc}")
            return 1
        finally:
            await service.stop()


async def _search(args: argparse.Namespace, service: MemoryService, home: Path) -> int:
    status = service.status()
    print(f"# {status.mode}" + (f" ({status.embedder})" if status.embedder else ""))
    hits = await service.search(
        args.person, args.query, limit=args.limit, mode=args.mode, everywhere=True
    )
    print(render_hits(hits))
    return 0


async def _forget(args: argparse.Namespace, service: MemoryService, home: Path) -> int:
    gone = await service.forget(
        args.person,
        everything=args.all,
        item_ids=args.ids,
        matching=args.matching,
        everywhere=True,
    )
    print(f"forgot {len(gone)} item(s) of {args.person}")
    return 0


async def _export(args: argparse.Namespace, service: MemoryService, home: Path) -> int:
    dest = args.out or home / "exports" / "memory"
    for path in await service.export_people(dest, args.person, args.progress):
        print(path)
    return 0


async def _reindex(args: argparse.Namespace, service: MemoryService, home: Path) -> int:
    try:
        done = await service.reindex(resume=args.resume, progress=args.progress)
    except NoEmbedder as exc:
        print(f"error: {exc}; {_EMBEDDER_HINT}")
        return 1
    status = service.status()
    print(f"reindexed {done} chunk(s) with {status.embedder} (dim {status.dim})")
    return 0


def _pull(args: argparse.Namespace, home: Path) -> int:
    import os
    import sys

    dest = args.dest or home / "models" / Path(args.name.rstrip("/")).name
    # from the hub, its own bars (counts, ETA) show on a terminal; elsewhere they would fill
    # a log with carriage returns, so one line says what is going on instead
    if not Path(args.name).expanduser().is_dir() and not args.progress.on_terminal:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        print(f"pull: downloading {args.name} from the Hugging Face hub", file=sys.stderr)
    try:
        path = pull_model(args.name, dest, args.progress)
    except Exception as exc:  # network, hub or file errors: report, do not trace
        print(f"error: cannot pull {args.name}: {exc}")
        return 1
    print(f"installed {path}; to use it, add to the config file:")
    print(f'[[memory.embedders]]\ntype = "model2vec"\npath = "{path}"')
    return 0


def _action_of(args: argparse.Namespace) -> object:
    return getattr(args, "models_action", None) or getattr(args, "memory_action", None)


_PROGRESS_LABELS: dict[object, str] = {_export: "export", _reindex: "reindex", _pull: "pull"}
_PROGRESS_UNITS: dict[object, str] = {_export: "people", _reindex: "chunks", _pull: "B"}


def _interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C: say what is left, and how to carry on."""
    from bot.progress import human_count, interrupted

    action = _action_of(args)
    p = args.progress
    if action is _reindex:
        return interrupted(
            f"{p.done} of {p.total or 0} chunks have their vectors; the index is usable (the "
            "others are found by keyword until then)",
            "`decapod memory reindex --resume` embeds the rest (a running gateway does too, "
            "in the background)",
        )
    if action is _export:
        return interrupted(
            f"{p.done} of {p.total or 0} people exported, each file whole",
            "run the same command again to export everyone (files are replaced whole)",
        )
    if action is _pull:
        copied = f" ({human_count(p.done, 'B')} copied, removed again)" if p.done else ""
        return interrupted(f"nothing was installed{copied}", "run the same command again")
    return interrupted("nothing was changed", "run the same command again")
