"""The observability variables, checked as environment.py checks gunicorn's.

    METRICS_PORT          the port of the instance's own server for /metrics and /livez
                          (server.py); 1 to 65535, default 9191
    METRICS_BIND          the address it listens on; default 127.0.0.1 (this host
                          only: Docker's HEALTHCHECK and a local agent). Kubernetes
                          sets 0.0.0.0: the kubelet's probe and Prometheus both call the
                          pod's IP, and the Service does not publish the port
    GUNICORN_METRICS      false turns the metrics off (the server still answers /livez);
                          default true
    LOG_FORMAT            text (default: for a terminal) or json (one object per line)
    SENTRY_DSN            report errors to Sentry (errors.py); unset: no reporting
    OTEL_EXPORTER_OTLP_ENDPOINT  trace with OpenTelemetry over OTLP/HTTP (tracing.py);
                          needs the project's `tracing` extra

A bad value stops start-up with one line naming the variable, the value and what
is allowed, as environment.py does.
"""

import ipaddress
import os
from dataclasses import dataclass

from config.gunicorn.environment import BadSetting, boolean, whole_number

DEFAULT_METRICS_PORT = 9191
DEFAULT_METRICS_BIND = "127.0.0.1"
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Observability:
    metrics_port: int
    metrics_bind: str
    metrics: bool  # collect metrics; /livez is served either way
    log_format: str
    sentry_dsn: str | None
    otlp_endpoint: str | None


def address(environ, name, default):
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise BadSetting(
            f"{name}={raw!r} is not an IP address: use 127.0.0.1 (this host only), or "
            "0.0.0.0 where the scraper calls the pod's or host's address"
        ) from None
    return raw


def read_log_format(environ=os.environ):
    log_format = environ.get("LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        raise BadSetting(f"LOG_FORMAT={environ['LOG_FORMAT']!r} is not text or json")
    return log_format


def read_observability(environ=os.environ):
    """Every variable above, checked; raises BadSetting for the first bad one."""
    log_format = read_log_format(environ)
    return Observability(
        metrics_port=whole_number(environ, "METRICS_PORT", 1, 65535, DEFAULT_METRICS_PORT),
        metrics_bind=address(environ, "METRICS_BIND", DEFAULT_METRICS_BIND),
        metrics=boolean(environ, "GUNICORN_METRICS", default=True),
        log_format=log_format,
        sentry_dsn=environ.get("SENTRY_DSN", "").strip() or None,
        otlp_endpoint=environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None,
    )
