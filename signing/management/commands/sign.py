"""manage.py sign: start a run, then (by default) watch it to the end and summarize it."""

import contextlib
import math
import time
from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

from kernel.cli import amount, refuse_an_unmigrated_database
from records.selectors import record_totals
from signing.backends import backend
from signing.models import SigningRun
from signing.ops.workers import EmbeddedWorkers
from signing.runs.dispatch import check_ready_to_sign, parse_batch_size, start_run
from signing.runs.exceptions import (
    InvalidBatchSize,
    NothingToSign,
    NotReadyToSign,
    RunAlreadyActive,
    RunNotActive,
)
from signing.runs.follow import start_follow_run, stop_run
from signing.runs.selectors import RunProgress, leases_left_open, run_progress

# How often the progress bar re-reads the run: a display refresh, not part of the pipeline.
# The end of the run does not wait for it: the run's finish is announced (the backend's
# announce_run_finished, a NOTIFY on PostgreSQL), and the wait ends as it comes.
REFRESH_SECONDS = 0.25
# After this long with no batch signed, the bar says that no worker may be running.
STALL_HINT_SECONDS = 15.0
STALL_HINT = "no progress: is a worker running? (manage.py rundramatiq)"
# Embedded, this process runs the workers: a stall is a stopped process's leases, which the
# reaper gives back once they expire.
STALL_HINT_EMBEDDED = "no progress: waiting for a stopped process's leases to expire"
# Where stdout is not a terminal (a pipe, a log, `make demo`'s output), the one line rich
# prints at the end may be this wide, so nothing in it is cut (rich's default is 80).
PIPED_WIDTH = 250


