"""manage.py export: every signed record, its public key and its Merkle proof, in files
anyone can verify offline with tools/verify_export.py (docs/usage.md)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kernel.cli import amount, refuse_an_unmigrated_database, whole_number
from signing.exports.export import (
    ExportDirNotEmpty,
    ExportError,
    plan_export,
    refuse_a_non_empty_directory,
    write_export,
)
from signing.management.cli import require_run


class Command(BaseCommand):
    help = (
        "Write records.jsonl, jwks.json and manifest.json into an empty directory: every "
        "signed record with its signature and inclusion proof, the public keys, the roots."
    )
    requires_system_checks = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--out", type=Path, required=True, help="an empty or new directory to write into"
        )
        parser.add_argument("--run", type=whole_number(1), help="export only this run")

    def handle(self, *args, out: Path, run: int | None, **options) -> None:
        try:
            refuse_a_non_empty_directory(out)  # before any read: nothing is overwritten
        except ExportDirNotEmpty as error:
            raise CommandError(str(error), returncode=2) from None
        refuse_an_unmigrated_database()
        if run is not None:
            require_run(run)
        plan = plan_export(run)
        console = Console(file=self.stdout._out, soft_wrap=True)
        columns = (
            TextColumn("[bold]export"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
            TimeElapsedColumn(),
        )
        try:
            with Progress(*columns, console=console, transient=False) as bar:
                task = bar.add_task("export", total=plan.records)
                summary = write_export(out, plan, on_progress=lambda done: bar.advance(task, done))
        except ExportError as error:
            raise CommandError(str(error)) from None
        console.print(
            f"exported {amount(summary.records, 'records')} of "
            f"{amount(summary.batches, 'batches')} of {amount(summary.runs, 'runs')}, signed "
            f"by {amount(summary.keys, 'keys')}, to {summary.directory}",
            markup=False,
        )
        console.print(f"verify: python tools/verify_export.py {summary.directory}", markup=False)
