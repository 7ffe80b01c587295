"""manage.py follow_latency: records arriving through the API while a follow run signs them;
the latency from insert to signature (issue 18, point 3)."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rich.table import Table

from devtools import bench, follow_latency, loadtest
from devtools.consent import consent_to_reset, console_for
from kernel.cli import whole_number


class Command(BaseCommand):
    help = (
        "Start a follow run with real workers, POST records to a web server on 127.0.0.1 at "
        "a steady rate for a while, stop the run gracefully, then print the latency from "
        "insert to signature (p50, p90, p99, max), what was left unsigned and the audit. "
        "Deletes what the database holds: refused, unless --reset (or a yes at a terminal), "
        "when it holds anything."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rate", type=whole_number(1), default=2000, help="records a second")
        parser.add_argument(
            "--request-size", type=whole_number(1), default=100, help="records per request"
        )
        parser.add_argument(
            "--seconds", type=whole_number(1), default=60, help="how long records arrive"
        )
        parser.add_argument("--batch-size", type=whole_number(1), default=100)
        parser.add_argument("--keys", type=whole_number(1), default=100)
        parser.add_argument("--workers", type=whole_number(1), default=2, help="worker processes")
        parser.add_argument("--threads", type=whole_number(1), default=4, help="threads each")
        parser.add_argument("--json", type=Path, help="write the figures to this file")
        parser.add_argument("--svg", type=Path, help="write the latency histogram to this file")
        parser.add_argument(
            "--server",
            default=loadtest.DEFAULT_SERVER,
            help="the web server's command line; {python}, {manage} and {port} are filled in",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="delete the records, signatures, runs and keys the database holds",
        )

    def handle(self, *args, **options) -> None:
        if options["request_size"] > options["rate"]:
            raise CommandError("--request-size must not exceed --rate")
        held = consent_to_reset(
            self, reset=options["reset"], verb="the latency bench", needs_servers=True
        )
        console = console_for(self)
        report = follow_latency.run_follow_latency(
            rate=options["rate"],
            request_size=options["request_size"],
            seconds=options["seconds"],
            batch_size=options["batch_size"],
            keys=options["keys"],
            workers=options["workers"],
            threads=options["threads"],
            server=options["server"],
            env={},
            log_file=bench.log_file().with_name("follow_latency.log"),
            say=console.print,
        )
        if not held.empty:
            console.print(f"deleted {held}")
        console.print(results_table(report))
        if options["json"] is not None:
            options["json"].write_text(json.dumps(report.as_dict(), indent=2))
        if options["svg"] is not None:
            options["svg"].write_text(follow_latency.histogram_svg(report))
        if not report.audit_passed or report.unsigned_at_end:
            raise CommandError("the audit failed or records were left unsigned (see the table)")


def results_table(report: follow_latency.FollowLatencyReport) -> Table:
    table = Table(
        title=f"{report.rate:,} records/s asked in requests of {report.request_size} for "
        f"{report.seconds:g} s, batch size {report.batch_size}, {report.workers} worker "
        f"processes x {report.threads} threads"
    )
    rows = (
        ("requests (late)", f"{report.requests:,} ({report.late_requests:,})"),
        ("answers", ", ".join(f"{k}: {v:,}" for k, v in report.statuses.items())),
        ("records accepted", f"{report.records_sent:,} ({report.arrival_rate:,.0f}/s)"),
        ("records signed", f"{report.records_signed:,} in {report.batches:,} batches"),
        ("unsigned at the end", f"{report.unsigned_at_end:,}"),
        ("insert → signed p50", f"{report.p50_ms:,.1f} ms"),
        ("p90", f"{report.p90_ms:,.1f} ms"),
        ("p99", f"{report.p99_ms:,.1f} ms"),
        ("max", f"{report.max_ms:,.1f} ms"),
        ("graceful stop took", f"{report.stop_seconds:.2f} s"),
        ("audit", "passed" if report.audit_passed else "FAILED"),
    )
    table.add_column("measure")
    table.add_column("figure", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table
