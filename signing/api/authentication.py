"""API tokens that expire and die with a password change, and the lockout of /api/auth/token/.

A token lives SIGNING_TOKEN_TTL_HOURS from when it was issued. POST /api/auth/token/ with a
user's credentials answers the user's token while it is still valid (so that two scripts of
one user do not log each other out), and a new one once it has expired; `expires_at` says
when. Changing a user's password deletes the user's tokens (`revoke_tokens_on_password_change`),
as Django's own session check logs the user's sessions out.

Failed logins are counted by django-axes (signing.ops.logins): it sees the token view's
authenticate() as it sees the login page's. A locked-out client gets 429 in the API's error
shape (the view is signing.api.views.ObtainExpiringToken).

Kept apart from the views: DRF imports this module while it imports its own views.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token


def token_lifetime() -> timedelta:
    return timedelta(hours=settings.SIGNING_TOKEN_TTL_HOURS)


def token_expires_at(token: Token) -> datetime:
    return token.created + token_lifetime()


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token older than SIGNING_TOKEN_TTL_HOURS."""

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, Token]:
        user, token = super().authenticate_credentials(key)
        if token_expires_at(token) <= timezone.now():
            raise exceptions.AuthenticationFailed(
                "Token expired: POST your username and password to /api/auth/token/ for a new one."
            )
        return user, token


def valid_token_for(user: AbstractBaseUser) -> Token:
    """The user's token if it is still valid, else a new one (the expired one deleted).

    Under a lock on the user's row, so two requests at once agree on one token."""
    with transaction.atomic():
        type(user).objects.select_for_update().filter(pk=user.pk).first()
        token = Token.objects.filter(user=user).first()
        if token is not None and token_expires_at(token) > timezone.now():
            return token
        if token is not None:
            token.delete()
        return Token.objects.create(user=user)


def revoke_tokens_on_password_change(
    sender: type, instance: AbstractBaseUser, **kwargs: Any
) -> None:
    """pre_save of the user model: a changed password hash deletes the user's API tokens.

    Every way Django changes a password (set_password then save: the admin, changepassword,
    the password change views, the demo's admin user) saves the user. An update of the
    password column that bypasses save() is not seen."""
    if instance.pk is None:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and "password" not in update_fields:
        return
    stored = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is not None and stored != instance.password:
        Token.objects.filter(user_id=instance.pk).delete()