class Command(BaseCommand):
    help = "Sign every unsigned record in batches of a fixed size, with LRU-leased keys."
    # Django's system checks (templates, URLs, the admin) judge the web app's configuration,
    # not a run's, and loading every template library and URL for them was a third of this
    # command's start-up (issue 17). `migrate`, `check` and `serve` still run them.
    requires_system_checks = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch-size",
            default=str(settings.SIGNING_BATCH_SIZE),
            help=f"records per batch, fixed for the run (default {settings.SIGNING_BATCH_SIZE})",
        )
        parser.add_argument(
            "--no-wait", action="store_true", help="print the run id and return at once"
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="keep signing records as they arrive, until `manage.py stop RUN` (or Ctrl-C "
            "here) signs what has arrived and completes the run",
        )

    def handle(self, *args, batch_size: str, no_wait: bool, follow: bool, **options) -> None:
        self.follow = follow
        # When this process's embedded workers started: a run taken over has leases granted
        # before it, by the process that signed it before (signing.runs.selectors
        # .leases_left_open). None where the workers are not this command's.
        self.workers_started_at: datetime | None = None
        try:
            size = parse_batch_size(batch_size)
        except InvalidBatchSize as error:
            raise CommandError(str(error), returncode=2) from None
        refuse_an_unmigrated_database()
        if settings.SIGNING_EMBEDDED and no_wait:
            raise CommandError(
                "--no-wait needs worker processes: in embedded mode the workers are threads "
                "of `sign` (or `serve`) itself",
                returncode=2,
            )
        if settings.SIGNING_EMBEDDED and not EmbeddedWorkers.running_here():
            # The in-process broker is only consumed here: this command runs the workers.
            self.workers_started_at = backend().clock()
            with EmbeddedWorkers() as workers:
                self.sign(size, no_wait=False)
                workers.drain()
            return
        self.sign(size, no_wait=no_wait)

    def sign(self, size: int, *, no_wait: bool) -> None:
        run = self.start_or_resume(size)
        if run is None:
            # With --no-wait, stdout is where scripts read a run id (`run=$(… --no-wait)`):
            # with no run there is none, so stdout stays empty and the sentence goes to
            # stderr. Exit 0 all the same: nothing to sign is no error.
            if no_wait:
                self.stderr.write(nothing_to_sign(), style_func=str)  # a note, not in red
            else:
                self.stdout.write(nothing_to_sign())
            return
        if no_wait:
            self.stdout.write(str(run.pk))
            return
        console = Console(file=self.stdout._out, soft_wrap=True)
        if not console.is_terminal:
            console.width = PIPED_WIDTH
        if run.follow:
            console.print(
                f"run {run.pk} follows: records are signed as they arrive; "
                f"`manage.py stop {run.pk}` (or Ctrl-C) signs what has arrived and completes it"
            )
        try:
            try:
                progress = self.watch(run.pk, console)
            except KeyboardInterrupt:
                if not run.follow:
                    raise
                # The first Ctrl-C of a follow run is its graceful stop; a second one stops
                # watching, as for any run.
                console.print(f"stopping run {run.pk}: signing what has arrived")
                self.stop(run.pk)
                progress = self.watch(run.pk, console)
        except KeyboardInterrupt:
            raise CommandError(
                f"stopped: run {run.pk} waits in the database until `manage.py sign` resumes it "
                f"(manage.py cancel {run.pk} stops it)"
                if settings.SIGNING_EMBEDDED
                else f"stopped watching: run {run.pk} goes on in the workers "
                f"(manage.py cancel {run.pk} stops it)",
                returncode=130,
            ) from None
        console.print(summary_line(progress))
        if progress.status != "completed":
            reason = f": {progress.failure_reason}" if progress.failure_reason else ""
            raise CommandError(f"run {run.pk} {progress.status}{reason}")

    @staticmethod
    def stop(run_id: int) -> None:
        # A run that finished (or was cancelled) meanwhile: the watch says which.
        with contextlib.suppress(RunNotActive):
            stop_run(run_id)

    def start_or_resume(self, size: int) -> SigningRun | None:
        """Start a run (None if there is nothing to sign: no run is created); in embedded
        mode, take over the active run instead, if there is one.

        An embedded run is signed by the threads of the process that started it, so when
        that process stops (Ctrl-C, a kill), the run waits in the database: its open leases
        expire and the reaper of the threads started here dispatches their batches again.
        """
        # True from the take-over of a run until none of the earlier process's leases is
        # left: only then does left_open_note read them.
        self.earlier_leases_open = False
        try:
            check_ready_to_sign()
            if self.follow:
                return start_follow_run(batch_size=size)
            return start_run(batch_size=size, keep_if_empty=False)
        except NothingToSign:
            return None
        except NotReadyToSign as error:
            raise CommandError(str(error)) from None
        except RunAlreadyActive as error:
            if not settings.SIGNING_EMBEDDED or error.run_id is None:
                raise CommandError(str(error)) from None
            run = SigningRun.objects.get(pk=error.run_id)
            if run.follow != self.follow:
                raise CommandError(
                    f"{error}; it {'follows' if run.follow else 'does not follow'}: "
                    f"run `manage.py sign{' --follow' if run.follow else ''}` to resume it"
                ) from None
            self.stdout.write(
                f"resuming run {run.pk} (batch size {run.batch_size:,}, fixed for the run)"
            )
            self.earlier_leases_open = True
            if (waiting := self.left_open_note(run.pk)) is not None:
                self.stdout.write(waiting)
            return run

    def left_open_note(self, run_id: int) -> str | None:
        """What a resumed run waits for, if anything: the leases the earlier process was
        granted and did not release. Until they expire (nothing renews them once it has
        stopped) their keys stay taken and their batches unsigned; then the reaper of the
        workers started here hands the batches back. None once none is left."""
        if not self.earlier_leases_open or self.workers_started_at is None:
            return None
        left = leases_left_open(run_id, granted_before=self.workers_started_at)
        if not left.count:
            self.earlier_leases_open = False  # none can appear later: no more queries
            return None
        leases = amount(left.count, "leases")
        seconds = math.ceil((left.last_expiry - backend().clock()).total_seconds())
        if seconds > 0:
            return f"waiting for {leases} of the earlier process to expire: {seconds} s"
        return (
            f"{leases} of the earlier process expired: their batches are handed back within "
            f"{settings.SIGNING_REAPER_INTERVAL} s"
        )

    def watch(self, run_id: int, console: Console) -> RunProgress:
        backend().listen_for_finished_runs()  # before the first read: no finish goes unheard
        progress = run_progress(run_id)
        columns = progress_columns(bar=console.is_terminal)
        last_signed, last_change = -1, time.monotonic()
        stall_hint = STALL_HINT_EMBEDDED if settings.SIGNING_EMBEDDED else STALL_HINT
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(
                "sign", total=progress.total_records, run_id=run_id, rate=0.0, note=""
            )
            while True:
                progress = run_progress(run_id)
                if progress.signed_records != last_signed:
                    last_signed, last_change = progress.signed_records, time.monotonic()
                # A follow run with nothing cut and unsigned is waiting for records, not stalled.
                idle = progress.batches_pending + progress.batches_in_flight == 0
                stalled = time.monotonic() - last_change > STALL_HINT_SECONDS and not (
                    progress.follow and idle
                )
                in_flight = f"{amount(progress.batches_in_flight, 'batches')} in flight"
                bar.update(
                    task,
                    total=progress.total_records,
                    completed=progress.signed_records,
                    rate=progress.records_per_second,
                    note=self.left_open_note(run_id) or (stall_hint if stalled else in_flight),
                )
                if progress.finished:
                    return progress
                backend().wait_for_finished_run(timeout=REFRESH_SECONDS)


def progress_columns(*, bar: bool) -> tuple[ProgressColumn, ...]:
    """The progress line: with a bar on a terminal; without one in a pipe or a log, where
    rich prints the line once, at the end, and a bar says nothing the counts do not."""
    return (
        TextColumn("[bold]run {task.fields[run_id]}"),
        *([BarColumn()] if bar else []),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} records"),
        TextColumn("· {task.fields[rate]:,.0f}/s · {task.fields[note]}"),
        TimeElapsedColumn(),
    )


def summary_line(progress: RunProgress) -> str:
    return (
        f"run {progress.run_id} {progress.status}: {progress.signed_records:,} of "
        f"{amount(progress.total_records, 'records')} signed in "
        f"{amount(progress.batches_signed, 'batches')} of {progress.batch_size:,} with "
        f"{amount(progress.keys_used, 'keys')}, "
        f"{progress.seconds:.2f} s, {progress.records_per_second:,.0f} records/s"
    )


def nothing_to_sign() -> str:
    """What `sign` says when every record is signed (or there is none): no run was made."""
    totals = record_totals()
    if not totals["records"]:
        return "nothing to sign: the database holds no record (manage.py seed or ingest adds them)"
    return (
        f"nothing to sign: every record is signed already ({amount(totals['records'], 'records')}"
        "); no run was created"
    )
