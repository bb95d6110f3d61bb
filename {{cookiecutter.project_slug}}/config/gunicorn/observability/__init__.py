"""What a running instance tells its operator: metrics, liveness, logs, errors, traces.

settings.py   METRICS_PORT, METRICS_BIND, GUNICORN_METRICS, LOG_FORMAT, SENTRY_DSN,
              OTEL_EXPORTER_OTLP_ENDPOINT, checked
hooks.py      the gunicorn hooks that run the rest (base.py gives them to every preset)
metrics.py    what each worker measures, cheaply, and writes for the instance's scrape
files.py      the metrics directory: fresh at start, a dead worker's files folded away
server.py     the process that serves /metrics and /livez, beside the master
liveness.py   /livez from the master's watch over its workers' heartbeats
routes.py     each request's route name, for its metrics (RouteMiddleware)
requestid.py  the request ID: from a trusted proxy or made here, in logs and responses
asgi.py       the same for the asgi preset, as an ASGI middleware
logs.py       text or JSON lines, each with its request ID
loopwatch.py  gevent's event loop monitor: the view that blocked it, by name
errors.py     Sentry, started in each worker after the fork
tracing.py    OpenTelemetry, started in each worker after the fork
lab.py        the figures `nox -s loadtest` reads from a running instance's /metrics
"""
