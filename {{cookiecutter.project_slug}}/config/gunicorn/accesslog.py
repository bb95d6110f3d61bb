"""The access log, one line per request at a twentieth of the cost of gunicorn's own.

gunicorn's Logger.access builds a dictionary of every value its format could
name (each request header, each response header, each WSGI environ key: 60
entries for a Django request), escapes them all, then passes the line through
the logging module, which looks up its caller's frame, builds a record, takes
the handler's lock and flushes. Measured here: 42 us per request, 14 % of a
gevent worker's time on /healthz, where stock gunicorn, which logs no access
line by default, spends none.

AccessLogger keeps gunicorn's `access_log_format` and its atoms, escaping and
"-" for what is missing, but computes only the atoms the format names, when
the line is formatted (LazyAtoms: 3.3 us for the presets' format), and writes
the line to stdout with one write(). The presets' own format (KIT_FORMAT) is
formatted by one f-string instead, 0.5 us (end to end, lost in the noise: 285
us of CPU a request with it on gevent /healthz, 279 with the atoms). Anything
else as the destination (a file, syslog, a logging configuration) still goes
through the logging module, as configured.

What the line still costs: access() takes 2.4 us alone (4.7 us writing to a
pipe), yet a gevent worker serving /healthz with the line and without it at once
on one CPU spent 4.5 % more CPU a request with it (379 against 363 us): the
write, its reader and the caches it takes. Where a proxy in front logs every
request already (deploy/nginx does), `accesslog = None` in a config that
imports the preset saves that.

With LOG_FORMAT=json the line is a JSON object of fixed fields instead (time,
level, logger, request_id, remote, method, path, status, bytes, duration_ms,
user_agent, referer), built by hand with the json module's C string encoder:
3 us. gunicorn's error log is then JSON too, each line with the ID of the
request it is about (observability/logs.py).

The same call counts the request in the worker's metrics (observability/
metrics.py: 0.2 us), by its route's name, method and status.
"""

import os
import sys
import time
from contextvars import ContextVar
from json.encoder import encode_basestring as json_string

from gunicorn import glogging

from config.gunicorn.observability import logs, metrics, routes
from config.gunicorn.observability.hooks import settings as observability
from config.gunicorn.observability.requestid import current as current_request_id
from config.gunicorn.workers import model_of

# The presets' access line: the combined log format, then the time the request took in
# milliseconds and its request ID.
KIT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms %(request_id)s'
# The status a request's line gives in place of gunicorn's, set while the request runs: the
# asgi guard's 499 for a client that left before any response. gunicorn's ASGI worker
# writes nothing to a closed connection, so its line kept the 500 it starts from.
status_instead = ContextVar("status_instead", default=None)


class AccessLogger(glogging.Logger):
    def setup(self, cfg):
        super().setup(cfg)
        # One write() per line is atomic on a pipe up to 4 KiB, and needs no lock: threads
        # and workers write their lines whole. stdout alone: a file, syslog or a logging
        # configuration is the operator's choice, and gets its lines through logging.
        configured = cfg.logconfig or cfg.logconfig_dict or cfg.logconfig_json or cfg.syslog
        self.access_fd = sys.stdout.fileno() if cfg.accesslog == "-" and not configured else None
        self.json = observability.log_format == "json"
        self.kit_format = cfg.access_log_format == KIT_FORMAT
        if self.json and not configured:
            logs.json_error_log(self.error_log)
        # The asgi preset counts its requests in its own middleware (observability/asgi.py).
        self.counts = observability.metrics and model_of(cfg.worker_class_str) != "asgi"

    def access(self, resp, req, environ, request_time):
        instead = status_instead.get()
        if instead is not None:
            resp.status = instead
            status_instead.set(None)
        status = LazyAtoms.status(resp)
        if self.counts and metrics.tally.recording:
            metrics.record_request(
                environ.get(routes.KEY) or routes.UNROUTED,
                environ["REQUEST_METHOD"],
                str(status),
                request_time.seconds + request_time.microseconds / 1e6,
            )
        if not self.access_log_enabled:
            return
        if self.json:
            line = json_line(status, resp, environ, request_time)
        elif self.kit_format:
            line = kit_line(self, status, resp, environ, request_time)
        else:
            line = self.cfg.access_log_format % LazyAtoms(self, resp, req, environ, request_time)
        if self.access_fd is None:
            self.access_log.info("%s", line)
            return
        data = f"{line}\n".encode()
        try:
            while data:
                data = data[os.write(self.access_fd, data) :]
        except OSError:
            self.access_fd = None  # stdout is gone: through logging, which reports it once
            self.access_log.info("%s", line)


