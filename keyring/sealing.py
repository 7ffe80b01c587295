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
_FORMAT: Final = b"kek1"
_NONCE_BYTES: Final = 12
_HOW_TO_FIX: Final = "run `make kek` to write a random one to .env, or export SIGNING_KEK"


def generate_kek() -> str:
    """Return a new random KEK in its environment form (URL-safe base64 of 32 bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_kek(raw: str | None, *, name: str = KEK_ENV) -> bytes:
    """Turn the environment form of a KEK into key bytes, or say clearly what is wrong.

    `name` is the variable it came from, for the message (SIGNING_NEW_KEK when rotating).
    """
    if raw is None or not raw.strip():
        raise KekMissing(f"{name} is not set: {_HOW_TO_FIX}.")
    try:
        kek = base64.urlsafe_b64decode(raw.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        kek = b""
    if len(kek) != 32:
        raise KekMalformed(
            f"{name} must be 32 bytes in URL-safe base64 (44 characters); {_HOW_TO_FIX}."
        )
    return kek


def kek_from_environment() -> bytes:
    return parse_kek(os.environ.get(KEK_ENV))


def kek_is_set() -> bool:
    """Whether this process was given a KEK at all (the web tier of a deployment is not)."""
    return bool((os.environ.get(KEK_ENV) or "").strip())


def seal(kek: bytes, kid: str, secret: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return _FORMAT + nonce + AESGCM(kek).encrypt(nonce, secret, kid.encode("utf-8"))


def unseal(kek: bytes, kid: str, sealed: bytes) -> bytes:
    if not sealed.startswith(_FORMAT):
        raise KekMismatch(f"the private key of {kid} is not in a sealed format this version reads.")
    body = sealed[len(_FORMAT) :]
    nonce, ciphertext = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
    try:
        return AESGCM(kek).decrypt(nonce, ciphertext, kid.encode("utf-8"))
    except InvalidTag:
        raise KekMismatch(
            f"{KEK_ENV} does not open the private key of {kid}: it is not the KEK the keys "
            "were sealed with (was .env replaced since `manage.py seed`?)."
        ) from None
