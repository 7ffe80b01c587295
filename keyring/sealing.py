"""Private keys at rest: AES-256-GCM under the KEK. No Django import, no logging.

A sealed blob is ``b"kek1" + nonce(12) + ciphertext-with-tag``. The key's ``kid`` is the
associated data, so a sealed key copied onto another row fails to open instead of
signing under the wrong name.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyring.exceptions import KekMalformed, KekMismatch, KekMissing

KEK_ENV: Final = "SIGNING_KEK"
NEW_KEK_ENV: Final = "SIGNING_NEW_KEK"
_FORMAT: Final = b"kek1"
_NONCE_BYTES: Final = 12
GENERATE_KEK: Final = (
    ".venv/bin/python -c 'from keyring.sealing import generate_kek; print(generate_kek())'"
)


def generate_kek() -> str:
    """Return a new random KEK in its environment form (URL-safe base64 of 32 bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


# SIGNING_KEK's fixes. `make kek` writes one to .env only where none is set, so it is the
# advice for a missing KEK on a new keyring alone.
_KEK_MISSING: Final = (
    "set it, in .env or the environment, to the KEK the keys are sealed under "
    "(for a new keyring, `make kek` writes a random one to .env)"
)
_KEK_MALFORMED: Final = "correct its value in .env or the environment"


def parse_kek(
    raw: str | None,
    *,
    name: str = KEK_ENV,
    if_missing: str = _KEK_MISSING,
    if_malformed: str = _KEK_MALFORMED,
) -> bytes:
    """Turn the environment form of a KEK into key bytes, or say clearly what is wrong.

    `name` is the variable it came from; `if_missing` and `if_malformed` say how to fix
    each case for that variable (what fixes SIGNING_KEK does not fix SIGNING_NEW_KEK).
    """
    if raw is None or not raw.strip():
        raise KekMissing(f"{name} is not set: {if_missing}.")
    try:
        kek = base64.urlsafe_b64decode(raw.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        kek = b""
    if len(kek) != 32:
        raise KekMalformed(
            f"{name} must be 32 bytes in URL-safe base64 (44 characters): {if_malformed}."
        )
    return kek


def kek_from_environment() -> bytes:
    """SIGNING_KEK, the KEK the keys are sealed under."""
    return parse_kek(os.environ.get(KEK_ENV))


def new_kek_from_environment() -> bytes:
    """SIGNING_NEW_KEK, the KEK `keys rotate-kek` re-seals under: a fresh random one."""
    advice = f"export a new random KEK as {NEW_KEK_ENV}, made by `{GENERATE_KEK}`"
    return parse_kek(
        os.environ.get(NEW_KEK_ENV), name=NEW_KEK_ENV, if_missing=advice, if_malformed=advice
    )


def old_kek_from_environment(name: str) -> bytes:
    """The KEK in variable `name` that some keys are still sealed under (`keys reseal`)."""
    advice = f"export {name} as the KEK those keys were sealed under (not {KEK_ENV}'s)"
    return parse_kek(os.environ.get(name), name=name, if_missing=advice, if_malformed=advice)


def kek_is_set() -> bool:
    """Whether this process was given a KEK at all (the web tier of a deployment is not)."""
    return bool((os.environ.get(KEK_ENV) or "").strip())


def seal(kek: bytes, kid: str, secret: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return _FORMAT + nonce + AESGCM(kek).encrypt(nonce, secret, kid.encode("utf-8"))


def unseal(kek: bytes, kid: str, sealed: bytes, *, name: str = KEK_ENV) -> bytes:
    """Open a sealed private key; KekMismatch, naming the variable `name` the KEK came from,
    when the KEK is not the one it was sealed under. The callers that know more (which
    keys open, what changed) say how to fix it: keyring.services.kek_mismatch."""
    if not sealed.startswith(_FORMAT):
        raise KekMismatch(f"the private key of {kid} is not in a sealed format this version reads.")
    body = sealed[len(_FORMAT) :]
    nonce, ciphertext = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
    try:
        return AESGCM(kek).decrypt(nonce, ciphertext, kid.encode("utf-8"))
    except InvalidTag:
        raise KekMismatch(
            f"{name} does not open the private key of {kid}: it is not the KEK that key is "
            "sealed under."
        ) from None


def opens(kek: bytes, kid: str, sealed: bytes) -> bool:
    """Whether the KEK opens this sealed key."""
    try:
        unseal(kek, kid, sealed)
    except KekMismatch:
        return False
    return True
