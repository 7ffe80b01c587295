from django.apps import AppConfig


class SigningConfig(AppConfig):
    name = "signing"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from signing.api.authentication import revoke_tokens_on_password_change

        # A signal, as the user model is Django's: every path that changes a password
        # saves the user, and none of them is ours to call a service from.
        pre_save.connect(
            revoke_tokens_on_password_change,
            sender=get_user_model(),
            dispatch_uid="signing.revoke_tokens_on_password_change",
        )
