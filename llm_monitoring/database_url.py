"""Database URLs: the driver we use, the URLs we refuse, and passwords masked wherever a URL is shown."""

from __future__ import annotations

import re
from urllib.parse import quote

HIDDEN = "***"


def normalize_url(url: str) -> str:
    """Accept postgres://, postgresql:// and postgresql+psycopg2://; use psycopg 3 for all of them."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def url_problem(url: str) -> str | None:
    """Why `url` cannot be used as written, or None.

    SQLAlchemy and libpq both end the password at its first '@', so in `user:p@ss@host` the host
    would be `ss@host`: the connection fails and its error shows part of the password. Guessing the
    other split is no better (an '@' may belong to a query value), so such a URL is refused.
    """
    scheme, separator, rest = url.partition("://")
    if separator and not scheme.lower().startswith("sqlite") and rest.count("@") > 1:
        return "it has more than one '@': write an '@' in the user name or password as %40"
    return None


# scheme://user:password@ — the password runs to the last '@' of the URL (no whitespace), so a
# password with '@', ':', '/' or '#' in it is hidden whole; masking too much is the safe mistake.
_PASSWORD_IN_URL = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>\S*)@", re.IGNORECASE)
# libpq also takes the password as a query parameter: ?password=...
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&;](?:ssl)?password=)(?P<password>[^&;\s]*)", re.IGNORECASE)


def mask_url(text: str) -> str:
    """Replace every password of URLs inside `text` with ***."""
    text = _PASSWORD_IN_URL.sub(lambda m: f"{m.group('head')}{HIDDEN}@", text)
    return _PASSWORD_IN_QUERY.sub(lambda m: f"{m.group('head')}{HIDDEN}", text)


def mask_whole_url(url: str) -> str:
    """`url` (one URL, perhaps malformed) shown with everything between `user:` and its last '@' hidden,
    whitespace included; a text that is no URL at all is not shown."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        # Not even scheme://: no telling which part is a password (the whole may be one pasted by
        # mistake), so show only what follows an '@'.
        return f"{HIDDEN}@{url.rpartition('@')[2]}" if "@" in url else HIDDEN
    if "@" not in rest:
        return mask_url(url)
    userinfo, _, host = rest.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + HIDDEN
    return mask_url(f"{scheme}://{userinfo}@{host}")


def hide_secrets(text: str, secrets: tuple[str | None, ...]) -> str:
    """`text` with the given passwords (as written and percent-encoded) replaced by ***, wherever they
    appear: a driver's message may quote a password that no URL pattern would recognise."""
    for secret in secrets:
        # A one- or two-character password would blank out every such letter of the message.
        if secret and len(secret) >= 3:
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, HIDDEN)
    return mask_url(text)
