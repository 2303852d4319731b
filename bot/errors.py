"""The error tree. Every exception Decapod raises on purpose is one of these.

    DecapodError
    ├── ConfigError                 the operator must fix something (key path + what was expected)
    ├── StoreError                  SQLite failed in a way a retry will not fix
    │   └── StorageUnavailable      the disk refuses writes: full, read-only, locked by another
    │                               process past the busy timeout, or failing (reason)
    ├── ChannelError                a platform call failed (transient: back off and try again;
    │   │                           from `send`: `delivered` characters were shown, unsent())
    │   ├── RateLimited             the platform asked us to wait (retry_after seconds)
    │   ├── EditRejected            this message can no longer be edited (deleted, too old, an
    │   │                           expired interaction token): send the rest as new messages
    │   └── DeliveryRefused         permanent: the same send will never succeed (reason)
    │       ├── ConversationGone    the chat is deleted, or the bot was blocked or removed
    │       └── SendSmaller         this text never goes whole, but may in pieces (limit)
    ├── ProviderError               an LLM call failed
    │   ├── ProviderHTTPError       status, retry_after, retryable
    │   │   └── ContextTooLong      the request does not fit the model's window (compact, retry)
    │   ├── ProviderTimeout         phase: connect | first_token | idle
    │   └── AllProvidersFailed      every provider in the chain failed (carries the attempts)
    ├── ToolError                   a tool failed; the message goes back to the model
    │   └── ToolDenied              policy refused the tool for this person or place
    ├── SandboxError                the sandbox could not run a command
    └── AccessDenied                a sender may not use the bot here

Errors that reach a person become one short message (`user_message`); the details go to the log.
"""

from __future__ import annotations

from collections.abc import Iterator


def describe_error(exc: BaseException) -> str:
    """An exception as one line for a log or a message: its type, and its text if any."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it arose from: its stated cause, else the error being handled when
    it was raised (a driver's error a store turned into its own refusal)."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


class DecapodError(Exception):
    """Root of every error Decapod raises on purpose."""

    user_message = "Something went wrong on my side. Please try again."


class ConfigError(DecapodError):
    """The configuration is invalid. `key` is the dotted path of the offending key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class StoreError(DecapodError):
    pass


class DatabaseTooNew(StoreError):
    """The database was migrated by a newer version of decapod: this one does not know its
    schema, and refuses it rather than write rows that version would misread."""

    def __init__(self, where: str, unknown: list[str]) -> None:
        super().__init__(
            f"the database {where} was upgraded by a newer version of decapod (migrations "
            f"{', '.join(unknown)} are unknown to this one): run that version again; a "
            "database is never downgraded"
        )
        self.unknown = unknown


class DatabaseDamaged(StoreError):
    """The database file is not a database SQLite can read (damaged, or some other file)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"the database {path} is damaged ({detail}): restore it from a backup, or move it "
            "away to start with an empty one"
        )
        self.path = path


class StorageUnavailable(StoreError):
    """The disk refuses writes: it is full, the database or its folder is read-only, another
    process holds its lock past the busy timeout, or the disk reports an I/O error. Nothing
    stored before is lost; a delivery whose turn could not be saved stays pending."""

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"storage is {reason} ({path})")
        self.reason = reason  # "full" | "read-only" | "busy" | "failing" | "unreachable"
        self.path = path
        self.user_message = (
            f"Sorry, I cannot save anything right now: storage is {reason}. "
            "Your message is kept; please try again later."
        )
        #: said in a turn, which is tried again by itself (bot/delivery.py)
        self.retried_message = (
            f"Sorry, I cannot save anything right now: storage is {reason}. "
            "Your message is kept, and I will try it again by myself."
        )
        #: said when only the record of an answer already shown was refused: no second
        #: answer comes, so none is promised
        self.unstored_message = (
            f"Sorry, I cannot save anything right now: storage is {reason}. "
            "You have my answer above; I will save it by myself once I can."
        )


class ChannelError(DecapodError):
    """A platform call failed. Raised from `send` of a text that went out in several
    messages, it says how far the text got: `delivered` characters of it were shown (0 when
    the first message failed), and `unsent(text)` is the rest to send, so that a retry
    continues where this one stopped instead of showing the first messages again."""

    #: characters of the message's text the person was shown before the failure
    delivered: int = 0
    #: what the rest must start with to show as it would have: a code block open at the cut
    #: is opened again
    reopen: str = ""

    def unsent(self, text: str) -> str:
        """What of `text` (the text of the message whose send raised this) is left to send."""
        if not self.delivered:
            return text
        # the blank lines at the cut were never part of a message
        return self.reopen + text[self.delivered :].lstrip("\n")


class RateLimited(ChannelError):
    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(f"{message} (retry after {retry_after:.1f}s)")
        self.retry_after = retry_after


class EditRejected(ChannelError):
    """Editing this sent message is no longer possible (it was deleted, is too old, or the
    interaction token that could edit it expired). The shared send path continues the
    answer in new messages; what was already shown is not repeated."""


class DeliveryRefused(ChannelError):
    """A permanent refusal, classified per platform (Telegram 400 "message thread not found",
    Slack `not_in_channel`, Discord 403/404 on a channel): retrying the same send cannot
    succeed. `reason` is the platform's short error code or text, kept with the delivery
    (and with a scheduled job, which is paused instead of retried)."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class ConversationGone(DeliveryRefused):
    """The conversation no longer exists, or the bot was removed from it. Adapters raise it."""

    def __init__(self, reason: str = "conversation gone", message: str | None = None) -> None:
        super().__init__(reason, message)


