"""manage.py migrate, as the database owner (DATABASE_OWNER_URL) when one is named.

The owner runs the migrations, so it owns every table, sequence and function they make;
after them, the app role gets exactly the privileges the app needs (signing.apps,
kernel.roles). With no owner URL, DATABASE_URL's role migrates, as before.
"""

from django.core.management.commands.migrate import Command as MigrateCommand

from kernel.roles import connect_as_owner


class Command(MigrateCommand):
    def handle(self, *args, **options):
        connect_as_owner(options["database"])
        return super().handle(*args, **options)
