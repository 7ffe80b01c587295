"""The seed's Collection Service: the payloads of seeded records. Loading them, and the
reset, are the backend seam's (signing.backends), called by signing.runs.seeding."""

from __future__ import annotations

import random
from collections.abc import Iterator

# Printable characters for seeded payloads: ASCII, Latin accents, Greek, CJK and an emoji,
# so every run exercises 1- to 4-byte UTF-8 in the signing input.
PAYLOAD_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-_'\"()[]{}#%&*+/=@"
    "éèàñüößçåøÉÑÜ"
    "αβγδΩλπ"
    "中文日本語한국어"
    "€£¥"
    "🙂🚀"
)


PAYLOAD_CHUNK = 10_000


def random_payloads(count: int, *, rng: random.Random) -> Iterator[str]:
    """Random printable payloads of 16 to 256 characters.

    Drawn PAYLOAD_CHUNK payloads at a time, each chunk's characters in one `choices` call
    (fast), so memory stays flat however many records are seeded.
    """
    for first in range(0, count, PAYLOAD_CHUNK):
        lengths = [rng.randint(16, 256) for _ in range(min(PAYLOAD_CHUNK, count - first))]
        characters = "".join(rng.choices(PAYLOAD_ALPHABET, k=sum(lengths)))
        offset = 0
        for length in lengths:
            yield characters[offset : offset + length]
            offset += length
