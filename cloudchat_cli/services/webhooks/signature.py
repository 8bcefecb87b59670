"""``X-CloudChat-Signature``: HMAC-SHA256 of the raw body bytes with the App's webhook secret.

Verification accepts lower/upper-case hex, a ``sha256=`` prefix and base64 of the digest,
works on the exact bytes received (never re-serialised JSON) and compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from cloudchat_cli.core.errors import UsageError

HEADER = "X-CloudChat-Signature"
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_B64 = re.compile(r"^[A-Za-z0-9+/_-]{43}=?$")


class SignatureFormatError(UsageError):
    """The signature text is not a SHA-256 digest in any accepted encoding."""


def sign(secret: str, body: bytes) -> str:
    """The signature CloudChat sends: lowercase hex HMAC-SHA256(secret, body)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def parse_signature(text: str) -> bytes:
    """The 32-byte digest carried by a signature header value, in any accepted encoding."""
    if not isinstance(text, str):
        raise SignatureFormatError("signature is missing")
    value = text.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:].strip()
    if not value:
        raise SignatureFormatError("signature is empty")
    if _HEX.match(value):
        return bytes.fromhex(value)
    if _B64.match(value):
        try:
            raw = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (
                -len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32:
            return raw
    shown = value if len(value) <= 20 else value[:20] + "…"
    raise SignatureFormatError(
        f"signature {shown!r} is not a SHA-256 digest (64 hex characters or 44 base64 "
        f"characters, optionally prefixed sha256=); got {len(value)} characters"
    )


def split_secrets(value: str) -> list[str]:
    """Several secrets may be configured during a rotation: one per line. Nothing else
    separates them: a space, a comma or ``=`` is part of a secret."""
    return [s for s in re.split(r"\r\n|\r|\n", value) if s.strip()]


def verify(secrets: list[str], body: bytes, signature: str) -> int | None:
    """Index of the secret whose HMAC matches ``signature``, else None. Constant-time compare."""
    digest = parse_signature(signature)
    match = None
    for i, secret in enumerate(secrets):
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, digest) and match is None:
            match = i
    return match
