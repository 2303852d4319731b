"""Markdown -> Telegram HTML: the formats models use, and well-formed output for any input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.channel_configs.telegram import TelegramChannelConfig
from channels.telegram import TelegramChannel
from channels.telegram_html import markdown_to_html, utf16_len
from tests.fakes.telegram import parse_html


@pytest.mark.parametrize(
    ("markdown", "html"),
    [
        ("**bold** and *it* and _it_", "<b>bold</b> and <i>it</i> and <i>it</i>"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("`x<y` and ``a`b``", "<code>x&lt;y</code> and <code>a`b</code>"),
        ("~~gone~~ ||secret||", "<s>gone</s> <tg-spoiler>secret</tg-spoiler>"),
        ("**a *b* c**", "<b>a <i>b</i> c</b>"),
        (
            '[docs](https://example.com/?a=1&b="2")',
            '<a href="https://example.com/?a=1&amp;b=&quot;2&quot;">docs</a>',
        ),
        ("[click](javascript:alert(1))", "[click](javascript:alert(1))"),
        ("# Title\n- one\n* two", "<b>Title</b>\n• one\n• two"),
        ("> quoted **b**\n> more\nafter", "<blockquote>quoted <b>b</b>\nmore</blockquote>\nafter"),
        (
            "```python\nif a < b:\n    pass\n```\ndone",
            '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>\ndone',
        ),
        ("```\nno language", "<pre>no language</pre>"),
        ("**not closed yet", "**not closed yet"),
    ],
)
def test_markdown_renders_to_telegram_html(markdown: str, html: str) -> None:
    assert markdown_to_html(markdown) == html
    parse_html(html)  # and Telegram's rules accept it


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab <>&\"'*_~`|[]()#>-\n:/.x")), max_size=80))
def test_any_input_renders_to_html_telegram_accepts(text: str) -> None:
    visible = parse_html(markdown_to_html(text))
    # nothing a person wrote disappears, only the markers around it
    for word in text.replace("\n", " ").split():
        stripped = word.strip("*_~`|[]()#>-:/. ")
        if stripped.isalpha():
            assert stripped in visible


def _channel() -> TelegramChannel:
    config = TelegramChannelConfig(type="telegram")
    return TelegramChannel("tg", config, "1:x", home=Path("/nonexistent"))


def test_chunks_fit_4096_after_rendering_and_as_plain_text() -> None:
    channel = _channel()
    code = "```html\n" + "<td>&nbsp;</td>\n" * 600 + "```"
    emoji = "😀" * 3000  # two UTF-16 units each
    text = "intro\n\n" + code + "\n\n" + emoji + "\n\n" + "word " * 2000
    pieces = channel.chunks(text)
    assert len(pieces) > 3
    for piece in pieces:
        html = markdown_to_html(piece)
        assert utf16_len(html) <= 4096 and utf16_len(piece) <= 4096
        parse_html(html)
    assert "".join(pieces).count("&nbsp;") == 600


def test_chunks_are_stable_as_the_text_grows() -> None:
    # streaming edits rely on finished chunks never changing when more text arrives
    channel = _channel()
    text = "\n\n".join(f"Paragraph {i}: " + "<x> & y " * 80 for i in range(40))
    final = channel.chunks(text)
    for cut in range(len(text) // 3, len(text), 997):
        partial = channel.chunks(text[:cut])
        assert partial[:-1] == final[: len(partial) - 1]
