"""Pure signing functions: no Django, no database, so this could run as a serverless function.

The signing input is a public contract (README, "Signing input"): the UTF-8 bytes of
``"sig-v1\\n" + str(record_id) + "\\n" + payload``. The record id goes first so that
the same payload on two records never yields the same signed bytes, and the newline after
the id keeps ``(1, "2x")`` and ``(12, "x")`` apart.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ED25519: Final = "ed25519"
ECDSA_P256_SHA256: Final = "ecdsa-p256-sha256"
ALGORITHMS: Final = (ED25519, ECDSA_P256_SHA256)

SIGNING_INPUT_VERSION: Final = b"sig-v1"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class UnknownAlgorithm(ValueError):
    """The algorithm name is not one this service signs with."""


def signing_input(record_id: int, payload: str) -> bytes:
    """Return the exact bytes signed for a record (the contract above)."""
    return b"%s\n%d\n%s" % (SIGNING_INPUT_VERSION, record_id, payload.encode("utf-8"))


def generate_private_key(algorithm: str = ED25519) -> PrivateKey:
    if algorithm == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == ECDSA_P256_SHA256:
        return ec.generate_private_key(ec.SECP256R1())
    raise UnknownAlgorithm(algorithm)


def private_key_to_der(private_key: PrivateKey) -> bytes:
    """Serialize unencrypted PKCS#8 DER, for sealing under the KEK and nothing else."""
    return private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_der(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise UnknownAlgorithm(type(key).__name__)
    return key


def public_key_pem(private_key: PrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def load_public_key(pem: str) -> PublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise UnknownAlgorithm(type(key).__name__)
    return key


def sign(private_key: PrivateKey, data: bytes) -> bytes:
    """Sign bytes: raw 64-byte Ed25519, or a DER-encoded ECDSA P-256/SHA-256 signature."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(data)
    return private_key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify(public_key: PublicKey, data: bytes, signature: bytes) -> bool:
    """Return whether the signature is valid; never raises for a bad signature."""
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class SignedRecord:
    record_id: int
    signature: bytes


def sign_records(private_key: PrivateKey, records: list[tuple[int, str]]) -> list[SignedRecord]:
    """Sign each record on its own over its signing input (rule 1: one signature each)."""
    return [
        SignedRecord(record_id, sign(private_key, signing_input(record_id, payload)))
        for record_id, payload in records
    ]


def public_jwk(public_key: PublicKey, kid: str) -> dict[str, str]:
    """The public key as a JWK (RFC 8037 OKP for Ed25519, RFC 7518 EC for P-256).

    `alg` says how a signature is encoded, not only which curve made it. Ed25519's is
    `EdDSA`: JOSE's EdDSA signature is the raw 64 bytes, which is what we store. A P-256
    key has none: we store DER-encoded ECDSA signatures (a public contract, README
    "Signing input"), while JOSE's `ES256` means the 64 bytes of r||s, so a JOSE library
    told ES256 would refuse every signature we made. `alg` is optional (RFC 7517 4.4);
    without it the key claims no encoding, and verifiers take the DER the README shows.
    """
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(raw),
            "kid": kid,
            "use": "sig",
            "alg": "EdDSA",
        }
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
        "kid": kid,
        "use": "sig",
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
