"""manage.py merkle_cost: what a batch's Merkle root costs the worker, in this process."""

from django.core.management.base import BaseCommand, CommandError

from devtools.merkle_cost import MerkleCost, measure, measure_hot_path
from kernel import crypto
from kernel.cli import refuse_an_unmigrated_database, whole_number
from kernel.roles import ResetNeedsOwner, connect_as_owner
from signing.management.cli import confirm_reset
from signing.models import SigningRun


class Command(BaseCommand):
    help = (
        "Time a batch's Merkle root against signing the batch (no database, no broker); "
        "with --hot-path, against the worker's whole batch (sign_batch) on this database, "
        "which it resets: refused, unless --reset (or a yes at a terminal), when it holds "
        "anything."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=whole_number(1), default=1000)
        parser.add_argument("--repeat", type=whole_number(1), default=50, help="samples")
        parser.add_argument(
            "--algorithm",
            choices=[crypto.ED25519, crypto.ECDSA_P256_SHA256],
            default=crypto.ED25519,
        )
        parser.add_argument(
            "--hot-path", action="store_true", help="sign_batch on this database, --repeat batches"
        )
        parser.add_argument("--reset", action="store_true", help="delete what it holds first")

    def handle(self, *args, batch_size: int, repeat: int, algorithm: str, **options) -> None:
        if not options["hot_path"]:
            self.report(measure(algorithm=algorithm, batch_size=batch_size, repeat=repeat))
            return
        connect_as_owner()  # it resets, which is the owner's
        refuse_an_unmigrated_database()
        if SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).exists():
            raise CommandError("a run is active: --hot-path resets the database")
        confirm_reset(self, reset=options["reset"], verb="merkle_cost --hot-path")
        try:
            self.report(measure_hot_path(batch_size=batch_size, batches=repeat))
        except ResetNeedsOwner as error:
            raise CommandError(str(error)) from None

    def report(self, cost: MerkleCost) -> None:
        self.stdout.write(
            f"{cost.label}, batch {cost.batch_size:,}, median of {cost.samples}: "
            f"base {cost.base_seconds * 1000:.2f} ms, root {cost.root_seconds * 1000:.3f} ms, "
            f"root = {cost.overhead_percent:.2f}%"
        )
