"""Secrets at rest: Fernet with key rotation (MultiFernet).

AGGREGATOR_ENCRYPTION_KEYS lists keys, newest first: the first encrypts, every key decrypts. To rotate,
put a new key in front, run `manage.py rotate_encryption_keys` (re-encrypts every stored secret with the
new key), then remove the old key."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("AGGREGATOR_ENCRYPTION_KEYS is empty: secrets cannot be stored.")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "AGGREGATOR_ENCRYPTION_KEYS must hold url-safe base64 32-byte Fernet keys; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.AGGREGATOR_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("No configured encryption key decrypts this secret.") from None


def encrypt_json(value: Any) -> str:
    return encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))


def decrypt_json(token: str) -> Any:
    return json.loads(decrypt(token))


def rotate(token: str) -> str:
    """The same secret encrypted with the current (first) key; already-current tokens are re-sealed too."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("No configured encryption key decrypts this secret.") from None


def is_current(token: str) -> bool:
    """Whether the first key decrypts this token (so rotation can skip it and stay idempotent)."""
    first = Fernet(settings.AGGREGATOR_ENCRYPTION_KEYS[0].encode())
    try:
        first.decrypt(token.encode())
    except InvalidToken:
        return False
    return True
