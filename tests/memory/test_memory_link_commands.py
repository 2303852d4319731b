"""/link moves a person's identities and memory together; /forget asks before deleting."""

from __future__ import annotations

import time

import pytest

from bot.commands import CommandContext, CommandTable
from bot.memory.commands import register_memory_commands
from bot.memory.service import LINK_ALPHABET, MemoryRequestError, MemoryService
from bot.messages import Conversation, ConversationKind, Identity, InboundMessage
from bot.store import Store
from tests.deps import make_deps


def _command(
    table: CommandTable,
    name: str,
    args: str,
    identity: Identity,
    person: str,
    memory: MemoryService | None,
    kind: ConversationKind = ConversationKind.DM,
) -> CommandContext:
    msg = InboundMessage(
        id="1",
        identity=identity,
        conversation=Conversation(identity.channel, "c", kind),
        text=f"/{name} {args}",
    )
    return CommandContext(msg, args, person, "user", make_deps(memory=memory))


async def _run(table: CommandTable, ctx: CommandContext) -> str:
    spec = table.get(ctx.message.text.split()[0][1:])
    assert spec is not None
    reply = await spec.handler(ctx)
    assert reply is not None
    return reply


async def test_link_joins_identities_and_moves_memory(store: Store, memory: MemoryService) -> None:
    tg, slack = Identity("telegram", "42", "Al"), Identity("slack", "U9", "alice")
    tg_person = await store.identities.touch(tg)
    slack_person = await store.identities.touch(slack)
    await memory.save(tg_person, "my puppy is called Rex")
    await memory.save(slack_person, "alice drinks matcha")
    assert [h.text for h in await memory.search(tg_person, "matcha", mode="keyword")] == []

    table, relinked = CommandTable(), []
    register_memory_commands(table, on_linked=lambda: relinked.append(True))
    reply = await _run(table, _command(table, "link", "", tg, tg_person, memory))
    assert relinked == []  # a code alone links nothing
    code = reply.split(": ")[1].split()[0]
    assert len(code) == 8 and set(code) <= set(LINK_ALPHABET)
    spaced = f"{code[:4].lower()} {code[4:]}"  # typed by hand
    reply = await _run(table, _command(table, "link", spaced, slack, slack_person, memory))
    assert reply.startswith("Linked") and relinked == [True]  # the gateway re-reads persons

    assert await store.identities.person_id(slack.key) == tg_person
    assert await memory.count(slack_person) == 0 and await memory.count(tg_person) == 2
    by_word = await memory.search(tg_person, "matcha", mode="keyword")
    assert [h.text for h in by_word] == ["alice drinks matcha"]
    by_meaning = await memory.search(tg_person, "chai", mode="vector")
    assert by_meaning[0].text == "alice drinks matcha"  # its vector moved partitions too
    assert await memory.search(tg_person, "rex") and await memory.search(slack_person, "x") == []
    with pytest.raises(MemoryRequestError, match="unknown or has expired"):
        await memory.redeem_link_code(slack_person, code)  # single use


async def test_link_codes_expire_and_guess_attempts_are_limited(memory: MemoryService) -> None:
    code = await memory.create_link_code("alice")
    await memory.repo.put_link_code("ZZZZZZZZ", "dave", time.time() - 1)
    with pytest.raises(MemoryRequestError, match="expired"):
        await memory.redeem_link_code("bob", "ZZZZZZZZ")
    for _ in range(4):
        with pytest.raises(MemoryRequestError, match="expired"):
            await memory.redeem_link_code("bob", "AAAAAAAA")
    with pytest.raises(MemoryRequestError, match="Too many"):
        await memory.redeem_link_code("bob", code)  # even the right one, for a while
    assert await memory.redeem_link_code("carol", code) == "alice"
    assert await memory.redeem_link_code("alice", await memory.create_link_code("alice")) == "alice"


async def test_link_only_in_direct_messages(memory: MemoryService) -> None:
    table = CommandTable()
    register_memory_commands(table, on_linked=lambda: None)
    ctx = _command(
        table, "link", "", Identity("telegram", "1"), "alice", memory, ConversationKind.GROUP
    )
    assert "direct message" in await _run(table, ctx)


async def test_forget_asks_then_deletes_everything(memory: MemoryService) -> None:
    table = CommandTable()
    register_memory_commands(table, on_linked=lambda: None)
    who = Identity("telegram", "1")
    for text in ("likes tea", "lives in berlin", "plays banjo"):
        await memory.save("alice", text)
    await memory.save("bob", "likes tea")

    def forget(args: str, person: str = "alice") -> CommandContext:
        return _command(table, "forget", args, who, person, memory)

    assert "3 items" in await _run(table, forget(""))
    assert await memory.count("alice") == 3
    assert await _run(table, forget("berlin")) == "Forgot 1 item:\n- lives in berlin"
    assert "Nothing" in await _run(table, forget("submarine"))
    assert "confirm" in await _run(table, forget("all"))  # no prompt pending any more
    assert (await _run(table, forget("all"))).startswith("Done")
    assert await memory.count("alice") == 0 and await memory.count("bob") == 1
    assert "don't remember" in await _run(table, forget(""))
    assert "not enabled" in await _run(table, _command(table, "forget", "", who, "alice", None))


async def test_a_link_keeps_one_of_what_both_accounts_remembered(memory: MemoryService) -> None:
    """The same fact said on both platforms is remembered once after the link, as it would
    have been had it been said twice on one: no doubled hits, no doubled export lines."""
    await memory.save("telegram:42", "my puppy is called Rex", source="telegram")
    await memory.save("slack:U9", "my puppy is called Rex", source="slack")
    await memory.save("slack:U9", "alice drinks matcha")
    code = await memory.create_link_code("telegram:42")
    assert await memory.redeem_link_code("slack:U9", code) == "telegram:42"
    assert sorted(i.text for i in await memory.repo.items("telegram:42")) == [
        "alice drinks matcha",
        "my puppy is called Rex",
    ]
    hits = await memory.search("telegram:42", "puppy Rex", mode="keyword")
    assert [h.text for h in hits] == ["my puppy is called Rex"]