class LazyAtoms:
    """gunicorn's access log atoms (see its access_log_format setting), each computed when asked.

    The same values as gunicorn's SafeAtoms: "-" for what is missing, and double quotes
    escaped, so that a quoted field (a user agent, a referer) cannot end early.
    """

    __slots__ = ("environ", "logger", "req", "request_time", "resp")

    def __init__(self, logger, resp, req, environ, request_time):
        self.logger, self.resp, self.req = logger, resp, req
        self.environ, self.request_time = environ, request_time

    def __getitem__(self, key):
        compute = ATOMS.get(key)
        if compute is not None:
            value = compute(self)
        elif key.startswith("{") and len(key) > 3 and key[-2] == "}":
            value = self.variable(key[1:-2].lower(), key[-1])
        else:
            value = None
        return text(value)

    def variable(self, name, kind):
        """A request header (i), a response header (o) or an environ value (e)."""
        if kind == "e":
            return next((v for k, v in self.environ.items() if k.lower() == name), None)
        headers = self.req if kind == "i" else self.resp.headers
        headers = getattr(headers, "headers", headers)
        if hasattr(headers, "items"):
            headers = headers.items()
        return next((value for key, value in headers if key.lower() == name), None)

    @staticmethod
    def status(resp):
        status = resp.status
        return status.split(None, 1)[0] if isinstance(status, str) else status

    def sent(self):
        return getattr(self.resp, "sent", None)

    def microseconds(self):
        return self.request_time.seconds * 1_000_000 + self.request_time.microseconds


common_log_second = logs.once_a_second(
    lambda second: time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
)


def common_log_time():
    """The time in the Common Log Format, formatted once a second rather than per request."""
    return common_log_second(int(time.time()))


ATOMS = {
    "h": lambda atoms: atoms.environ.get("REMOTE_ADDR"),
    "l": lambda atoms: "-",
    "u": lambda atoms: atoms.logger._get_user(atoms.environ),
    "t": lambda atoms: common_log_time(),
    "r": lambda atoms: request_line(atoms.environ),
    "s": lambda atoms: LazyAtoms.status(atoms.resp),
    "m": lambda atoms: atoms.environ.get("REQUEST_METHOD"),
    "U": lambda atoms: atoms.environ.get("PATH_INFO"),
    "q": lambda atoms: atoms.environ.get("QUERY_STRING"),
    "H": lambda atoms: atoms.environ.get("SERVER_PROTOCOL"),
    "b": lambda atoms: None if atoms.sent() is None else str(atoms.sent()),
    "B": LazyAtoms.sent,
    "f": lambda atoms: atoms.environ.get("HTTP_REFERER"),
    "a": lambda atoms: atoms.environ.get("HTTP_USER_AGENT"),
    "T": lambda atoms: atoms.request_time.seconds,
    "D": LazyAtoms.microseconds,
    "M": lambda atoms: atoms.microseconds() // 1000,
    "L": lambda atoms: f"{atoms.request_time.seconds}.{atoms.request_time.microseconds:06d}",
    "p": lambda atoms: f"<{os.getpid()}>",
    # Not gunicorn's: the request ID (observability/requestid.py).
    "request_id": lambda atoms: current_request_id.get(),
}


def text(value):
    """An atom as the line shows it: "-" for what is missing, double quotes escaped, so that
    a quoted field (a user agent, a referer) cannot end early."""
    if value is None:
        return "-"
    return value.replace('"', '\\"') if isinstance(value, str) else value


def request_line(environ):
    return f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"


def kit_line(logger, status, resp, environ, request_time):
    """KIT_FORMAT's line, what `KIT_FORMAT % LazyAtoms(...)` gives, in one f-string.

    The address and the request ID cannot hold a double quote (requestid.ACCEPTED): only
    the other fields are escaped.
    """
    sent = getattr(resp, "sent", None)
    milliseconds = (request_time.seconds * 1_000_000 + request_time.microseconds) // 1000
    return (
        f"{environ.get('REMOTE_ADDR', '-')} - {text(logger._get_user(environ))} "
        f'{common_log_time()} "{text(request_line(environ))}" {status} '
        f'{"-" if sent is None else sent} "{text(environ.get("HTTP_REFERER"))}" '
        f'"{text(environ.get("HTTP_USER_AGENT"))}" {milliseconds}ms '
        f"{current_request_id.get() or '-'}"
    )


JSON_LINE = (
    '{"time":"%s","level":"INFO","logger":"gunicorn.access","request_id":%s,"remote":%s,'
    '"method":%s,"path":%s,"status":%s,"bytes":%s,"duration_ms":%.3f,"user_agent":%s,'
    '"referer":%s}'
)


def json_line(status, resp, environ, request_time):
    """The access line as a JSON object; strings through the json module's C encoder."""
    sent = getattr(resp, "sent", None)
    return JSON_LINE % (
        logs.utc_time(time.time()),
        optional(current_request_id.get()),
        optional(environ.get("REMOTE_ADDR")),
        json_string(environ["REQUEST_METHOD"]),
        json_string(environ.get("RAW_URI") or environ.get("PATH_INFO", "")),
        status,
        "null" if sent is None else sent,
        request_time.seconds * 1000 + request_time.microseconds / 1000,
        optional(environ.get("HTTP_USER_AGENT")),
        optional(environ.get("HTTP_REFERER")),
    )


def optional(value):
    return "null" if value is None else json_string(value)
