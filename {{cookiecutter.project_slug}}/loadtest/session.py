"""What the load and resilience sessions share around their work: the console they print
to, SIGTERM stopping them as Ctrl-C does, and the versions they report."""

import contextlib
import signal
import sys
from importlib import metadata

from rich.console import Console

# A log file or CI output gets the table whole, not folded to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)


class Interrupted(Exception):
    """SIGTERM: stop like Ctrl-C does, through every `finally`."""


def interrupt_on_sigterm():
    """From now on, SIGTERM raises Interrupted wherever the session is."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise Interrupted


def installed_versions(names):
    """{distribution: version} for those of `names` that are installed."""
    versions = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
