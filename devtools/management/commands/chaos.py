"""manage.py chaos: run the crash and restart trials against real processes; print a table."""

import argparse
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.table import Table

from devtools.chaos import TRIALS, TrialResult, prepare, run_trial
from devtools.sandbox import Sandbox, SandboxError


class Command(BaseCommand):
    help = (
        "Kill and restart workers, Redis and PostgreSQL mid-run in a private sandbox, let the "
        "service heal itself, and audit every run. Exit 1 if any trial broke a rule."
    )

    def add_arguments(self, parser) -> None:
        # Checked by type, not choices: argparse checks a '*' positional's default ([]) against
        # its choices on Python 3.11, so choices had to list [], which --help then showed.
        parser.add_argument(
            "trials",
            nargs="*",
            type=trial_name,
            metavar="TRIAL",
            help=f"trials to run (default: all): {', '.join(TRIALS)}",
        )
        parser.add_argument("--json", type=Path, help="also write the results to this file")

    def handle(self, *args, trials: list[str], json: Path | None, **options) -> None:
        out = self.stdout._out
        console = Console(file=out, soft_wrap=True, width=None if out.isatty() else 150)
        names = trials or list(TRIALS)
        results: list[TrialResult] = []
        started = time.monotonic()
        try:
            with Sandbox() as sandbox:
                console.print(
                    f"sandbox: PostgreSQL {sandbox.postgres.url}, Redis {sandbox.redis.url}"
                )
                prepare(sandbox)
                for name in names:
                    with console.status(f"trial: {name}"):
                        results.append(run_trial(name, sandbox))
                    console.print(f"  {'PASS' if results[-1].passed else 'FAIL'} {name}")
                    for note in results[-1].notes:
                        console.print(f"      {note}", markup=False)
        except SandboxError as error:
            raise CommandError(str(error)) from None
        console.print(results_table(results))
        console.print(f"{len(results)} trials in {time.monotonic() - started:.0f} s")
        if json is not None:
            json.write_text(_json(results))
        if not all(result.passed for result in results):
            raise CommandError("a trial broke a rule or did not finish (see the table)")


def trial_name(text: str) -> str:
    """A trial's name, or argparse's one-line error listing the names there are."""
    if text not in TRIALS:
        raise argparse.ArgumentTypeError(f"no trial {text!r}: one of {', '.join(TRIALS)}")
    return text


def results_table(results: list[TrialResult]) -> Table:
    table = Table(title="Chaos trials")
    for column in (
        "trial",
        "records signed",
        "double signatures",
        "overlapping leases",
        "keys left locked",
        "recovery s",
        "fenced writes",
        "run",
        "audit",
        "trial s",
    ):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.name,
            f"{r.records_signed:,}/{r.records:,}",
            str(r.double_signatures),
            str(r.overlapping_leases),
            str(r.keys_left_locked),
            "-" if r.recovery_seconds is None else f"{r.recovery_seconds:.1f}",
            str(r.fenced_writes),
            r.run_status,
            "passed" if r.audit_passed else "FAILED",
            f"{r.seconds:.0f}",
        )
    return table


def _json(results: list[TrialResult]) -> str:
    import dataclasses
    import json as json_module

    return json_module.dumps(
        [dataclasses.asdict(r) | {"passed": r.passed} for r in results], indent=2
    )
