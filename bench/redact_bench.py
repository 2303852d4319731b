"""What redaction costs on a 10 KB message: one-shot `redact()` and the stream wrapper fed in
10-character chunks, for prose, code and a log dump, with the secrets a running gateway
registers (platform tokens and provider keys, eight values).

    python -m bench.redact_bench [--rounds N]

Prints microseconds per 10 KB message (the best of N rounds: on a shared machine the median
moves with everyone else's load) for each text and mode.
"""

from __future__ import annotations

import argparse
import functools
import random
import string
import time
from collections.abc import Callable

from bot.security.redact import Redactor, SecretRegistry

SIZE = 10_000
ALNUM = string.ascii_letters + string.digits


def _secret(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(ALNUM) for _ in range(size))


def _registry(rng: random.Random) -> SecretRegistry:
    registry = SecretRegistry()
    for size in (46, 57, 51, 72, 40, 108, 32, 24):
        registry.add(_secret(rng, size), label="bench")
    return registry


def _fill(line: Callable[[int], str]) -> str:
    lines: list[str] = []
    total = 0
    while total < SIZE:
        lines.append(line(len(lines)))
        total += len(lines[-1]) + 1
    return "\n".join(lines)[:SIZE]


TEXTS = {
    "prose": _fill(
        lambda i: (
            "The answer is forty-two, and the rest of this reply explains why the "
            f"question matters ({i}). Could you send the notes by Friday?"
        )
    ),
    "code": _fill(
        lambda i: (
            f"    def handler_{i}(self, request: Request) -> Response:  "
            f"# see https://example.com/docs/{i}#anchor"
        )
    ),
    "log": _fill(
        lambda i: (
            f"2024-11-21T19:49:{i % 60:02d}.123Z INFO httpx: HTTP Request: POST "
            f'https://api.example.com/v1/chat/completions "HTTP/1.1 200 OK" id={i:08x}'
        )
    ),
}


def _time(action: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return min(samples) * 1e6


def _stream(redactor: Redactor, text: str) -> str:
    stream = redactor.stream()
    parts = [stream.feed(text[at : at + 10]) for at in range(0, len(text), 10)]
    return "".join(parts) + stream.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    redactor = Redactor(_registry(random.Random(1)))
    redactor.redact("warm up the needle index")
    print(f"{'text':<8}{'redact() us':>14}{'stream us':>12}")
    for name, text in TEXTS.items():
        assert redactor.redact(text) == text, name
        one_shot = _time(functools.partial(redactor.redact, text), rounds)
        streamed = _time(functools.partial(_stream, redactor, text), max(1, rounds // 4))
        print(f"{name:<8}{one_shot:>14.0f}{streamed:>12.0f}")


if __name__ == "__main__":
    main()
