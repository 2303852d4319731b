"""Documents in: a PDF's or a text file's text reaches the model (capped, with a note when
cut), the file is saved in the session's workspace under inbox/, and the turn is tainted."""

from __future__ import annotations

import errno
import logging
import re
import shutil
from typing import Any

import pytest

from bot.messages import Attachment
from bot.sandbox.safe_fs import WorkspaceFS
from tests.fakes.llm import FakeLLM
from tests.media.conftest import running, settled
from tests.media.files import pdf

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

SANDBOX = {"backend": "bwrap"}
OWNER = {"owners": ["test:u1"]}


def _tainted(caplog: pytest.LogCaptureFixture) -> list[bool]:
    return [r.fields["tainted"] for r in caplog.records if r.name == "decapod.turn"]  # type: ignore[attr-defined]


async def test_a_pdf_s_text_reaches_the_model_and_the_file_is_in_the_workspace_inbox(
    make_config: Any, fake: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "decapod.turn")
    fake.push("The total is 42 EUR.", "Paid on time.")
    report = pdf("Invoice total 42 EUR")
    part = Attachment("document", "doc-1", "invoice.pdf", "application/pdf", len(report))
    async with running(
        make_config, fake, models={"chat": ["oa:gpt-4o"]}, sandbox=SANDBOX, gateway=OWNER
    ) as (gw, channel):
        channel.files["doc-1"] = report
        await channel.push("what is the total?", parts=(part,))
        assert await channel.wait_for_messages(1) == ["The total is 42 EUR."]
        assert await settled(gw) == "done"
        assert gw.deps.sandbox is not None
        inbox = gw.deps.sandbox.workspaces.path_for("test:dm:u1") / "inbox"
        assert (inbox / "invoice.pdf").read_bytes() == report
        await channel.push("was it paid on time?")
        await channel.wait_for_messages(2)
        assert await settled(gw, delivery="d2") == "done"
    call, _ = fake.calls(path="/v1/chat/completions")
    user = call.body["messages"][-1]["content"]
    assert user.startswith("what is the total?")
    assert "saved as /work/inbox/invoice.pdf" in user and "Invoice total 42 EUR" in user
    # the owner's own file, yet its text is outside content, also while it is in the history
    assert _tainted(caplog) == [True, True]


async def test_a_long_text_file_is_cut_with_a_note(make_config: Any, fake: FakeLLM) -> None:
    body = ("line of notes\n" * 200).encode()
    part = Attachment("document", "doc-2", "notes.md", "text/markdown", len(body))
    async with running(
        make_config,
        fake,
        models={"chat": ["oa:gpt-4o"]},
        sandbox=SANDBOX,
        media={"document_max_chars": 1000},
    ) as (_gw, channel):
        channel.files["doc-2"] = body
        await channel.push("", parts=(part,))
        await channel.wait_for_messages(1)
    [call] = fake.calls(path="/v1/chat/completions")
    user = call.body["messages"][-1]["content"]
    assert "line of notes" in user
    assert "[… cut: the first 1,000 of 2,800 characters are shown]" in user
    assert user.count("line of notes") == 1000 // len("line of notes\n")  # 71 whole lines


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        # an error without its own text: str() of it would show the host's workspace path
        (OSError("/var/lib/decapod/workspaces/test_dm_u1/inbox/list.txt"), "could not write"),
    ],
    ids=["disk-full", "no-reason-given"],
)
async def test_a_document_the_workspace_cannot_take_is_still_read(
    make_config: Any, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, error: OSError, said: str
) -> None:
    """The copy in the workspace fails (a full disk): the person's text and the document's
    are still answered, and the model is told why the file is not in the workspace, in
    words that never show a path of the host."""

    def refuse(*_args: Any, **_kwargs: Any) -> bool:
        raise error

    monkeypatch.setattr(WorkspaceFS, "create", refuse)
    fake.push("Milk and bread.")
    body = b"milk\nbread\n"
    part = Attachment("document", "doc-3", "list.txt", "text/plain", len(body))
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o"]}, sandbox=SANDBOX) as (
        gw,
        channel,
    ):
        channel.files["doc-3"] = body
        await channel.push("what is on it?", parts=(part,))
        assert await channel.wait_for_messages(1) == ["Milk and bread."]
        assert await settled(gw) == "done"
    [call] = fake.calls(path="/v1/chat/completions")
    user = call.body["messages"][-1]["content"]
    assert f"[document list.txt (not saved in the workspace: {said}" in user
    assert "/var/lib" not in user
    assert "<<<\nmilk\nbread\n\n>>>" in user


async def test_two_documents_of_one_name_in_one_chat_are_both_kept(
    make_config: Any, fake: FakeLLM
) -> None:
    """A second "report.pdf" in the chat is saved as "report (2).pdf", not over the first,
    and the model is told the name each one has; the same file sent again is not copied."""
    fake.push("First one.", "Second one.", "The first again.")
    march, april = pdf("March revenue 10 EUR"), pdf("April revenue 20 EUR")
    sent = [("doc-a", march), ("doc-b", april), ("doc-c", march)]
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o"]}, sandbox=SANDBOX) as (
        gw,
        channel,
    ):
        for i, (file_id, body) in enumerate(sent, start=1):
            channel.files[file_id] = body
            part = Attachment("document", file_id, "report.pdf", "application/pdf", len(body))
            await channel.push("what does it say?", parts=(part,))
            await channel.wait_for_messages(i)
            assert await settled(gw, delivery=f"d{i}") == "done"
        assert gw.deps.sandbox is not None
        workspace = gw.deps.sandbox.workspaces.path_for("test:dm:u1")
        told = []
        for call in fake.calls(path="/v1/chat/completions"):
            user = call.body["messages"][-1]["content"]
            [path] = re.findall(r"saved as /work/(inbox/[^\]\n]*?\.pdf)", user)
            told.append(path)
        assert told == ["inbox/report.pdf", "inbox/report (2).pdf", "inbox/report.pdf"]
        assert (workspace / told[0]).read_bytes() == march
        assert (workspace / told[1]).read_bytes() == april
        assert sorted(p.name for p in (workspace / "inbox").iterdir()) == [
            "report (2).pdf",
            "report.pdf",
        ]
