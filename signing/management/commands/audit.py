"""manage.py audit: prove rules 1-5 from the tables; exit 1 on any breach."""

import json

from django.core.management.base import BaseCommand
from rich.console import Console

from kernel.cli import whole_number
from signing.audit.rules import AuditReport, audit
from signing.management.cli import require_run


class Command(BaseCommand):
    help = "Check from the tables alone that no rule was broken; exit 1 if any was."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--run", type=whole_number(1), help="audit only this run")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, run: int | None, json: bool, **options) -> None:
        if run is not None:
            require_run(run)
        report = audit(run_id=run)
        if json:
            self.stdout.write(_json(report))
        else:
            print_report(report, Console(file=self.stdout._out, soft_wrap=True))
        if not report.passed:
            raise SystemExit(1)


def _json(report: AuditReport) -> str:
    return json.dumps(report.as_dict(), indent=2)


def print_report(report: AuditReport, console: Console) -> None:
    scope = f"run {report.run_id}" if report.run_id else "all runs and records"
    console.print(f"[bold]Audit of {scope}[/bold]")
    for check in report.checks:
        mark = "[green]PASS[/green]" if check.passed else "[red]FAIL[/red]"
        examined = f" ({check.examined:,} examined)" if check.examined is not None else ""
        console.print(f"  {mark} rule {check.rule}: {check.description}{examined}")
        for breach in check.breaches:
            console.print(f"       - {breach}", markup=False)
        if check.breach_count > len(check.breaches):
            console.print(f"       … and {check.breach_count - len(check.breaches):,} more")
        for note in check.notes:  # not judged, and why: no breach
            console.print(f"       note: {note}", markup=False)
        if check.note_count > len(check.notes):
            console.print(f"       … and {check.note_count - len(check.notes):,} more notes")
    verdict = "[green]PASSED[/green]" if report.passed else "[red]FAILED[/red]"
    console.print(f"[bold]Audit {verdict}[/bold]")
