"""Gunicorn presets, one per worker model, and what keeps their promises: a kit to copy.

    sync.py gthread.py gevent.py asgi.py   the presets: `gunicorn -c config/gunicorn/gevent.py`
    __main__.py     `python -m config.gunicorn`: the preset named by GUNICORN_PRESET
    base.py         the production settings every preset shares, and its hooks
    sizing.py       workers, threads, connections from the CPU budget: every preset's rule
    cpu.py          the CPU budget: affinity and cgroup quotas
    openfiles.py    the open-file limit, lifted for the workers' connections
    environment.py  the environment variables, checked
    accesslog.py    the access log, at a twentieth of the cost of gunicorn's own
    startup.py      what the master checks before any worker forks; the start-up line
    production.py   debug pages never on the network; warnings for what serves but should not
    workers/        gunicorn's worker classes, guarded: they bound slow clients and large
                    bodies, drain on shutdown, and are recycled when their memory grows
    cooperative.py  the gevent preset's checks: patched first, a driver that waits cooperatively
    healthcheck.py  `python -m config.gunicorn.healthcheck`, the container's health check:
                    /livez of the metrics server
    observability/  metrics (/metrics on METRICS_PORT, beside the master), liveness from the
                    workers' heartbeats, request IDs, JSON logs, Sentry, OpenTelemetry
    staticfiles.py  WhiteNoise's middleware, async-capable: no thread hop a request under asgi
    database/       the connection plan (plan.py), the settings that apply it (settings.py),
                    their check (verify.py), the 503 (middleware.py), a pool for psycopg2

It imports nothing of the project around it: README.md, "Using a preset in an existing
Django project", says how to copy it into another.
"""
