"""Log lines as text or JSON (LOG_FORMAT), each with the request ID of the request it is about.

- RequestIdFilter gives every record a `request_id` (requestid.current: "-"
  outside a request), for a format to name.
- JsonFormatter writes one JSON object per line: time, level, logger,
  message, request_id, and the traceback, if any, as one string field.
- The settings' LOGGING uses both for the application's lines; the access
  logger (accesslog.py) uses them for gunicorn's error log.
- `kit_lines_keep_time_and_level()`: a project without LOGGING (Django's
  default logs nothing but errors, and only with DEBUG) would print the
  kit's warnings (a 503, a refusal) bare, with no time or level: the kit's
  loggers get a handler of their own there.
"""

import json
import logging
import os
import sys
import time

from config.gunicorn.observability.requestid import current

TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s [%(request_id)s] %(message)s"
KIT_LOGGER = "config.gunicorn"


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = current.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the fields say what they are, so no format string."""

    def format(self, record):
        line = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": current.get(),
            "process": record.process,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def once_a_second(format_second):
    """`format_second`, a function of a whole second, made to format each second once.

    The access line, the JSON lines and gunicorn's Date header (workers/responses.py)
    each give the current second; formatting it (strftime, formatdate) costs more than
    the rest of the line does.
    """
    formatted = [None, ""]

    def formatted_at(second):
        if second != formatted[0]:
            formatted[:] = [second, format_second(second)]
        return formatted[1]

    return formatted_at


iso_second = once_a_second(lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))


def utc_time(created):
    """ISO 8601 in UTC, with milliseconds: 2026-12-03T18:04:05.123Z (formatted once a second)."""
    seconds = int(created)
    return f"{iso_second(seconds)}.{int((created - seconds) * 1000):03d}Z"


def log_format(environ=os.environ):
    """LOG_FORMAT, checked: text or json (settings.read_observability reads it the same way)."""
    from config.gunicorn.observability.settings import read_log_format

    return read_log_format(environ)


def formatter(log_format):
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def kit_lines_keep_time_and_level(log_format):
    """Give the kit's loggers a handler when nothing else would print their lines properly."""
    kit = logging.getLogger(KIT_LOGGER)
    if logging.getLogger().handlers or kit.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    kit.addHandler(handler)
    kit.setLevel(logging.INFO)
    kit.propagate = False


def json_error_log(logger):
    """gunicorn's error log (its Logger's handlers) as JSON lines with the request ID."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
