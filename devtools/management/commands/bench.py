"""manage.py bench: raw signing speed, seed time, and full runs per batch size, compared."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devtools import bench, keyring_turns
from devtools.consent import consent_to_reset, console_for
from kernel.cli import add_measured_run_arguments
from kernel.roles import ResetNeedsOwner


def batch_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(text)
    return sizes


batch_sizes.__name__ = "comma-separated list of batch sizes"


class Command(BaseCommand):
    help = (
        "Measure raw signing throughput (1 and N processes, no database or broker), seeding, "
        "and per batch size `manage.py sign` timed from the outside with real workers, its "
        "commits and Redis commands per batch, audited. Deletes what the database "
        "holds: refused, unless --reset (or a yes at a terminal), when it holds anything."
    )

    def add_arguments(self, parser) -> None:
        add_measured_run_arguments(parser)
        parser.add_argument("--batch-sizes", type=batch_sizes, default=[10, 100, 1000])

    def handle(self, *args, **options) -> None:
        held = consent_to_reset(self, reset=options["reset"], verb="the benchmark")
        console = console_for(self)
        records, keys, workers = options["records"], options["keys"], options["workers"]
        with console.status("seeding"):
            try:
                seed_seconds = bench.seed_fresh(records=records, keys=keys)
            except ResetNeedsOwner as error:
                raise CommandError(str(error)) from None
        if not held.empty:
            console.print(f"deleted {held}")
        console.print(f"seeded {records:,} records and {keys} keys in {seed_seconds:.2f} s")
        with console.status("raw signing, 1 process"):
            raw_one = bench.raw_signing_rate(processes=1)
        with console.status(f"raw signing, {workers} processes"):
            raw = bench.raw_signing_rate(processes=workers)
        console.print(f"raw signing: {raw_one:,.0f}/s in 1 process, {raw:,.0f}/s in {workers}")
        report = bench.BenchReport(
            records=records,
            keys=keys,
            workers=workers,
            threads=options["threads"],
            raw_records_per_s_one_process=round(raw_one, 1),
            raw_records_per_s=round(raw, 1),
            seed_seconds=round(seed_seconds, 3),
        )
        if not settings.SIGNING_EMBEDDED:  # the keyring lock is PostgreSQL's
            self.measure_keyring(report, console)
        for size in options["batch_sizes"]:
            report.results.append(self.measure(size, report, options, console))
        console.print(results_table(report))
        if report.keyring_turns:
            console.print(keyring_table(report))
        if options["json"] is not None:
            options["json"].write_text(json.dumps(report.as_dict(), indent=2))
        if not all(result.audit_passed for result in report.results):
            raise CommandError("an audit failed (see the table)")

    def measure_keyring(self, report: bench.BenchReport, console: Console) -> None:
        """The keyring lock's turn and the store's rate, uncontended (docs/scaling.md)."""
        with console.status("the keyring lock's turns and the store's rate"):
            for group in KEYRING_GROUPS:
                bench.seed_fresh(records=min(report.records, 20_000), keys=report.keys)
                report.keyring_turns.append(
                    keyring_turns.measure_turns(completions_per_turn=group, turns=300)
                )
            for size in STORE_BATCH_SIZES:
                bench.seed_fresh(records=min(report.records, size * 20), keys=report.keys)
                report.store_rates.append(keyring_turns.measure_store(batch_size=size, batches=15))

    def measure(self, size: int, report, options, console: Console) -> bench.PipelineResult:
        bench.seed_fresh(records=report.records, keys=report.keys)
        columns = (
            TextColumn(f"batch size {size:,}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("run", total=report.records)
            run = bench.pipeline_run(
                batch_size=size,
                workers=report.workers,
                threads=options["threads"],
                log_file=bench.log_file(),
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        rate = report.records / run.seconds if run.seconds else 0.0
        return bench.PipelineResult(
            batch_size=size,
            seconds=round(run.seconds, 3),
            records_per_s=round(rate, 1),
            ratio=round(rate / report.raw_records_per_s, 3) if report.raw_records_per_s else 0.0,
            batches_per_s=round(run.batches / run.seconds, 1) if run.seconds else 0.0,
            peak_rss_mb=round(run.peak_rss_mb, 1),
            audit_passed=run.audit_passed,
            run_seconds=round(run.run_seconds, 3),
            commits_per_batch=_per(run.commits, run.batches),
            broker_commands_per_batch=_per(run.broker_commands, run.batches),
        )


# Completions per turn of the keyring lock, and batch sizes whose store is timed.
KEYRING_GROUPS = (1, 4, 16)
STORE_BATCH_SIZES = (10, 100, 1000, 10_000)


def keyring_table(report) -> Table:
    table = Table(title="the keyring lock per turn, and the store, uncontended (docs/scaling.md)")
    for column in ("completions per turn", "turn ms", "ms per batch", "ceiling batches/s"):
        table.add_column(column, justify="right")
    for turns in report.keyring_turns:
        table.add_row(
            str(turns.completions_per_turn),
            f"{turns.turn_ms:.2f}",
            f"{turns.per_batch_ms:.2f}",
            f"{turns.ceiling_batches_per_s:,.0f}",
        )
    for rate in report.store_rates:
        table.add_row(
            f"store of {rate.batch_size:,}",
            f"{rate.store_ms:.2f}",
            "",
            f"{rate.records_per_s:,.0f} records/s",
        )
    return table


def _per(count: int | None, batches: int) -> float | None:
    return None if count is None or not batches else round(count / batches, 2)


def results_table(report) -> Table:
    workers = (
        f"embedded mode, {report.threads} worker threads in one process"
        if settings.SIGNING_EMBEDDED
        else f"{report.workers} worker processes x {report.threads} threads"
    )
    table = Table(
        title=f"{report.records:,} records, {report.keys} keys, {workers}; "
        f"raw {report.raw_records_per_s:,.0f}/s"
    )
    for column in (
        "batch size",
        "seconds (sign, outside)",
        "records/s",
        "ratio to raw",
        "batches/s",
        "commits/batch",
        "Redis cmds/batch",
        "run's own seconds",
        "peak worker RSS MB",
        "audit",
    ):
        table.add_column(column, justify="right")
    for r in report.results:
        table.add_row(
            f"{r.batch_size:,}",
            f"{r.seconds:.2f}",
            f"{r.records_per_s:,.0f}",
            f"{r.ratio:.0%}",
            f"{r.batches_per_s:,.1f}",
            "-" if r.commits_per_batch is None else f"{r.commits_per_batch:.1f}",
            "-" if r.broker_commands_per_batch is None else f"{r.broker_commands_per_batch:.1f}",
            f"{r.run_seconds:.2f}",
            f"{r.peak_rss_mb:.0f}",
            "passed" if r.audit_passed else "FAILED",
        )
    return table
