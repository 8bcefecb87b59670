"""Redis URLs for the shared stores: check one, and show one without its password.

Light on purpose (no ``redis`` import): settings parse and mask these on every run, and only a
command that really uses a Redis store imports the client.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

LOCAL = "local"
SCHEMES = ("redis", "rediss", "unix")
MASK = "****"
INSTALL = "pip install 'cloudchat-cli[redis]'"
_SHAPE = "must be 'local' or a redis://HOST:PORT/DB, rediss://… or unix:///path/to/redis.sock URL"


def parse_store(value: object) -> str:
    """Return ``local`` or the URL, checked; the error never repeats the value (a password)."""
    if not isinstance(value, str):
        raise ValueError(_SHAPE)
    text = value.strip()
    if text.lower() == LOCAL:
        return LOCAL
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError(_SHAPE + " (no spaces or control characters)")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(_SHAPE)
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            raise ValueError("a unix:// URL needs the socket's path, like unix:///run/redis.sock")
        db = dict(parse_qsl(parts.query)).get("db", "0")
    else:
        try:
            host, _port = parts.hostname, parts.port
        except ValueError:
            raise ValueError("has a port that is not a number from 1 to 65535") from None
        if not host:
            raise ValueError("a redis:// URL needs a host, like redis://10.0.0.5:6379/0")
        db = parts.path.strip("/") or dict(parse_qsl(parts.query)).get("db", "0")
    if not db.isdigit():
        raise ValueError("the database (after the last /) must be a number, like /0")
    return text


def has_password(url: str) -> bool:
    """Does the URL carry a secret (userinfo, or a ``password=`` query)?"""
    if url == LOCAL:
        return False
    parts = urlsplit(url)
    return "@" in parts.netloc or any(k.lower() == "password" for k, _ in parse_qsl(parts.query))


def mask_url(url: str) -> str:
    """The URL as shown to people: the password (or a lone user part) replaced by ****."""
    if url == LOCAL or not isinstance(url, str):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        # redis://user:pass@ keeps the user; redis://secret@ (no colon) may well be a password.
        user = userinfo.split(":", 1)[0] + ":" if ":" in userinfo else ""
        netloc = f"{user}{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, url: str) -> str:
    """``text`` (an error from the client) with any secret of ``url`` cut out."""
    parts = urlsplit(url)
    secrets = [parts.password or ""]
    if "@" in parts.netloc:
        secrets.append(parts.netloc.rsplit("@", 1)[0])
    secrets += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    secrets += [unquote(s) for s in secrets]  # the client decodes %40 and friends
    for secret in sorted(filter(None, set(secrets)), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
