"""URLs fit for logs and summaries: the password of a URL is never shown.

One implementation for the settings, the broker connection and the channels, so that a
URL is masked the same way everywhere (IPv6 hosts included).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """``amqp://user:secret@host:5672/vh`` -> ``amqp://user:***@host:5672/vh``; a URL
    without a password is returned unchanged. The host and port are kept as written, so
    an IPv6 literal keeps its brackets (``user:***@[::1]:5672``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
