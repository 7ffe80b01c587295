"""manage.py keys: add, disable, enable or retire one, export the public keys, rotate the KEK,
re-seal keys left under an old one."""

import json
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

from kernel import crypto
from kernel.cli import whole_number
from keyring import sealing
from keyring.exceptions import KekError, KeyHeld, KeyRetired
from keyring.models import SigningKey
from keyring.selectors import keys_in_lru_order, public_jwks
from keyring.services import create_keys, disable_key, enable_key, retire_key
from signing.runs.dispatch import reseal_keys_between_runs, rotate_kek_between_runs
from signing.runs.exceptions import RunAlreadyActive

KEK_ENV, NEW_KEK_ENV = sealing.KEK_ENV, sealing.NEW_KEK_ENV


class Command(BaseCommand):
    help = (
        "Manage the keyring: add keys, disable, enable or retire one, export public keys, "
        "rotate the KEK, re-seal keys left under an old KEK."
    )

    RUN_ACTIVE = (
        "a run is active: its workers may still need the keys as they are sealed now; wait "
        "for it or cancel it, then {then}"
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
        retire = actions.add_parser(
            "retire",
            help="take this key out for good: never leased again, its sealed private key "
            "erased, its public key kept for verifying",
        )
        retire.add_argument("kid")
        export = actions.add_parser("export-public", help="print every public key")
        export.add_argument("--format", choices=["pem", "jwks"], default="pem")
        actions.add_parser(
            "rotate-kek", help=f"re-seal every private key under {NEW_KEK_ENV}, all or none"
        )
        reseal = actions.add_parser(
            "reseal",
            help=f"re-seal under {KEK_ENV} the keys it does not open but an old KEK does",
        )
        reseal.add_argument(
            "--old-kek-env",
            required=True,
            metavar="VAR",
            help="the environment variable holding the old KEK (its name, not its value, so "
            "the KEK stays out of the command line)",
        )

    def handle(self, *args, action: str, **options) -> None:
        handlers = {
            "add": self.add,
            "disable": self.disable,
            "enable": self.enable,
            "retire": self.retire,
            "export-public": self.export_public,
            "rotate-kek": self.rotate_kek,
            "reseal": self.reseal,
        }
        try:
            handlers[action](**options)
        except (KekError, KeyHeld, KeyRetired) as error:
            raise CommandError(str(error)) from None

    def add(self, *, algorithm: str, count: int, **_) -> None:
        keys = create_keys(count=count, algorithm=algorithm, kek=sealing.kek_from_environment())
        for key in keys:
            self.stdout.write(f"added {key.kid} ({key.algorithm})")

    def disable(self, *, kid: str, **_) -> None:
        key = self.change(disable_key, kid)
        since = key.disabled_at.isoformat() if key.disabled_at else "before that was recorded"
        until = "ever (it is retired)" if key.retired_at else "until it is enabled"
        self.stdout.write(
            f"{key.kid} is disabled (since {since}): it is not leased again {until}, and the "
            "signatures it made still verify"
        )

    def enable(self, *, kid: str, **_) -> None:
        key = self.change(enable_key, kid)
        self.stdout.write(f"{key.kid} is enabled: leased again in its LRU turn")

    def retire(self, *, kid: str, **_) -> None:
        key = self.change(retire_key, kid)
        self.stdout.write(
            f"{key.kid} is retired (since {key.retired_at.isoformat()}): never leased again, "
            "its sealed private key erased from the keyring; the signatures it made still "
            "verify. Workers that opened it keep it in memory until they restart, and backups "
            "keep its sealed copy: if it may be compromised, restart the workers and see to "
            "the backups (docs/usage.md, Key lifecycle)."
        )

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
            state = "retired" if key.retired_at else "enabled" if key.enabled else "disabled"
            self.stdout.write(f"# {key.kid} ({key.algorithm}, {state})")
            self.stdout.write(key.public_key_pem.strip())

    def rotate_kek(self, **_) -> None:
        old_kek = sealing.kek_from_environment()
        new_kek = sealing.new_kek_from_environment()
        if new_kek == old_kek:
            raise CommandError(
                f"{NEW_KEK_ENV} is the current {KEK_ENV}: nothing to rotate; export a new "
                f"random KEK as {NEW_KEK_ENV}, made by `{sealing.GENERATE_KEK}`"
            )
        try:
            count = rotate_kek_between_runs(old_kek=old_kek, new_kek=new_kek)
        except RunAlreadyActive:
            raise CommandError(self.RUN_ACTIVE.format(then="rotate")) from None
        self.stdout.write(
            f"re-sealed {count} private keys under {NEW_KEK_ENV}. Set {KEK_ENV} to that value "
            "(in .env or your secret store) and restart the workers and the web server."
        )

    def reseal(self, *, old_kek_env: str, **_) -> None:
        kek = sealing.kek_from_environment()
        old_kek = sealing.old_kek_from_environment(old_kek_env)
        if old_kek == kek:
            raise CommandError(
                f"{old_kek_env} is the current {KEK_ENV}: give the variable holding the KEK "
                "the keys it does not open were sealed under"
            )
        try:
            done = reseal_keys_between_runs(old_kek=old_kek, kek=kek, old_name=old_kek_env)
        except RunAlreadyActive:
            raise CommandError(self.RUN_ACTIVE.format(then="re-seal")) from None
        if not done.kids:
            self.stdout.write(f"{KEK_ENV} opens every key already: nothing to re-seal")
            return
        self.stdout.write(f"re-sealed under {KEK_ENV}: {', '.join(done.kids)}")
        if left := done.still_sealed_elsewhere:
            self.stdout.write(
                f"opened by neither KEK, left as they were: {', '.join(left)}. Re-seal them "
                "from the variable holding their KEK, or if it is lost, retire each "
                "(`manage.py keys retire KID`)."
            )
