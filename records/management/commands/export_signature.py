"""manage.py export_signature: write what an outsider needs to verify one record with openssl."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from kernel import crypto
from kernel.cli import whole_number
from keyring.models import SigningKey
from records.models import Signature


def openssl_verify_command(directory: Path, algorithm: str) -> str:
    digest = " -digest sha256" if algorithm == crypto.ECDSA_P256_SHA256 else ""
    return (
        f"openssl pkeyutl -verify -pubin -inkey {directory}/public.pem -rawin{digest} "
        f"-in {directory}/input.bin -sigfile {directory}/signature.bin"
    )


class Command(BaseCommand):
    help = (
        "Write a record's signing input, signature and public key to a folder, and print "
        "the openssl command that verifies them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("record", type=whole_number(1), help="record id")
        parser.add_argument("--out", type=Path, required=True, help="folder to write into")

    def handle(self, *args, record: int, out: Path, **options) -> None:
        signature = Signature.objects.select_related("record").filter(record_id=record).first()
        if signature is None:
            raise CommandError(f"record {record} has no signature")
        key = SigningKey.objects.only("kid", "algorithm", "public_key_pem").get(pk=signature.key_id)
        out.mkdir(parents=True, exist_ok=True)
        (out / "input.bin").write_bytes(crypto.signing_input(record, signature.record.payload))
        (out / "signature.bin").write_bytes(bytes(signature.signature))
        (out / "public.pem").write_text(key.public_key_pem)
        self.stdout.write(f"record {record}, signed by {key.kid} ({key.algorithm})")
        self.stdout.write(openssl_verify_command(out, key.algorithm))