class SendSmaller(DeliveryRefused):
    """The platform counted a text longer than the channel's `split` did (Telegram counts
    after its own parsing): that text can never go as it is, but may in pieces of at most
    `limit` characters. The shared send path sends it so, each piece tried on its own;
    anywhere else it is the refusal it says."""

    def __init__(self, limit: int, message: str) -> None:
        super().__init__("message is too long", message)
        self.limit = limit


class IdentityRefused(DecapodError):
    """An identity whose key cannot become a person id (bot/messages.py `person_id_problem`).
    Its message is answered with `user_message` and given up, never run again."""

    user_message = (
        "Your user name cannot be used here: it reads as a group in my memory. "
        "Please use another one."
    )


class ProviderError(DecapodError):
    user_message = "The language model is not answering right now. Please try again in a moment."
    #: whether trying again (same or next provider) may succeed
    retryable = True


class ProviderHTTPError(ProviderError):
    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        retry_after: float | None = None,
        retryable: bool | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.retryable = (status == 429 or status >= 500) if retryable is None else retryable
        if status == 404:
            # a wrong address or an unknown model: the operator's settings, not the request
            self.user_message = MODEL_NOT_AVAILABLE
        elif _refused_as_invalid(status, self.retryable, code):
            # the model is up and said no to this request: waiting would not help
            self.user_message = REFUSED_AS_INVALID


#: what the person reads when the provider refuses the request itself (its own text, which
#: may quote the request, stays in the owner's log)
REFUSED_AS_INVALID = (
    "The language model refused this request as invalid, so trying again will not help. "
    "The details are in the bot owner's log."
)


#: what the person reads when the provider does not know the model or the address (its text
#: goes to the owner's log)
MODEL_NOT_AVAILABLE = (
    "The language model is not available: the bot owner needs to check its settings. "
    "The details are in the bot owner's log."
)


def _refused_as_invalid(status: int, retryable: bool, code: str | None) -> bool:
    """A 4xx that is about the request, not the key, the bill, the rate or the model's
    address (404): the chain does not fail over on it, so it reaches the person as it is."""
    return (
        400 <= status < 500
        and status not in (401, 403, 404, 429)
        and not retryable
        and (code != "billing")
    )


class ContextTooLong(ProviderHTTPError):
    def __init__(self, message: str = "context length exceeded") -> None:
        super().__init__(400, message, retryable=False, code="context_length_exceeded")
        # reaches the person only when compacting the history could not make it fit
        self.user_message = (
            "This conversation is too long for the language model, even after shortening "
            "the earlier part. Send /new to start afresh, or send a shorter message."
        )


class ProviderTimeout(ProviderError):
    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"timed out waiting for {phase} after {seconds:g}s")
        self.phase = phase
        self.seconds = seconds


class AllProvidersFailed(ProviderError):
    def __init__(self, attempts: list[tuple[str, BaseException]]) -> None:
        names = ", ".join(f"{name}: {type(exc).__name__}" for name, exc in attempts)
        super().__init__(f"all providers failed ({names})")
        self.attempts = attempts
        self.retryable = False


class ToolError(DecapodError):
    pass


class ToolDenied(ToolError):
    user_message = "That tool is not available to you here."


class SandboxError(DecapodError):
    pass


class AccessDenied(DecapodError):
    user_message = "You are not allowed to use this bot here."
