"""The input of `manage.py ingest`: JSON lines, one `{"payload": "…"}` per line, read as
a stream and cut into chunks that records.services.ingest_records stores one at a time.

Memory stays flat whatever the input's length: one line is read at a time, and never more
than MAX_LINE_BYTES of it (a file with no newline at all is refused after that much), and a
chunk holds at most MAX_RECORDS_PER_INGEST payloads and about CHUNK_MAX_CHARS characters.
From a pipe, a chunk is also cut when its first line has waited CHUNK_MAX_WAIT_SECONDS, so
`producer | manage.py ingest -` stores what trickles in as it comes, not once 10,000 lines
have gathered (or never, if the producer stays quiet).

Only objects are accepted, the shape of an item of POST /api/records/: one format for
both ways in, and a field added later (to either) cannot be confused with a payload. Text
lines become JSON lines with `jq -Rc '{payload: .}'`.
"""

from __future__ import annotations

import json
import os
import select
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from records.payloads import (
    MAX_PAYLOAD_CHARS,
    MAX_RECORDS_PER_INGEST,
    json_type,
    payload_problem,
    quoted_name,
    quoted_names,
)

# The longest line that can hold a valid payload: every character written as a JSON escape
# of a surrogate pair (12 bytes) and room for the object around it, rounded up.
MAX_LINE_BYTES = 2 * 1024 * 1024
# A chunk is cut once its payloads hold this many characters, so 10,000 payloads of
# 100,000 characters each never sit in memory at once.
CHUNK_MAX_CHARS = 4_000_000
# From a pipe: the longest a line read waits for its chunk to fill before it is stored.
CHUNK_MAX_WAIT_SECONDS = 0.2

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Payloads of consecutive lines, `first_line` to `last_line` (counted from 1), and how
    many bytes of the input were read once it was cut (for a progress bar)."""

    first_line: int
    payloads: list[str]
    bytes_read: int

    @property
    def last_line(self) -> int:
        return self.first_line + len(self.payloads) - 1


class BadLine(ValueError):
    """A line that is not a record; the lines before it were all yielded first."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line:,}: {reason}")
        self.line = line
        self.reason = reason


def read_chunks(
    stream: BinaryIO,
    *,
    max_records: int = MAX_RECORDS_PER_INGEST,
    max_chars: int = CHUNK_MAX_CHARS,
    max_wait: float = CHUNK_MAX_WAIT_SECONDS,
) -> Iterator[Chunk]:
    """The records of `stream`, a chunk at a time, in input order.

    At the first bad line, the good lines before it still in hand are yielded as a last
    chunk, then BadLine is raised: a caller that stores every chunk it is given has stored
    exactly the lines before the bad one.
    """
    lines = LineReader(stream)
    payloads: list[str] = []
    chars = 0
    first_line = 1
    bytes_read = 0
    line_number = 0
    waited_since = 0.0
    while True:
        timeout = max(0.0, waited_since + max_wait - time.monotonic()) if payloads else None
        raw = lines.read(timeout=timeout)
        if raw is None:  # the chunk's first line has waited long enough
            yield Chunk(first_line, payloads, bytes_read)
            payloads, chars, first_line = [], 0, line_number + 1
            continue
        if not raw:
            break
        line_number += 1
        bytes_read += len(raw)
        try:
            payload = parse_line(raw, first=line_number == 1)
        except ValueError as error:
            if payloads:
                yield Chunk(first_line, payloads, bytes_read - len(raw))
            raise BadLine(line_number, str(error)) from None
        if not payloads:
            waited_since = time.monotonic()
        payloads.append(payload)
        chars += len(payload)
        if len(payloads) >= max_records or chars >= max_chars:
            yield Chunk(first_line, payloads, bytes_read)
            payloads, chars, first_line = [], 0, line_number + 1
    if payloads:
        yield Chunk(first_line, payloads, bytes_read)


class LineReader:
    """Lines of a stream, each cut at MAX_LINE_BYTES + 1 bytes (longer ones are refused).

    A regular file (or a stream with no file descriptor) is read with readline: it never
    makes anyone wait. Anything else (a pipe, a terminal, a socket) is read from its file
    descriptor with select, so a read can give up after a timeout: None then, b"" at the
    end of the input.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.fd = _waiting_descriptor(stream)
        self.buffer = bytearray()
        self.start = 0  # where the next line starts in the buffer
        self.ended = False

    def read(self, *, timeout: float | None) -> bytes | None:
        if self.fd is None:
            return self.stream.readline(MAX_LINE_BYTES + 1)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            end = self.buffer.find(b"\n", self.start, self.start + MAX_LINE_BYTES + 1)
            held = len(self.buffer) - self.start
            if end >= 0 or self.ended or held > MAX_LINE_BYTES:
                stop = end + 1 if end >= 0 else self.start + min(held, MAX_LINE_BYTES + 1)
                line = bytes(self.buffer[self.start : stop])
                self.start = stop
                return line
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.fd], [], [], left)[0]:
                return None
            del self.buffer[: self.start]  # once per read, not once per line
            self.start = 0
            data = os.read(self.fd, 1 << 16)
            self.ended = not data
            self.buffer += data


def _waiting_descriptor(stream: BinaryIO) -> int | None:
    """The stream's file descriptor if reading it may have to wait; else None."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.BytesIO and the like
        return None
    return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd


def parse_line(raw: bytes, *, first: bool = False) -> str:
    """The payload of one line, or ValueError saying what is wrong with it (never quoting
    it: a payload may be secret)."""
    if len(raw) > MAX_LINE_BYTES:
        raise ValueError(
            f"longer than {MAX_LINE_BYTES:,} bytes, more than any record of "
            f"{MAX_PAYLOAD_CHARS:,} characters needs"
        )
    if first and raw.startswith(_BOM):  # some editors start a UTF-8 file with one
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"not UTF-8 text (byte 0x{raw[error.start]:02x} at byte {error.start + 1:,})"
        ) from None
    if not text.strip():
        raise ValueError('empty: every line must be a JSON object {"payload": "…"}')
    try:
        value = json.loads(
            text, object_pairs_hook=object_with_unique_keys, parse_constant=_no_constant
        )
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno:,})") from None
    if not isinstance(value, dict):
        hint = " (use jq -Rc '{payload: .}' to wrap text lines)" if isinstance(value, str) else ""
        raise ValueError(f'must be a JSON object {{"payload": "…"}}, not {json_type(value)}{hint}')
    if unknown := set(value) - {"payload"}:
        raise ValueError(f"unknown field {quoted_names(unknown)}")
    if "payload" not in value:
        raise ValueError("the field 'payload' is required")
    if (reason := payload_problem(value["payload"])) is not None:
        raise ValueError(f"payload {reason}")
    return value["payload"]


def object_with_unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json's object_pairs_hook for an object whose every key is given once (ValueError
    otherwise): of two payloads, which one was meant? The API's parser uses it too."""
    value: dict[str, object] = {}
    for key, item in pairs:
        if key in value:
            raise ValueError(f"the field {quoted_name(key)} is given twice")
        value[key] = item
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
