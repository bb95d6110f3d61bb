"""What serving on the network asks of the Django settings, checked by the master at start-up.

- DEBUG on an address other hosts can reach is refused: Django's debug pages
  show the settings, the URL patterns and each request's environment to
  anyone who makes a view fail. The refusal says what it sees, settings.DEBUG,
  since settings may hard-code it rather than read DJANGO_DEBUG, and the ways
  out that always work. GUNICORN_ALLOW_DEBUG=true allows it on purpose.
- DEBUG on this host only (127.0.0.1, a Unix socket) is served, with a warning:
  a proxy on the same host passes the debug pages on to anyone. (A project's
  `.env`, written for `runserver`, turns DEBUG on where DJANGO_DEBUG is unset.)
- Warnings, one line each, for what does not stop serving but should be
  fixed: no static files manifest (every page that uses a static file,
  /admin/ included, is a 500 until `manage.py collectstatic` has run), any
  host accepted (ALLOWED_HOSTS = *), a short or well-known SECRET_KEY.
"""

import ipaddress

from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.files.storage import storages

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def debug_refusal(settings, addresses, allowed):
    """One line refusing DEBUG on a reachable address, or None. `addresses`: gunicorn's."""
    if not settings.DEBUG or allowed:
        return None
    reachable = [address for address in addresses if not loopback(address)]
    if not reachable:
        return None
    host, port = reachable[0]
    return (
        f"settings.DEBUG is True and gunicorn listens on {host or '0.0.0.0'}:{port}: Django's "
        "debug pages would show the settings to anyone; turn DEBUG off in the settings "
        "(DJANGO_DEBUG=false where they read it), bind to 127.0.0.1 (--bind 127.0.0.1:PORT), "
        "or set GUNICORN_ALLOW_DEBUG=true"
    )


def debug_warning(addresses):
    """The line logged when DEBUG is served anyway: on this host only, or allowed."""
    shown = ", ".join(
        address if isinstance(address, str) else f"{address[0] or '0.0.0.0'}:{address[1]}"
        for address in addresses
    )
    return (
        f"settings.DEBUG is True: Django's debug pages, which show the settings, are served on "
        f"{shown}, and a proxy passes them on; turn DEBUG off (DJANGO_DEBUG=false) unless "
        "this is a development machine"
    )


def loopback(address):
    if isinstance(address, (str, bytes)):
        return True  # a Unix socket: this host only
    host = address[0]
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (or 0.0.0.0's empty spelling): reachable as far as we know


def warnings(settings):
    """One line for each production setting that serves, but should be fixed."""
    found = []
    storage = storages["staticfiles"]
    if isinstance(storage, ManifestFilesMixin) and storage.read_manifest() is None:
        found.append(
            f"No static files manifest in {storage.location}: pages that use static files, "
            "/admin/ included, answer 500 until `python manage.py collectstatic --noinput` runs"
        )
    if "*" in settings.ALLOWED_HOSTS:
        found.append(
            "DJANGO_ALLOWED_HOSTS accepts any host (*): name the service's hosts, so that "
            "forged Host headers cannot reach password-reset links and redirects"
        )
    key = str(settings.SECRET_KEY)
    if (
        len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or key.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        found.append(
            f"DJANGO_SECRET_KEY is short or well known: use {SECRET_KEY_MIN_LENGTH} random "
            "characters or more (python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    return found
