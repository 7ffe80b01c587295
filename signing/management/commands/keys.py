"""manage.py keys: add, disable or enable one, export the public keys, rotate the KEK."""

import json
import os
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

from kernel import crypto
from kernel.cli import whole_number
from keyring import sealing
from keyring.exceptions import KekError
from keyring.models import SigningKey
from keyring.selectors import keys_in_lru_order, public_jwks
from keyring.services import create_keys, disable_key, enable_key
from signing.runs.dispatch import rotate_kek_between_runs
from signing.runs.exceptions import RunAlreadyActive

NEW_KEK_ENV = "SIGNING_NEW_KEK"


class Command(BaseCommand):
    help = (
        "Manage the keyring: add keys, disable or enable one, export public keys, rotate the KEK."
    )

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = actions.add_parser("add", help="generate keys, sealed under SIGNING_KEK")
        add.add_argument("--algorithm", choices=crypto.ALGORITHMS, default=crypto.ED25519)
        add.add_argument("--count", type=whole_number(1), default=1)
        disable = actions.add_parser("disable", help="lease this key no more")
        disable.add_argument("kid")
        enable = actions.add_parser("enable", help="put a disabled key back in the keyring")
        enable.add_argument("kid")
        export = actions.add_parser("export-public", help="print every public key")
        export.add_argument("--format", choices=["pem", "jwks"], default="pem")
        actions.add_parser(
            "rotate-kek", help=f"re-seal every private key under {NEW_KEK_ENV}, all or none"
        )

    def handle(self, *args, action: str, **options) -> None:
        handlers = {
            "add": self.add,
            "disable": self.disable,
            "enable": self.enable,
            "export-public": self.export_public,
            "rotate-kek": self.rotate_kek,
        }
        try:
            handlers[action](**options)
        except KekError as error:
            raise CommandError(str(error)) from None

    def add(self, *, algorithm: str, count: int, **_) -> None:
        keys = create_keys(count=count, algorithm=algorithm, kek=sealing.kek_from_environment())
        for key in keys:
            self.stdout.write(f"added {key.kid} ({key.algorithm})")

    def disable(self, *, kid: str, **_) -> None:
        key = self.change(disable_key, kid)
        since = key.disabled_at.isoformat() if key.disabled_at else "before that was recorded"
        self.stdout.write(
            f"{key.kid} is disabled (since {since}): it is not leased again until it is "
            "enabled, and the signatures it made still verify"
        )

    def enable(self, *, kid: str, **_) -> None:
        key = self.change(enable_key, kid)
        self.stdout.write(f"{key.kid} is enabled: leased again in its LRU turn")

    def change(self, service: Callable[..., SigningKey], kid: str) -> SigningKey:
        try:
            return service(kid=kid)
        except SigningKey.DoesNotExist:
            raise CommandError(
                f"no key has the kid {kid!r} (manage.py keys export-public lists them)"
            ) from None

    def export_public(self, *, format: str, **_) -> None:
        if format == "jwks":
            self.stdout.write(json.dumps(public_jwks(), indent=2))
            return
        for key in keys_in_lru_order(SigningKey.objects.defer("encrypted_private_key")):
            state = "enabled" if key.enabled else "disabled"
            self.stdout.write(f"# {key.kid} ({key.algorithm}, {state})")
            self.stdout.write(key.public_key_pem.strip())

    def rotate_kek(self, **_) -> None:
        old_kek = sealing.kek_from_environment()
        new_kek = sealing.parse_kek(os.environ.get(NEW_KEK_ENV), name=NEW_KEK_ENV)
        if new_kek == old_kek:
            raise CommandError(f"{NEW_KEK_ENV} is the current SIGNING_KEK: nothing to rotate")
        try:
            count = rotate_kek_between_runs(old_kek=old_kek, new_kek=new_kek)
        except RunAlreadyActive:
            raise CommandError(
                "a run is active: its workers may still need the current KEK; wait for it or "
                "cancel it, then rotate"
            ) from None
        self.stdout.write(
            f"re-sealed {count} private keys under {NEW_KEK_ENV}. Set SIGNING_KEK to that value "
            "(in .env or your secret store) and restart the workers and the web server."
        )
