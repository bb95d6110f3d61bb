"""The tests see the project's defaults, not the shell's: a pytest plugin, loaded first.

With DJANGO_ALLOWED_HOSTS=* exported in the shell, a test counted two start-up warnings
where the settings' defaults give one. What the settings, the presets and the sessions
read leaves the environment here, before pytest-django loads the settings; each test
sets what it means to. DATABASE_URL stays: it says which database the tests use
(devdb.py).
"""

import os

READ_BY_THE_PROJECT = (
    "DJANGO_",
    "DATABASE_",
    "GUNICORN_",
    "WEB_CONCURRENCY",
    "PORT",
    "FORWARDED_ALLOW_IPS",
    "METRICS_PORT",
    "LOG_FORMAT",
    "SENTRY_DSN",
    "OTEL_",
)
KEPT = ("DATABASE_URL",)

for name in [name for name in os.environ if name.startswith(READ_BY_THE_PROJECT)]:
    if name not in KEPT:
        del os.environ[name]
