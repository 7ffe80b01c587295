"""manage.py export_signature: write what an outsider needs to verify one record with openssl.

Like `manage.py export`, it never overwrites a file unasked: the three file names are
fixed, and a folder given by mistake (a home folder, one holding another tool's
public.pem) must not lose a file of the same name. --force replaces them (writing another
record's files where the last ones went). A path that cannot be written is one line naming
it and the system's reason.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from kernel import crypto
from kernel.cli import whole_number
from keyring.models import SigningKey
from records.models import Signature

FILES = ("input.bin", "signature.bin", "public.pem")


def openssl_verify_command(directory: Path, algorithm: str) -> str:
    digest = " -digest sha256" if algorithm == crypto.ECDSA_P256_SHA256 else ""
    return (
        f"openssl pkeyutl -verify -pubin -inkey {directory}/public.pem -rawin{digest} "
        f"-in {directory}/input.bin -sigfile {directory}/signature.bin"
    )


class Command(BaseCommand):
    help = (
        "Write a record's signing input, signature and public key (input.bin, signature.bin, "
        "public.pem) to a folder, and print the openssl command that verifies them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("record", type=whole_number(1), help="record id")
        parser.add_argument(
            "--out", type=Path, required=True, help="folder to write into (made if missing)"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace input.bin, signature.bin and public.pem if the folder has them",
        )

    def handle(self, *args, record: int, out: Path, force: bool, **options) -> None:
        refuse_to_overwrite(out, force=force)  # before any read: nothing is written then
        signature = Signature.objects.select_related("record").filter(record_id=record).first()
        if signature is None:
            raise CommandError(f"record {record} has no signature")
        key = SigningKey.objects.only("kid", "algorithm", "public_key_pem").get(pk=signature.key_id)
        files = {
            "input.bin": crypto.signing_input(record, signature.record.payload),
            "signature.bin": bytes(signature.signature),
            "public.pem": key.public_key_pem.encode(),
        }
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (out / name).write_bytes(data)
        except OSError as error:
            raise CommandError(
                f"cannot write {error.filename or out}: {error.strerror or error}"
            ) from None
        self.stdout.write(f"record {record}, signed by {key.kid} ({key.algorithm})")
        self.stdout.write(openssl_verify_command(out, key.algorithm))


def refuse_to_overwrite(out: Path, *, force: bool) -> None:
    """Refuse (exit 2) a path that is a file, and a folder holding one of FILES without
    --force."""
    if out.exists() and not out.is_dir():
        raise CommandError(
            f"{out} is a file, not a folder: give a folder to write into", returncode=2
        )
    existing = [name for name in FILES if (out / name).exists()] if out.is_dir() else []
    if existing and not force:
        raise CommandError(
            f"{out} already holds {', '.join(existing)}: give another folder, or --force "
            "to replace them",
            returncode=2,
        )
