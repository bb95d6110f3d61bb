"""Logging filters for the settings' LOGGING."""

import logging


class WarningWithoutTraceback(logging.Filter):
    """A record as one line at WARNING: for client mistakes Django logs as errors.

    A request with a Host header not in ALLOWED_HOSTS is logged by Django at
    ERROR with a traceback, 1.2 KB each: anyone could fill the logs, and page
    whoever watches errors, with forged Host headers. The message names the
    host; nothing in the traceback helps.
    """

    def filter(self, record):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = record.stack_info = None
        return True
