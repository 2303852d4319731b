"""Block Kit for buttons: the text as section blocks with an actions block under it, and a
button press (a `block_actions` payload) read back into a Press and answered."""

from __future__ import annotations

import re
from typing import Any

from bot.messages import Identity
from channels.buttons import Button, Press, Pressed, Refused
from channels.chunks import split_text
from channels.slack_mrkdwn import to_mrkdwn

#: a button's action_id: this prefix and the button book's token
ACTION_PREFIX = "decapod:"
#: Slack's limits: a section's text, a button's label
_SECTION_MAX = 3000
_LABEL_MAX = 75
#: what a cut must not split: an entity (`&amp;`) or a link, mention or date (`<...>`)
_WHOLE = re.compile(r"&#?\w+;|<[^<>\n]+>")


def sections(mrkdwn: str) -> list[dict[str, Any]]:
    """The text as section blocks (a section holds at most 3,000 characters). Slack renders
    each section on its own: they are cut at a line or a word where one is near (else at
    3,000 characters), never inside an `&amp;` or a `<url|label>`, with a code block closed
    at the cut and opened again in the next."""
    split = split_text(mrkdwn, _SECTION_MAX, _WHOLE)
    parts = [chunk.text for chunk in split if chunk.text] or [" "]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": part}} for part in parts]


def with_buttons(mrkdwn: str, buttons: list[Button]) -> list[dict[str, Any]]:
    elements = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": button.label[:_LABEL_MAX]},
            "action_id": ACTION_PREFIX + button.token,
            "value": button.token,
        }
        for button in buttons
    ]
    return [*sections(mrkdwn), {"type": "actions", "elements": elements}]


def press_of(channel: str, body: dict[str, Any]) -> Press | None:
    """The press a block_actions payload reports; None for a payload without one. The
    trigger_id is unique per tap, so it is the press's delivery id."""
    actions, user = body.get("actions"), body.get("user")
    if not (isinstance(actions, list) and actions and isinstance(user, dict)):
        return None
    action = actions[0]
    if not isinstance(action, dict):
        return None
    name = str(user.get("name") or user.get("username") or "")
    identity = Identity(channel, str(user.get("id")), name)
    token = str(action.get("action_id", "")).removeprefix(ACTION_PREFIX)
    return Press(str(body.get("trigger_id") or action.get("action_ts")), token, identity)


def press_answer(result: Pressed | Refused) -> dict[str, Any]:
    """What the press's response_url is sent: the decision in place of the buttons, or a
    refusal only the presser sees."""
    if isinstance(result, Refused):
        return {"response_type": "ephemeral", "replace_original": False, "text": result.reason}
    text = to_mrkdwn(result.shown)
    return {"replace_original": True, "text": text, "blocks": sections(text)}
