"""Markdown as models write it, rendered to the HTML subset Telegram accepts.

Telegram rejects a whole message when its HTML has an unknown tag, an unbalanced tag or a raw
``<``, ``>`` or ``&``. So every tag here is emitted as a complete pair around an already
rendered inside, and every piece of text passes through `escape`: the output is balanced by
construction, whatever the input. Markdown that does not close (``**bold`` while a reply is
still streaming) stays literal text; an unclosed code fence is shown as code up to the end.

Supported: fenced code blocks (with a language), inline code, bold, italic, strikethrough,
spoilers (``||x||``), links with http(s), tg and mailto targets, headings (shown bold),
block quotes and bullet lists.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ {0,3}```\s*([\w+#.-]*)")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_QUOTE = re.compile(r"^ {0,3}>\s?(.*)$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")

# Leftmost match wins; at one position the order of the alternatives decides.
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<code_body>.+?)(?P=ticks))"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<url>[^()\s]+)\)"
    r"|\*\*(?P<bold>\S(?:.*?\S)?)\*\*"
    r"|(?<!\w)__(?P<bold2>\S(?:.*?\S)?)__(?!\w)"
    r"|~~(?P<strike>\S(?:.*?\S)?)~~"
    r"|\|\|(?P<spoiler>\S(?:.*?\S)?)\|\|"
    r"|(?<![\w*])\*(?P<italic>[^\s*](?:[^*]*?[^\s*])?)\*(?![\w*])"
    r"|(?<!\w)_(?P<italic2>[^\s_](?:[^_]*?[^\s_])?)_(?!\w)"
)
_WRAP = {
    "bold": "b",
    "bold2": "b",
    "strike": "s",
    "spoiler": "tg-spoiler",
    "italic": "i",
    "italic2": "i",
}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def render_inline(text: str, *, links: bool = True) -> str:
    out: list[str] = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[pos : match.start()]))
        pos = match.end()
        out.append(_render_span(match, links))
    out.append(escape(text[pos:]))
    return "".join(out)


def _render_span(match: re.Match[str], links: bool) -> str:
    if match.group("code") is not None:
        return f"<code>{escape(match.group('code_body').strip())}</code>"
    label = match.group("label")
    if label is not None:
        url = match.group("url")
        if links and url.lower().startswith(_LINK_SCHEMES):
            return f'<a href="{_attr(url)}">{render_inline(label, links=False)}</a>'
        return escape(match.group(0))
    for group, tag in _WRAP.items():
        inner = match.group(group)
        if inner is not None:
            return f"<{tag}>{render_inline(inner, links=links)}</{tag}>"
    return escape(match.group(0))


def _code_block(lines: list[str], lang: str) -> str:
    body = escape("\n".join(lines))
    if lang:
        return f'<pre><code class="language-{_attr(lang)}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        return f"<b>{render_inline(heading.group(1))}</b>"
    bullet = _BULLET.match(line)
    if bullet:
        return f"{bullet.group(1)}• {render_inline(bullet.group(2))}"
    return render_inline(line)


def markdown_to_html(text: str) -> str:
    """Render Markdown to Telegram HTML. Never raises; the result is always well formed."""
    out: list[str] = []
    quote: list[str] = []
    lines = text.split("\n")
    i = 0

    def close_quote() -> None:
        if quote:
            out.append("<blockquote>" + "\n".join(quote) + "</blockquote>")
            quote.clear()

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            close_quote()
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(_code_block(body, fence.group(1)))
            i += 1  # the closing fence (or the end)
            continue
        quoted = _QUOTE.match(line)
        if quoted:
            quote.append(_line(quoted.group(1)))
        else:
            close_quote()
            out.append(_line(line))
        i += 1
    close_quote()
    return "\n".join(out)


def utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2
