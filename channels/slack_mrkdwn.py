"""Text both ways between the model's Markdown and Slack's markup.

Outbound, `to_mrkdwn` turns Markdown into Slack mrkdwn: **bold** -> *bold*, *italic* ->
_italic_, ~~strike~~ -> ~strike~, [text](url) -> <url|text>, headings -> bold lines, bullets
-> "•", fences lose their language tag (Slack would show it as text). `&`, `<` and `>` are
escaped everywhere, which also means a model can never produce a working <!channel> ping
or a user mention.

Inbound, `from_slack` turns Slack's markup into plain text for the model: mentions, channel
links and URLs become readable, entities are unescaped, and the bot's own mention is removed.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^(\s*)```")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_QUOTE = re.compile(r"^((?:\s*>)+)\s?")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\((\S+?)(?:\s+\"[^\"\n]*\")?\)|<((?:https?|mailto):[^>\s]+)>")
_BOLD_ITALIC = re.compile(r"\*\*\*(?!\s)(.+?)(?<!\s)\*\*\*")
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?![*\s])(.+?)(?<![*\s])\*(?![*\w])")
_BOLD = re.compile(r"\*\*(?!\s)(.+?)(?<!\s)\*\*|__(?!\s)(.+?)(?<!\s)__")
_STRIKE = re.compile(r"~~(?!\s)(.+?)(?<!\s)~~")

_SLACK_ENTITY = re.compile(r"<([^<>\n]+)>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    out: list[str] = []
    in_fence = False
    for line in markdown.split("\n"):
        fence = _FENCE.match(line)
        if fence:
            in_fence = not in_fence
            out.append(fence.group(1) + "```")
        elif in_fence:
            out.append(escape(line))
        else:
            out.append(_line(line))
    return "\n".join(out)


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        title = _inline(heading.group(1)).replace("*", "")
        return f"*{title}*" if title else ""
    prefix = ""
    quote = _QUOTE.match(line)
    if quote:
        # a literal ">" at the start of a line is Slack's quote; everywhere else it is escaped
        prefix, line = ">" * quote.group(1).count(">") + " ", line[quote.end() :]
    bullet = _BULLET.match(line)
    if bullet:
        prefix, line = prefix + bullet.group(1) + "• ", line[bullet.end() :]
    return prefix + _inline(line)


def _inline(text: str) -> str:
    """Code spans verbatim (escaped), links rebuilt, emphasis converted in the rest."""
    parts: list[str] = []
    pos = 0
    for span in _CODE_SPAN.finditer(text):
        parts.append(_links(text[pos : span.start()]))
        parts.append(span.group(1) + escape(span.group(2)) + span.group(1))
        pos = span.end()
    parts.append(_links(text[pos:]))
    return "".join(parts)


def _links(text: str) -> str:
    parts: list[str] = []
    pos = 0
    for link in _LINK.finditer(text):
        parts.append(_emphasis(escape(text[pos : link.start()])))
        url = link.group(2) or link.group(3)
        label = link.group(1) if link.group(2) else ""
        # "|" and ">" end a Slack link early; the label loses them, the URL is escaped
        label = escape(label.replace("|", "/"))
        target = escape(url).replace("|", "%7C")
        parts.append(f"<{target}|{_emphasis(label)}>" if label and label != url else f"<{target}>")
        pos = link.end()
    parts.append(_emphasis(escape(text[pos:])))
    return "".join(parts)


def _emphasis(text: str) -> str:
    # ***x*** is held in control characters so the italic and bold rules leave it alone
    text = _BOLD_ITALIC.sub("\x00\\1\x01", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    text = _STRIKE.sub(r"~\1~", text)
    return text.replace("\x00", "*_").replace("\x01", "_*")


def from_slack(text: str, bot_user_id: str = "") -> str:
    """Slack markup -> plain text. The bot's own mention is dropped: it only addresses us."""

    def entity(match: re.Match[str]) -> str:
        body = match.group(1)
        target, _, label = body.partition("|")
        if target.startswith("@"):
            if bot_user_id and target[1:] == bot_user_id:
                return ""
            return "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            special = target[1:].split("^", 1)[0]
            if special in ("here", "channel", "everyone"):
                return "@" + special
            return label or "@" + special
        if not label or label == target or target == "mailto:" + label:
            return target.removeprefix("mailto:")
        return f"{label} ({target})"

    plain = _SLACK_ENTITY.sub(entity, text)
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", plain).strip()
