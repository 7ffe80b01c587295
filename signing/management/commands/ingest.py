"""manage.py ingest FILE: add the records of a JSON-lines file (or `-`, standard input).

Each chunk of up to 10,000 lines is stored in a transaction of its own (records.services.
ingest_records, as the API stores a request), so a load of millions of lines never holds
one transaction open for minutes: SQLite's one write lock would stop embedded mode's
workers for that long, a session idle in a transaction while a slow pipe fills is cut by
idle_in_transaction_session_timeout, and nothing would be signed until the very end. In
exchange, whatever stops it (a bad line, Ctrl-C, SIGTERM, a database error) is followed by
an exact statement: which lines are stored, under which ids, and the line to go on from.
docs/usage.md says why this and not all-or-nothing.

Here in signing, not in records: what must happen once records have arrived (a run that
follows them) is the signing app's, and goes right after each ingest_records call.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kernel.cli import amount, refuse_an_unmigrated_database
from records.exceptions import IngestRefused
from records.jsonl import BadLine, Chunk, read_chunks
from records.services import ingest_records
from signing.runs.follow import records_arrived


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.returncode = 128 + signum


class StopBetweenChunks:
    """SIGINT and SIGTERM stop the command at once, except while a chunk is being stored
    and counted: then they wait for the chunk's end. Otherwise a signal between a chunk's
    commit and its count would make the final statement wrong by one chunk."""

    def __init__(self) -> None:
        self._storing = False
        self._pending: int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        if self._storing:
            self._pending = signum
            return
        raise Stopped(signum)

    @contextmanager
    def installed(self) -> Iterator[StopBetweenChunks]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # only the main thread may set handlers: signals stay as they were
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def storing(self) -> Iterator[None]:
        self._storing = True
        try:
            yield
        finally:
            self._storing = False
        if self._pending is not None:
            raise Stopped(self._pending)


@dataclass(slots=True)
class Stored:
    """What has been committed so far: lines 1 to `through_line`, as `count` records."""

    count: int = 0
    through_line: int = 0
    first_id: int | None = None
    last_id: int | None = None

    def add(self, chunk: Chunk, ids: list[int]) -> None:
        self.count += len(ids)
        self.through_line = chunk.last_line
        self.first_id = ids[0] if self.first_id is None else self.first_id
        self.last_id = ids[-1]

    def ids(self) -> str:
        """The ids stored: a range, saying so when other writers' ids lie inside it."""
        if self.first_id is None or self.last_id is None:
            return "no ids"
        if self.first_id == self.last_id:
            return f"id {self.first_id}"
        if self.last_id - self.first_id + 1 == self.count:
            return f"ids {self.first_id} to {self.last_id}"
        return (
            f"ids from {self.first_id} to {self.last_id} (with other writers' records between them)"
        )

    def lines(self) -> str:
        if self.through_line == 1:
            return "line 1 is"
        return f"lines 1 to {self.through_line:,} are"

    def statement(self) -> str:
        if not self.count:
            return "nothing was stored."
        return (
            f"{self.lines()} stored as {amount(self.count, 'records')}, {self.ids()}; "
            f"nothing after line {self.through_line:,} was stored."
        )


class Command(BaseCommand):
    help = (
        'Add records from a file of JSON lines, one {"payload": "…"} per line ("-" reads '
        "standard input). Stored in chunks of up to 10,000 lines, each in one transaction; "
        "at a bad line it stops and says which lines are stored and where to go on from."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help='a JSON-lines file, or "-" for standard input')
        parser.add_argument(
            "--check",
            action="store_true",
            help="read and check every line, store nothing",
        )

    def handle(self, *args, file: str, check: bool, verbosity: int, **options) -> None:
        refuse_an_unmigrated_database()
        name = "standard input" if file == "-" else file
        console = Console(file=self.stdout._out, soft_wrap=True)
        stored = Stored()
        with self.opened(file) as stream, StopBetweenChunks().installed() as stops:
            try:
                for chunk in self.watched(read_chunks(stream), console, size=_size_of(stream)):
                    if check:
                        stored.through_line, stored.count = chunk.last_line, chunk.last_line
                        continue
                    with stops.storing():
                        ids = ingest_records(chunk.payloads)
                        stored.add(chunk, ids)
                    records_arrived()  # a follow run cuts a batch now if one is due
                    if verbosity >= 2:  # a trail to go on from, should the process be killed
                        console.print(
                            f"lines {chunk.first_line:,} to {chunk.last_line:,} stored: "
                            f"ids {ids[0]} to {ids[-1]}",
                            highlight=False,
                        )
            except BadLine as bad:
                raise CommandError(self.stopped(str(bad), bad.line, stored, file, check)) from None
            except Stopped as stop:
                reason = f"stopped by {stop}"
                raise CommandError(
                    self.stopped(reason, stored.through_line + 1, stored, file, check),
                    returncode=stop.returncode,
                ) from None
            except (DatabaseError, IngestRefused) as error:
                line = stored.through_line + 1
                reason = f"the chunk from line {line:,} was not stored: {_first_line(error)}"
                raise CommandError(self.stopped(reason, line, stored, file, check)) from None
        if check:
            self.stdout.write(
                f"checked {stored.count:,} lines of {name}: every one can be ingested "
                "(nothing stored: --check)"
            )
        elif not stored.count:
            self.stdout.write(f"nothing to ingest: {name} has no lines")
        else:
            self.stdout.write(
                f"ingested {stored.count:,} records from {name} (lines 1 to "
                f"{stored.through_line:,}): {stored.ids()}"
            )

    @staticmethod
    def stopped(reason: str, line: int, stored: Stored, file: str, check: bool) -> str:
        """Why it stopped, what is stored, and how to go on from `line`."""
        if check:
            return f"{reason}\nnothing was stored (--check)"
        go_on = (
            f"the same input from line {line:,} on (tail -n +{line}) to manage.py ingest -"
            if file == "-"
            else f"tail -n +{line} {file} | manage.py ingest -"
        )
        return f"{reason}\n{stored.statement()}\nto go on from line {line:,}: {go_on}"

    @contextmanager
    def opened(self, file: str) -> Iterator[BinaryIO]:
        if file == "-":
            yield sys.stdin.buffer
            return
        try:
            stream = Path(file).open("rb")  # noqa: SIM115 (closed below, after the with)
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error.strerror}") from None
        with stream:
            yield stream

    def watched(self, chunks: Iterator[Chunk], console: Console, *, size: int | None):
        """The chunks, with a progress bar (by bytes when the size is known) beside them."""
        columns = (
            TextColumn("[bold]ingest"),
            BarColumn(),
            TextColumn("{task.fields[lines]:,} lines · {task.fields[rate]:,.0f}/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task: TaskID = bar.add_task("ingest", total=size, lines=0, rate=0.0)
            for chunk in chunks:
                yield chunk
                elapsed = bar.tasks[0].elapsed or 0.0
                bar.update(
                    task,
                    completed=chunk.bytes_read,
                    lines=chunk.last_line,
                    rate=chunk.last_line / elapsed if elapsed else 0.0,
                )


def _size_of(stream: BinaryIO) -> int | None:
    """The bytes to read, when the input is a regular file; None for a pipe or terminal."""
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor (a test's BytesIO)
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def _first_line(error: Exception) -> str:
    """An error's first line, cut short: a database's detail lines may quote row values."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 200 else text[:200] + "…"
