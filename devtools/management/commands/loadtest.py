"""manage.py loadtest: a run's throughput while the web tier is under load, per request rate."""

import json

from django.core.management.base import BaseCommand, CommandError
from rich.table import Table

from devtools import bench, loadtest
from devtools.consent import consent_to_reset, console_for
from kernel.cli import add_measured_run_arguments, whole_number


def rates(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= value <= 1000 for value in values):
        raise ValueError(f"not a list of rates: {text!r}")
    return values


rates.__name__ = "comma-separated list of request rates (0 to 1000 a second)"


class Command(BaseCommand):
    help = (
        "Sign a fresh run per request rate with real workers while dashboards, API clients "
        "and a scraper hit a web server on 127.0.0.1 at that rate (0: no load); print each "
        "run's throughput, the answers (5xx, errors) and the audit. Deletes what the "
        "database holds: refused, unless --reset (or a yes at a terminal), when it holds "
        "anything."
    )

    def add_arguments(self, parser) -> None:
        add_measured_run_arguments(parser)
        parser.add_argument("--batch-size", type=whole_number(1), default=1000)
        parser.add_argument(
            "--rates", type=rates, default=[0, 10, 200], help="requests a second, e.g. 0,10,200"
        )
        parser.add_argument(
            "--server",
            default=loadtest.DEFAULT_SERVER,
            help="the web server's command line; {python}, {manage} and {port} are filled in "
            f"(default: {loadtest.DEFAULT_SERVER!r})",
        )

    def handle(self, *args, **options) -> None:
        held = consent_to_reset(
            self, reset=options["reset"], verb="the load test", needs_servers=True
        )
        console = console_for(self)
        report = loadtest.run_load_test(
            records=options["records"],
            keys=options["keys"],
            batch_size=options["batch_size"],
            rates=options["rates"],
            workers=options["workers"],
            threads=options["threads"],
            server=options["server"],
            env={},
            log_file=bench.log_file().with_name("loadtest.log"),
            say=console.print,
        )
        if not held.empty:
            console.print(f"deleted {held}")
        console.print(results_table(report))
        if options["json"] is not None:
            options["json"].write_text(json.dumps(report.as_dict(), indent=2))
        if not all(r.audit_passed for r in report.results):
            raise CommandError("an audit failed (see the table)")


def results_table(report: loadtest.LoadReport) -> Table:
    baseline = report.baseline()
    table = Table(
        title=f"{report.records:,} records, {report.keys} keys, {report.workers} worker "
        f"processes x {report.threads} threads; server: {report.server}"
    )
    for column in (
        "requests/s",
        "batch size",
        "run s",
        "records/s",
        "vs no load",
        "requests",
        "late",
        "5xx",
        "errors",
        "p50 ms",
        "p95 ms",
        "max ms",
        "audit",
    ):
        table.add_column(column, justify="right")
    for r in report.results:
        change = f"{r.records_per_s / baseline - 1:+.1%}" if baseline else "-"
        table.add_row(
            f"{r.rate:g}",
            f"{r.batch_size:,}",
            f"{r.seconds:.2f}",
            f"{r.records_per_s:,.0f}",
            change,
            f"{r.requests:,}",
            f"{r.late:,}",
            f"{r.server_errors:,}",
            f"{r.errors:,}",
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
            f"{r.max_ms:.1f}",
            "passed" if r.audit_passed else "FAILED",
        )
    return table
