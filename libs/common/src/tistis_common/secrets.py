"""Secrets at rest: channel access tokens, refresh tokens, verify tokens and per-connection app
secrets are stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`), and read
and written only through a `SecretBox`.

The key comes from SECRETS_KEYS: comma-separated Fernet keys, newest first. The first encrypts;
all of them decrypt, so a rotation is: put a new key in front, run `tistis secrets rotate`
(re-encrypts every stored value under it), then drop the old key. A value stored before
encryption existed (no `fernet:` prefix) reads as it is until `rotate` encrypts it.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"
# Loopback development and tests only: services warn at start while it is the current key.
DEV_KEY = base64.urlsafe_b64encode(b"tistis-dev-only-key-NOT-for-prod").decode()


class SecretKeyError(Exception):
    """A stored value no configured key opens (SECRETS_KEYS lost or rotated too early)."""


class SecretBox:
    def __init__(self, keys: str):
        parsed = [k.strip() for k in keys.split(",") if k.strip()]
        if not parsed:
            raise ValueError("SECRETS_KEYS is empty")
        self._fernet = MultiFernet([Fernet(k) for k in parsed])
        self.uses_dev_key = parsed[0] == DEV_KEY

    def seal(self, plain: str | None) -> str | None:
        if plain is None:
            return None
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        if stored is None or not stored.startswith(PREFIX):
            return stored  # NULL, or a value from before encryption
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretKeyError("no key in SECRETS_KEYS opens a stored secret") from None

    def reseal(self, stored: str | None) -> str | None:
        """The same secret encrypted under the current key (plain legacy values too)."""
        if stored is None:
            return None
        if not stored.startswith(PREFIX):
            return self.seal(stored)
        try:
            return PREFIX + self._fernet.rotate(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretKeyError("no key in SECRETS_KEYS opens a stored secret") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()


def mask(secret: str | None) -> str | None:
    """Enough to recognise a secret, never enough to use it."""
    if not secret:
        return secret
    return "****" if len(secret) <= 8 else f"{secret[:4]}…{secret[-2:]} ({len(secret)} chars)"
