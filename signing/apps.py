from pathlib import Path

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate, pre_save

from kernel.backends import keep_sqlite_files_private


class SigningConfig(AppConfig):
    name = "signing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from signing.api.authentication import revoke_tokens_on_password_change

        post_migrate.connect(_grant_app_role_after_migrate, sender=self)
        connection_created.connect(_keep_sqlite_files_private)
        # A signal, as the user model is Django's: every path that changes a password
        # saves the user, and none of them is ours to call a service from.
        pre_save.connect(
            revoke_tokens_on_password_change,
            sender=get_user_model(),
            dispatch_uid="signing.revoke_tokens_on_password_change",
        )


def _grant_app_role_after_migrate(sender, using: str, **kwargs) -> None:
    """After every `migrate` (run as the owner): the app role's grants, set exactly again,
    so whatever a migration added is usable by the web app and the workers
    (kernel.roles says what they may do). Nothing when the role does not exist."""
    from django.conf import settings

    from kernel.roles import grant_app_role

    grant_app_role(role=settings.SIGNING_DB_APP_ROLE, using=using)


def _keep_sqlite_files_private(sender, connection, **kwargs) -> None:
    """Embedded mode: the database file and its -wal and -shm stay 0600, also when SQLite
    made them itself (a test database, created afresh by Django)."""
    if connection.vendor == "sqlite" and str(connection.settings_dict["NAME"]) != ":memory:":
        keep_sqlite_files_private(Path(connection.settings_dict["NAME"]))
