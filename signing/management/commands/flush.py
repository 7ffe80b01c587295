"""manage.py flush, which also empties embedded mode's keyring (used by the test suite), and
never restarts ids: a message from before the flush must not name a row made after it.

On SQLite a lease may be deleted only once its key is gone (keyring migration 0006), and
Django's flush deletes tables in name order, leases before keys; so on SQLite, a flush
that needs no confirmation first empties the service's tables in an order the history
trigger accepts. PostgreSQL's flush is a TRUNCATE, which the trigger does not see.
"""

from django.core.management.commands.flush import Command as FlushCommand
from django.db import connections

from kernel.roles import connect_as_owner
from kernel.vendor import SQLITE
from signing.backends.sqlite import reset_tables


class Command(FlushCommand):
    def handle(self, **options) -> None:
        options["reset_sequences"] = False
        connect_as_owner(options["database"])  # a TRUNCATE: the owner's (kernel/roles.py)
        if connections[options["database"]].vendor == SQLITE and not options["interactive"]:
            reset_tables(using=options["database"])
        super().handle(**options)
