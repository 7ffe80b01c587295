from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SigningConfig(AppConfig):
    name = "signing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_grant_app_role_after_migrate, sender=self)


def _grant_app_role_after_migrate(sender, using: str, **kwargs) -> None:
    """After every `migrate` (run as the owner): the app role's grants, set exactly again,
    so whatever a migration added is usable by the web app and the workers
    (signing.roles says what they may do). Nothing when the role does not exist."""
    from django.conf import settings

    from signing.roles import grant_app_role

    grant_app_role(role=settings.SIGNING_DB_APP_ROLE, using=using)
