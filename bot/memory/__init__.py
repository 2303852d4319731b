"""Per-person memory: hybrid keyword + vector search over what each person shared, a shared
knowledge folder, identity linking across platforms, exports.

    memory = MemoryService(store, config.memory, home, redact=redact)
    await memory.start()                       # background: embedder choice, knowledge sync
    hits = await memory.recall(person_id, text, budget_tokens=400)
    system_prompt += render_recall(hits)
    tools += memory_tools()                    # Deps(..., memory=memory) reaches them
    register_memory_commands(command_table, on_linked=forget_persons)   # /forget, /link

Importing this package loads no numpy, model2vec or sentence-transformers; a local model is
loaded in the background after `start()`. Its names are imported on first use: the config
file's `[memory]` section (bot/memory/config.py) is read at every start, while the service,
which starts after ready (bot/warmup.py), is not needed before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.memory.commands import register_memory_commands
    from bot.memory.config import MemoryConfig
    from bot.memory.embedder_chain import EmbedderChain
    from bot.memory.embedders import Embedder
    from bot.memory.local_embedders import pull_model
    from bot.memory.search import MemoryHit, render_recall
    from bot.memory.service import MemoryRequestError, MemoryService, MemoryStatus
    from bot.memory.tools import memory_tools

#: each public name and the module it lives in
_WHERE = {
    "register_memory_commands": "bot.memory.commands",
    "MemoryConfig": "bot.memory.config",
    "EmbedderChain": "bot.memory.embedder_chain",
    "Embedder": "bot.memory.embedders",
    "pull_model": "bot.memory.local_embedders",
    "MemoryHit": "bot.memory.search",
    "render_recall": "bot.memory.search",
    "MemoryRequestError": "bot.memory.service",
    "MemoryService": "bot.memory.service",
    "MemoryStatus": "bot.memory.service",
    "memory_tools": "bot.memory.tools",
}

__all__ = [
    "Embedder",
    "EmbedderChain",
    "MemoryConfig",
    "MemoryHit",
    "MemoryRequestError",
    "MemoryService",
    "MemoryStatus",
    "memory_tools",
    "pull_model",
    "register_memory_commands",
    "render_recall",
]


__getattr__ = lazy_exports(__name__, _WHERE)
