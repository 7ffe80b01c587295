"""The tests' password hasher (tests/settings.py): Django's PBKDF2 with few rounds."""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FewRoundsPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's `pbkdf2_sha256`, same name and format, at 1,000 rounds: a hash it makes
    verifies on the project's own hashers (they read the rounds from the hash), and one they
    make verifies here. Only the cost differs, which no test is about."""

    iterations = 1_000
